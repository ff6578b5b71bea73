"""Own footage: fit a model on normal videos, score any video or live source clip by clip.

No dataset layout and no ground truth: the inputs are video files or frame folders with any names
(extra.sources). The method's numbers come from a preset of extra/config.py (``PRESETS``: the three
datasets', or ``general``); boxes are clipped to each video's own frame size. Detection runs clip by
clip (``detector.stream``), so a file scored offline and the same file played live give the same
scores. From Python, one video:

    model = VideoPatchCore.load("avenue.vpc")
    score = model.score(video_features("clip.avi", model, detector="motion"))
"""
import csv
import functools
import json
import time
from collections import deque
from dataclasses import dataclass, replace

import cv2
import numpy as np

from extra import config
from extra.config import PRESETS
from extra.device import default_device
from extra.errors import VPCError, warn
from extra.io import atomic_path, make_folder
from extra.sharding import map_videos, model_getter
from extra.sources import ClipReader
from extra.store import empty_clip, is_finished
from extra.workdir import OBJECT_BATCHES
from Memorization.calibration import calibrated_local, calibrated_streams, unsmoothed
from Memorization.evaluation import LOCAL_FUSION, VideoScores
from Memorization.features import backbone_record, extract_split_features, global_features, local_features
from Memorization.model import VideoFeatures
from ObjectDetection.boxes import clip_crops, object_boxes, objects_array
from ObjectDetection.detectors import detector_description, make_detector
from ObjectDetection.objects import object_batches_writer
from ObjectDetection.pipeline import object_record

CSV_COLUMNS = ("frame", "timestamp", "spatial", "temporal", "highlevel", "fused", "alarm")


def model_backbone(model, device=None):
    """The encoder the model's banks were made with, checked against the hash the model recorded."""
    from Memorization.backbone import load_backbone

    method = model.method
    backbone = load_backbone(method.backbone, device=device or default_device(), random_weights=method.random_weights)
    recorded = model.backbone.get("weights_sha256")
    if recorded and backbone.identity()["weights_sha256"] != recorded:
        raise VPCError(f"the weights of {method.backbone} differ from those the model's memory banks were made "
                       f"with; pass the same CLIP weights")
    return backbone


def preset_of(method):
    try:
        return PRESETS[method.dataset]
    except KeyError:
        raise VPCError(f"unknown preset {method.dataset!r}; choose one of: {', '.join(PRESETS)}") from None


def frame_boxes(detections, settings, threshold, frame):
    """The stored boxes of a key frame's detections, clipped to that frame's own size."""
    height, width = frame.shape[:2]
    return object_boxes(detections, replace(settings, max_w=width, max_h=height), threshold)


def detected_clips(clips, detector, consecutive):
    """``(clip, detections)`` pairs in clip order, detecting as the clips arrive (detector.stream; the
    motion detector holds the first clips until its warm-up frames have come)."""
    stream, waiting = detector.stream(consecutive), deque()
    try:
        for clip in clips:
            waiting.append(clip)
            for detections in stream.push(clip.frames):
                yield waiting.popleft(), detections
    except VPCError:            # the source broke: the clips read before it are still scored
        for detections in stream.finish():
            yield waiting.popleft(), detections
        raise
    for detections in stream.finish():
        yield waiting.popleft(), detections


@dataclass
class ClipResult:
    clip: object                     # extra.sources.Clip
    banks: dict                      # bank -> per-frame raw scores (d,)
    fused: np.ndarray                # calibrated, unsmoothed total (d,)
    alarms: np.ndarray               # fused above the calibration's clip threshold (d,)
    boxes: list                      # the clip's objects' boxes
    object_scores: np.ndarray        # each object's calibrated local score
    seconds: float                   # from reading the clip's last frame to its result (detection included)


