"""Own footage: the features of clips of any video or live source, as the two stages compute them.

No dataset layout and no ground truth: the inputs are video files or frame folders with any names
(extra.sources). The method's numbers come from a preset of extra/config.py (``PRESETS``: the three
datasets', or ``general``); boxes are clipped to each video's own frame size. Detection runs clip by
clip (``detector.stream``), so a file scored offline and the same file played live give the same
scores. From Python, one video:

    model = VideoPatchCore.load("avenue.vpc")
    score = model.score(video_features("clip.avi", model, detector="motion"))
"""
from collections import deque
from dataclasses import replace

from extra import config
from extra.config import PRESETS
from extra.device import default_device
from extra.errors import VPCError
from extra.sources import ClipReader
from extra.store import empty_clip
from Memorization.encoders.loader import model_backbone
from Memorization.features import global_features, local_features
from Memorization.model import VideoFeatures
from ObjectDetection.boxes import clip_crops, object_boxes, objects_array
from ObjectDetection.detectors import make_detector


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


class ClipFeatures:
    """A model's encoder and a detector: the features of clips, as the two stages compute them."""

    def __init__(self, model, detector="yolov5", backbone=None, device=None, yolo_weights=None):
        self.model, self.device = model, device or default_device()
        self.settings = preset_of(model.method)
        self.backbone = backbone or model_backbone(model, self.device)
        self.detector = make_detector(detector, yolo_weights or config.yolo_weights, device=self.device)

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
