"""The Memorization stage's reports (run.py --report): each test video shown as score.py --report shows
an input (extra.report), from the stage's own scores under its label-free calibration: the streams
smoothed as its label-free column scores them, alarms above the calibration's threshold, each alarm
explained from the video's saved features."""
import numpy as np

from extra.evaluation.fusion import GLOBAL_FUSION, LOCAL_FUSION, calibrated_local, calibrated_streams, objects_fused
from extra.footage_outputs import ClipResult, alarm_intervals
from extra.report.collect import ReportCollector
from extra.report.html import report_path, write_report
from extra.sources import DEFAULT_FPS, Clip
from Memorization.explain import explain_clip
from Memorization.model import VideoFeatures
from ObjectDetection.boxes import key_frame_offset
from ObjectDetection.objects import clip_boxes_of


def write_stage_reports(model, scores, objects, videos, labels, features_of, object_files, folder, device=None,
                        model_file=None):
    """A report per test video into ``folder``; returns their paths. ``scores``: the stage's VideoScores;
    ``objects``: per video (objects per clip, {local bank: their scores}), as scoring gives them;
    ``labels``: {video name: per-frame 0/1}; ``features_of(video)``: its saved VideoFeatures;
    ``object_files(video)``: its object-batches file (the boxes)."""
    calibration = model.calibration
    streams = {name: scores.split(values) for name, values in calibrated_streams(scores, calibration).items()}
    banks = [spec.name for spec in model.specs]
    threshold = calibration["threshold"]
    d = model.method.consecutive
    paths = []
    for v, video in enumerate(videos):
        features = features_of(video)
        counts, items = objects[v]
        local = calibrated_local(*(np.asarray(items[bank], dtype=np.float64) for bank in LOCAL_FUSION), calibration)
        per_clip = np.split(local, np.cumsum(counts)[:-1]) if counts else []
        boxes = clip_boxes_of(object_files(video), range(len(counts)))
        collector = ReportCollector(video.name, banks, lambda result: explain_clip(model, result.features,
                                                                                    calibration, device),
                                    source=video.source, model=model_file,
                                    false_alarm_rate=calibration.get("false_alarm_rate"))
        frames, stamps, alarms, fused = [], [], [], []
        for index, images in video.iter_clips(d):
            at = slice(index * d, index * d + len(images))          # the clip's frames in the video's vectors
            first = video.first_frame + index * d
            clip = Clip(index, images, first, [(first + t) / DEFAULT_FPS for t in range(len(images))])
            total = streams["total"][v][at]
            clip_features = VideoFeatures({name: [clips[index]] for name, clips in features.clips.items()})
            global_score = streams[GLOBAL_FUSION][v][at][0]
            collector.add(ClipResult(clip=clip, banks={bank: streams[bank][v][at] for bank in banks}, fused=total,
                                     alarms=total > threshold, boxes=[] if boxes[index] is None else
                                     list(boxes[index][:counts[index]]), object_scores=per_clip[index], seconds=0.0,
                                     threshold=threshold,
                                     object_fused=objects_fused(per_clip[index], global_score, calibration),
                                     features=clip_features, key_frame=key_frame_offset(d)))
            frames += range(first, first + len(images))
            stamps += clip.timestamps
            alarms += list(total > threshold)
            fused += list(total)
        intervals = alarm_intervals(frames, stamps, alarms, np.asarray(fused))
        data = collector.data(intervals, DEFAULT_FPS, video.n_raw_frames, labels.get(video.name))
        paths.append(write_report(report_path(folder, video.name), data))
    return paths