class ClipFeatures:
    """A model's encoder and a detector: the features of clips, as the two stages compute them."""

    def __init__(self, model, detector="yolov5", backbone=None, device=None):
        self.model, self.device = model, device or default_device()
        self.settings = preset_of(model.method)
        self.backbone = backbone or model_backbone(model, self.device)
        self.detector = make_detector(detector, config.yolo_weights, device=self.device)

    def __call__(self, frames, detections):
        """(lf or the placeholder, gf, boxes) of one clip, objects kept above the test confidence."""
        method = self.model.method
        boxes = frame_boxes(detections, self.settings, self.settings.test_conf, frames[0])
        objects = objects_array(clip_crops(frames, boxes, self.settings.obj_size))
        lf = local_features(objects, self.backbone, method.cnl_pool, method.compression, method.compression_seed)
        return (empty_clip() if lf is None else lf), global_features(frames, self.backbone, method.normalization), boxes

    def clips(self, source):
        """(clip, lf, gf, boxes) of every clip of a source (extra.sources.ClipReader), in order."""
        for clip, detections in detected_clips(source, self.detector, self.model.method.consecutive):
            yield (clip, *self(clip.frames, detections))


class FootageScorer:
    """Scores clips as they come with a calibrated model: raw bank scores, the calibrated fused score
    (unsmoothed: no future frames), alarms above the calibration's clip threshold."""

    def __init__(self, model, detector="yolov5", backbone=None, device=None):
        if not model.calibration.get("clip_threshold"):
            raise VPCError("the model file has no label-free calibration (made before it or with "
                           "--label_free=False): make it again with fit.py")
        if model.method.search != "exact":     # fit.py --search: said, never silently approximate
            warn(f"the model scores with the {model.method.search} search, not the exact one (README, Many "
                 f"machines; Memorization/run.py measures its error on a test set)")
        self.features = ClipFeatures(model, detector, backbone, device)
        self.model, self.calibration = model, unsmoothed(model.calibration)


    def score(self, source):
        """ClipResult of every clip of ``source`` (extra.sources.ClipReader), in order, as they are ready."""
        streams = {spec.name: spec.stream for spec in self.model.specs}
        for clip, lf, gf, boxes in self.features.clips(source):
            items = {}
            banks = self.model.score_banks(VideoFeatures({"local": [lf], "global": [gf]}), self.features.device,
                                           items)
            single = VideoScores(["clip"], {bank: [x] for bank, x in banks.items()}, streams)
            fused = calibrated_streams(single, self.calibration)["total"]
            objects = calibrated_local(*(np.asarray(items[bank]) for bank in LOCAL_FUSION), self.calibration)
            yield ClipResult(clip, banks, fused, fused > self.calibration["clip_threshold"], boxes, objects,
                             time.perf_counter() - clip.arrived)


def video_features(source, model, detector="yolov5", backbone=None, device=None):
    """VideoFeatures of a video file or frame folder, as the two stages would compute them with the
    model's settings (its preset's detection thresholds and sizes, test confidence)."""
    reader = ClipReader(source, model.method.consecutive)
    local, glob = [], []
    for _, lf, gf, _ in ClipFeatures(model, detector, backbone, device).clips(reader):
        local.append(lf)
        glob.append(gf)
    if not local:
        raise VPCError(f"{source} has {reader.frames} frames, fewer than one clip of {model.method.consecutive}")
    return VideoFeatures({"local": local, "global": glob})


# --- outputs of score.py ---------------------------------------------------------------------------

def alarm_intervals(frames, timestamps, alarms, fused):
    """Runs of alarmed frames: [{start_frame, end_frame, start_time, end_time, peak}], ends inclusive."""
    intervals, start = [], None
    for i, alarm in enumerate(list(alarms) + [False]):
        if alarm and start is None:
            start = i
        elif not alarm and start is not None:
            intervals.append({"start_frame": int(frames[start]), "end_frame": int(frames[i - 1]),
                              "start_time": round(float(timestamps[start]), 3),
                              "end_time": round(float(timestamps[i - 1]), 3),
                              "peak": float(np.max(fused[start:i]))})
            start = None
    return intervals


