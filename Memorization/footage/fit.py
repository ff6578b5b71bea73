"""Own footage, fitting: object detection and the memorization stage on normal videos of any names,
into the run's working folder, then one model file with its label-free calibration (fit.py).
"""
import functools
from contextlib import closing

from extra import config
from extra.errors import VPCError
from extra.progress import Ticker
from extra.sharding import map_videos, model_getter
from extra.sources import ClipReader
from extra.store import is_finished
from extra.workdir import OBJECT_BATCHES
from Memorization.features import backbone_record, extract_split_features
from Memorization.footage.clips import detected_clips, frame_boxes
from ObjectDetection.boxes import clip_crops, objects_array
from ObjectDetection.detectors import detector_description, make_detector
from ObjectDetection.objects import object_batches_writer
from ObjectDetection.pipeline import object_record


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
    ticker = Ticker(f"{video.name}: objects", video.n_clips(d) * d)
    with object_batches_writer(path, record, video.n_clips(d)) as add, closing(ticker):
        for clip, detections in detected_clips(clips, get_detector(), d):
            boxes = frame_boxes(detections, settings, settings.train_conf, clip.frames[0])
            add(clip.index, objects_array(clip_crops(clip.frames, boxes, settings.obj_size)), boxes)
            ticker.update((clip.index + 1) * d)


def fit_footage(videos, run, detector_name, backbone, device=None):
    """A calibrated model of normal footage: objects, features, banks, label-free calibration. Every
    intermediate file goes to the run's working directory and is reused by a rerun."""
    from Memorization.calibration.heldout import label_free_calibration
    from Memorization.pipeline import fitted_model, read_video_features

    short = [v.name for v in videos if v.n_clips(run.method.consecutive) == 0]
    if short:
        raise VPCError(f"video {short[0]} is shorter than one clip of {run.method.consecutive} frames")
    detect_footage(videos, run, detector_name)
    extract_split_features(videos, "train", run, backbone)
    fields = backbone_record(backbone)
    model = fitted_model(run, videos, fields, device=device)
    model.backbone = backbone.identity()
    model.detection = {"detector": detector_name,
                       **({"yolo_weights": str(config.yolo_weights)} if detector_name == "yolov5" else {})}
    model.calibration = label_free_calibration(
        model, run, videos, backbone, lambda video: read_video_features(run, "train", video.name, fields))
    return model