class ScoreWriter:
    """The per-frame CSV, written and flushed clip by clip (a run that stops leaves whole rows), the
    alarm intervals as JSON at the end, and optionally an annotated MP4."""

    def __init__(self, out_dir, name, fps, video_out=False):
        make_folder(out_dir)
        self.csv_path, self.json_path = out_dir / f"{name}.csv", out_dir / f"{name}_alarms.json"
        self.video_path = out_dir / f"{name}.mp4" if video_out else None
        self.file = open(self.csv_path, "w", newline="")
        self.rows = csv.writer(self.file)
        self.rows.writerow(CSV_COLUMNS)
        self.fps, self.frames, self.stamps, self.fused, self.alarms = fps, [], [], [], []
        self.video, self.top = None, 1e-9          # the MP4 writer; the highest fused score so far

    def add(self, result):
        clip = result.clip
        for t, frame in enumerate(clip.frames):
            index = clip.first_frame + t
            self.rows.writerow([index, f"{clip.timestamps[t]:.3f}", *(f"{result.banks[b][t]:.6g}" for b in
                                                                       ("spatial", "temporal", "highlevel")),
                                f"{result.fused[t]:.6g}", int(result.alarms[t])])
            self.frames.append(index)
            self.stamps.append(clip.timestamps[t])
            self.fused.append(float(result.fused[t]))
            self.alarms.append(bool(result.alarms[t]))
            self.top = max(self.top, self.fused[-1])
            if self.video_path is not None:
                self._draw(frame, result, t)
        self.file.flush()

    def _draw(self, frame, result, t):
        """The frame, each object's box in the colour of its score (green low, red high), and a strip
        of the fused score so far under it, red while alarmed."""
        height, width = frame.shape[:2]
        strip = 40
        if self.video is None:
            self.video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                         (width, height + strip))
        canvas = np.zeros((height + strip, width, 3), np.uint8)
        canvas[:height] = frame
        top = self.top
        for box, score in zip(result.boxes, result.object_scores):
            level = float(np.clip(score / top, 0, 1))
            colour = (0, int(255 * (1 - level)), int(255 * level))
            cv2.rectangle(canvas, (int(box[0]), int(box[1])), (int(box[2]) - 1, int(box[3]) - 1), colour, 2)
        history = self.fused[-width:]
        for x, (value, alarm) in enumerate(zip(history, self.alarms[-width:])):
            y = height + strip - 1 - int((strip - 2) * min(value / top, 1.0))
            cv2.line(canvas, (x, height + strip - 1), (x, y), (0, 0, 255) if alarm else (200, 200, 200), 1)
        if result.alarms[t]:
            cv2.rectangle(canvas, (0, 0), (width - 1, height - 1), (0, 0, 255), 4)
        self.video.write(canvas)

    def close(self):
        self.file.close()
        if self.video is not None:
            self.video.release()
        intervals = alarm_intervals(self.frames, self.stamps, self.alarms, np.asarray(self.fused))
        with atomic_path(self.json_path) as tmp:
            tmp.write_text(json.dumps({"alarm_intervals": intervals, "frames_scored": len(self.frames)}, indent=1))
        return intervals


# --- fitting on normal footage ---------------------------------------------------------------------

def detect_footage(videos, run, detector_name):
    """Object batches of each normal video (resumable, as the detection stage writes them), each video on
    a Ray worker with --ray."""
    settings, d = run.context.settings, run.method.consecutive
    record = object_record(settings, "train", d, settings.train_conf, detector_description(detector_name))
    get_detector = model_getter(run.context.ray, make_detector, detector_name, config.yolo_weights)
    map_videos(functools.partial(detect_footage_video, run=run, record=record, get_detector=get_detector), videos,
               "normal footage: objects", run.context.ray)


def detect_footage_video(video, run, record, get_detector):
    """One normal video's object batches, unless they are done; the detector made on first need."""
    settings, d = run.context.settings, run.method.consecutive
    path = run.work.object_batches("train", video.name)
    if is_finished(path, OBJECT_BATCHES, record, video.n_clips(d), run.overwrite, run.verify):
        return
    clips = ClipReader(video.source, d)
    with object_batches_writer(path, record, video.n_clips(d)) as add:
        for clip, detections in detected_clips(clips, get_detector(), d):
            boxes = frame_boxes(detections, settings, settings.train_conf, clip.frames[0])
            add(clip.index, objects_array(clip_crops(clip.frames, boxes, settings.obj_size)), boxes)


def fit_footage(videos, run, detector_name, backbone, device=None):
    """A calibrated model of normal footage: objects, features, banks, label-free calibration. Every
    intermediate file goes to the run's working directory and is reused by a rerun."""
    from Memorization.pipeline import fitted_model, read_video_features
    from Memorization.pseudo import label_free_calibration

    short = [v.name for v in videos if v.n_clips(run.method.consecutive) == 0]
    if short:
        raise VPCError(f"video {short[0]} is shorter than one clip of {run.method.consecutive} frames")
    detect_footage(videos, run, detector_name)
    extract_split_features(videos, "train", run, backbone)
    fields = backbone_record(backbone)
    model = fitted_model(run, videos, fields, device=device)
    model.backbone = backbone.identity()
    model.calibration = label_free_calibration(
        model, run, videos, backbone, lambda video: read_video_features(run, "train", video.name, fields))
    return model



# --- scoring a source ------------------------------------------------------------------------------

@dataclass
class SourceSummary:
    name: str
    frames: int                      # frames scored
    intervals: list                  # alarm intervals
    latencies: list                  # seconds per clip, from its last frame to its result
    seconds: float                   # wall time of the whole source
    note: str = None                 # what happened to the frames of no clip
    auroc: float = None              # with --gt

    def line(self):
        rate = self.frames / self.seconds if self.seconds else 0.0
        latency = (f"; per clip {1000 * np.mean(self.latencies):.0f} ms mean, {1000 * np.max(self.latencies):.0f} ms max"
                   if self.latencies else "")
        auroc = "" if self.auroc is None else f"; AUROC {100 * self.auroc:.2f}% against the ground truth"
        note = f" ({self.note})" if self.note else ""
        return (f"{self.name}: {self.frames} frames scored, {len(self.intervals)} alarm interval(s), "
                f"{rate:.1f} frames/s{latency}{auroc}{note}")


def score_source(scorer, reader, out_dir, video_out=False, labels=None):
    """Score one source into ``out_dir`` (CSV, alarm intervals, optional MP4); returns a SourceSummary.
    Whatever stops the source (its end, a stall, a damaged frame, Ctrl-C), what was scored is kept:
    whole CSV rows and the alarm intervals so far."""
    from Memorization.evaluation import micro_auroc

    writer = ScoreWriter(out_dir, reader.name, reader.fps, video_out)
    started, latencies = time.perf_counter(), []
    try:
        for result in scorer.score(reader):
            writer.add(result)
            latencies.append(result.seconds)
    finally:
        intervals = writer.close()
    summary = SourceSummary(reader.name, len(writer.frames), intervals, latencies, time.perf_counter() - started,
                            reader.note)
    if labels is not None:
        labels, extendable = labels
        needed = max(writer.frames, default=-1) + 1
        if len(labels) < needed and not extendable:
            raise VPCError(f"the ground truth has {len(labels)} frames, {reader.name} has at least {needed}")
        labels = np.concatenate([labels, np.zeros(max(needed - len(labels), 0), labels.dtype)])
        summary.auroc = micro_auroc(np.asarray(writer.fused), labels[writer.frames])
    return summary


def ground_truth_labels(path, video=1):
    """(per-frame 0/1 labels, extendable) of one video from any supported format: a .npy vector
    (ShanghaiTech's and IITB's; it must cover the video) or an avenue.mat (its ``video``-th entry,
    1-based; intervals, so the frames after the last one are normal: extendable)."""
    from pathlib import Path

    from extra.datasets import intervals_to_labels

    path = Path(path)
    if not path.is_file():
        raise VPCError(f"ground truth not found: {path}")
    if path.suffix == ".npy":
        try:
            labels = np.load(path, allow_pickle=False).ravel()
        except (ValueError, OSError):
            raise VPCError(f"cannot read ground truth {path}: not a readable .npy array") from None
        if not np.isin(labels, (0, 1)).all():
            raise VPCError(f"{path} must hold 0/1 frame labels")
        return labels.astype(np.uint8), False
    from scipy.io import loadmat

    try:
        entries = list(np.asarray(loadmat(str(path))["gt"], dtype=object).ravel())
        intervals = np.asarray(entries[video - 1], dtype=np.int64).reshape(2, -1)
    except (KeyError, ValueError, OSError, IndexError):
        raise VPCError(f"cannot read entry {video} of variable 'gt' from {path}") from None
    return intervals_to_labels(intervals, int(intervals.max()) if intervals.size else 0), True
