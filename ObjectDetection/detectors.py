"""Detectors that find the objects of each clip's key frame.

Every detector has ``description`` (recorded with its results), ``detect_video(video, d)``, a
generator of one float64 array (k, 6) of ``[xmin, ymin, xmax, ymax, conf, cls]`` rows per clip, in
clip order, in the key frame's pixel coordinates, and ``stream(d)``: the same clip by clip as frames
arrive (``push(frames)`` returns the detections known so far, ``finish()`` the rest), for live
sources; a video's detections are the same either way. Class and confidence filtering, expansion and
squaring happen afterwards, the same for all (ObjectDetection.boxes).

- ``yolov5``: YOLOv5 through the ``yolov5`` package (the paper: YOLOv5-L on COCO).
- ``motion``: OpenCV MOG2 background subtraction; connected moving blobs are boxes of class 0
  (person) with confidence 1.0. Works on any footage from a static camera, without weights.
- ``hog``: OpenCV's built-in HOG + linear SVM pedestrian detector (class 0).
"""
import contextlib
import logging
import math
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from extra import config
from extra.datasets import read_frame
from extra.device import default_device
from extra.errors import VPCError
from ObjectDetection.boxes import BOX_COLUMNS, key_frame_offset
from ObjectDetection.options import DETECTORS, HOG, MOTION, YOLO

PERSON = 0         # COCO class of the offline detectors' boxes


def no_detections():
    return np.zeros((0, BOX_COLUMNS))


def key_frames(video, consecutive):
    """Each clip's key frame, BGR uint8, in clip order (only key frames are decoded from folders)."""
    offset = key_frame_offset(consecutive)
    if video.is_file:
        for _, frames in video.iter_clips(consecutive):
            yield frames[offset]
    else:
        for clip in video.clips(consecutive):
            yield read_frame(video.frame_file(clip[offset]))


# --- YOLOv5 ---------------------------------------------------------------------------------------

YOLO_RELEASE = "https://github.com/ultralytics/yolov5/releases/download/v7.0"
# The checkpoints of the YOLOv5 v7.0 release, by model name (the paper uses yolov5l).
YOLO_MODEL_NAMES = tuple(f"yolov5{size}{suffix}" for size in "nsmlx" for suffix in ("", "6"))
DEFAULT_YOLO_WEIGHTS = config.yolo_weights
YOLO_INPUT_SIZE = 640
_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def yolo_cache_dir():
    """Where model names are looked up and downloaded to: torch's checkpoint cache ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def yolo_model_name(weights):
    """``yolov5l`` or ``yolov5l.pt`` -> ``yolov5l``; None for anything that is not a release model name."""
    text = str(weights)
    name = text[:-3] if text.endswith(".pt") else text
    return name if name in YOLO_MODEL_NAMES else None


def _without_detector_hint():
    return ("or run without YOLO: --detector=motion or --detector=hog, or load boxes with "
            "--is_load_train_pickle / --is_load_test_pickle")


def resolve_yolo_weights(weights):
    """A checkpoint file for ``weights``: an existing file, or a model name found in (or downloaded to) the cache."""
    path = Path(weights).expanduser()
    if path.is_file():
        return path.resolve()
    name = yolo_model_name(weights)
    if name is None or path.name != str(weights):
        raise VPCError(f"YOLOv5 weights file not found: {path}; pass an existing checkpoint with --yolo_weights "
                       f"PATH or a model name ({', '.join(YOLO_MODEL_NAMES)}), {_without_detector_hint()}")
    cached = yolo_cache_dir() / f"{name}.pt"
    if cached.is_file():
        return cached
    url = f"{YOLO_RELEASE}/{name}.pt"
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=True)    # writes a temporary file, then renames
    except Exception as error:      # offline, HTTP error, disk: all mean "put the file there yourself"
        raise VPCError(f"YOLOv5 weights {name}.pt are not in the cache and cannot be downloaded "
                       f"({type(error).__name__}): put {url} at {cached}, or pass --yolo_weights PATH, "
                       f"{_without_detector_hint()}") from None
    return cached


@contextlib.contextmanager
def _yolov5_checkpoint_loading():
    """YOLOv5 checkpoints pickle whole modules; torch >= 2.6 loads them only with weights_only=False.

    The yolov5 package calls ``torch.load`` without that argument; torch's documented switch makes
    it the default while the checkpoint loads. A checkpoint is a pickle: load only files you trust.
    The notices printed meanwhile (torch: the switch, non-leaf parameters of the fused model;
    yolov5: its loader's fallbacks, whose failure the caller reports in one line) are silenced.
    """
    previous = os.environ.get(_NO_WEIGHTS_ONLY)
    os.environ[_NO_WEIGHTS_ONLY] = "1"
    yolov5_logger = logging.getLogger("yolov5")
    try:
        yolov5_logger.disabled = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        yolov5_logger.disabled = False
        if previous is None:
            del os.environ[_NO_WEIGHTS_ONLY]
        else:
            os.environ[_NO_WEIGHTS_ONLY] = previous


def load_yolo(weights_file, device=None):
    """The yolov5 package's AutoShape model (letterboxing, inference, NMS) for a local checkpoint file."""
    import yolov5       # heavy import: only when YOLO is used
    from yolov5.models.common import AutoShape

    try:
        with _yolov5_checkpoint_loading():
            # An absolute path keeps yolov5 from taking the name for a Hugging Face repository.
            # device=None: yolov5 picks cuda:0 when present, else the CPU, without setting
            # CUDA_VISIBLE_DEVICES as it does for an explicit device.
            model = yolov5.load(str(Path(weights_file).resolve()), device=None).to(device or default_device())
    except Exception as error:      # a broken or foreign file can fail anywhere inside the package
        raise VPCError(f"cannot load YOLOv5 weights from {weights_file}: {type(error).__name__}: {error}") from None
    if not isinstance(model, AutoShape):
        raise VPCError(f"{weights_file} is not a YOLOv5 detection checkpoint")
    return model


def shape_batches(items, batch_size):
    """Group ``(item, shape)`` pairs, in order, into lists of at most batch_size items of one shape.

    YOLOv5 letterboxes a batch to its largest image, so only equal shapes give the same result
    batched as one at a time.
    """
    batch, batch_shape = [], None
    for item, shape in items:
        if batch and (shape != batch_shape or len(batch) == batch_size):
            yield batch
            batch = []
        batch.append(item)
        batch_shape = shape
    if batch:
        yield batch


def yolo_inputs(video, consecutive):
    """``(image, shape)`` per clip: the key frame's file (frame folders) or its decoded RGB pixels (video files)."""
    if video.is_file:
        for frame in key_frames(video, consecutive):
            yield np.ascontiguousarray(frame[:, :, ::-1]), frame.shape[:2]
    else:
        offset = key_frame_offset(consecutive)
        for clip in video.clips(consecutive):
            path = video.frame_file(clip[offset])
            with Image.open(path) as image:
                yield str(path), image.size[::-1]


class YoloDetector:
    """YOLOv5 on each clip's key frame (RGB, inference size 640), several clips per forward pass."""

    def __init__(self, weights=DEFAULT_YOLO_WEIGHTS, device=None, batch_size=16):
        if batch_size < 1:
            raise VPCError(f"--batch_size must be at least 1, got {batch_size}")
        weights_file = resolve_yolo_weights(weights)
        self.model = load_yolo(weights_file, device)
        self.batch_size = batch_size
        self.description = yolo_description(weights)

    def detect_video(self, video, consecutive):
        for batch in shape_batches(yolo_inputs(video, consecutive), self.batch_size):
            results = self.model(batch, size=YOLO_INPUT_SIZE)
            for detections in results.xyxy:
                yield detections.cpu().numpy().astype(np.float64)

    def detect(self, frame):
        """Detections of one BGR frame."""
        results = self.model([np.ascontiguousarray(frame[:, :, ::-1])], size=YOLO_INPUT_SIZE)
        return results.xyxy[0].cpu().numpy().astype(np.float64)

    def stream(self, consecutive):
        return KeyFrameStream(self.detect, consecutive)


def yolo_description(weights):
    """How YOLO results are labelled in the files' settings record: the checkpoint's file name."""
    name = yolo_model_name(weights)
    return f"yolov5 {name}.pt" if name and Path(weights).name == str(weights) else f"yolov5 {Path(weights).name}"


# --- motion ---------------------------------------------------------------------------------------

def moving_blobs(mask, min_area):
    """Foreground mask -> a box per 8-connected blob of at least min_area pixels (conf 1.0, class person).

    The mask is first opened with a 3 x 3 ellipse (drops speckle) and closed with a 5 x 5 one
    (joins a figure's limbs to its body). Boxes are [x, y, x + w, y + h], in OpenCV's label order.
    """
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    rows = [[x, y, x + w, y + h, 1.0, PERSON] for x, y, w, h, area in stats[1:] if area >= min_area]
    return np.asarray(rows, dtype=np.float64).reshape(-1, BOX_COLUMNS)


class MotionDetector:
    """Moving blobs from MOG2 background subtraction over the video's frames, in order.

    The model is first warmed up on the video's first ``history`` frames (or all of them when
    fewer), so that the first clips are compared with a learned background too; then the video is
    played from its first frame, the model still learning, and each key frame's foreground is
    taken from the model as it stands at that frame. One fresh model per video: a video's boxes do
    not depend on the other videos. Deterministic.

    ``background_ratio`` 0.7 (OpenCV's default is 0.9) keeps a figure that stands in the first
    frames from becoming background; blobs smaller than ``min_area_fraction`` of the frame (and
    than ``min_area`` pixels) are dropped.
    """

    description = "motion (MOG2 background subtraction)"

    def __init__(self, history=100, var_threshold=16.0, background_ratio=0.7, min_area_fraction=5e-4,
                 min_area=16):
        self.history = history
        self.var_threshold = var_threshold
        self.background_ratio = background_ratio
        self.min_area_fraction = min_area_fraction
        self.min_area = min_area

    def _subtractor(self):
        subtractor = cv2.createBackgroundSubtractorMOG2(history=self.history, varThreshold=self.var_threshold,
                                                        detectShadows=False)
        subtractor.setBackgroundRatio(self.background_ratio)
        return subtractor

    def detect_video(self, video, consecutive):
        stream = self.stream(consecutive)
        for _, frames in video.iter_clips(consecutive):
            yield from stream.push(frames)
        yield from stream.finish()

    def stream(self, consecutive):
        return MotionStream(self, consecutive)


class MotionStream:
    """The motion detector clip by clip, as frames arrive: the first clips are held until the
    warm-up's ``history`` frames have come (or the source ends), the model learns them, then they
    are replayed; so a video's detections are those of ``MotionDetector.detect_video``."""

    def __init__(self, detector, consecutive):
        self.detector, self.consecutive = detector, consecutive
        self.subtractor = detector._subtractor()
        self.waiting = []
        self.warm_clips = math.ceil(detector.history / consecutive)
        self.warm = False

    def _detect(self, frames):
        offset = key_frame_offset(self.consecutive)
        for position, frame in enumerate(frames):
            mask = self.subtractor.apply(frame)
            if position == offset:
                detections = moving_blobs(mask, max(self.detector.min_area, self.detector.min_area_fraction * mask.size))
        return detections

    def _warm_up(self):
        for frames in self.waiting:
            for frame in frames:
                self.subtractor.apply(frame)
        self.warm, held, self.waiting = True, self.waiting, []
        return [self._detect(frames) for frames in held]

    def push(self, frames):
        """The detections now known, in clip order (none while the warm-up is still filling)."""
        if self.warm:
            return [self._detect(frames)]
        self.waiting.append(list(frames))
        return self._warm_up() if len(self.waiting) >= self.warm_clips else []

    def finish(self):
        """The detections of the clips still held when the source ends."""
        return [] if self.warm or not self.waiting else self._warm_up()


# --- HOG --------------------------------------------------------------------------------------------

HOG_WINDOW = (64, 128)      # width, height of the people detector's window: the smallest person it finds


def hog_confidence(weights):
    """HOG SVM margins -> confidences in (0, 1) by the logistic function (margin 0 -> 0.5).

    So the dataset thresholds keep margins above logit(t): 0.41 (t = 0.6), 0.85 (0.7), 1.39 (0.8).
    """
    return 1.0 / (1.0 + np.exp(-np.asarray(weights, dtype=np.float64).ravel()))


class HogDetector:
    """OpenCV's default people detector (HOG + linear SVM) on each clip's key frame.

    It finds upright people at least 128 pixels tall; frames smaller than its 64 x 128 window
    give no boxes (OpenCV can crash on them).
    """

    description = "hog (OpenCV people detector)"

    def __init__(self, win_stride=(8, 8), padding=(8, 8), scale=1.05):
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.win_stride, self.padding, self.scale = win_stride, padding, scale

    def detect(self, frame):
        height, width = frame.shape[:2]
        if width < HOG_WINDOW[0] or height < HOG_WINDOW[1]:
            return no_detections()
        rects, weights = self.hog.detectMultiScale(frame, winStride=self.win_stride, padding=self.padding,
                                                   scale=self.scale)
        if len(rects) == 0:
            return no_detections()
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        conf = hog_confidence(weights)
        return np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3],
                                conf, np.full(len(rects), float(PERSON))])

    def detect_video(self, video, consecutive):
        for frame in key_frames(video, consecutive):
            yield self.detect(frame)

    def stream(self, consecutive):
        return KeyFrameStream(self.detect, consecutive)


class KeyFrameStream:
    """A detector of key frames clip by clip: each clip's detections as soon as it is pushed."""

    def __init__(self, detect, consecutive):
        self.detect, self.offset = detect, key_frame_offset(consecutive)

    def push(self, frames):
        return [self.detect(frames[self.offset])]

    def finish(self):
        return []


OFFLINE_DETECTORS = {MOTION: MotionDetector, HOG: HogDetector}


def _offline_detector(name):
    if name not in OFFLINE_DETECTORS:
        raise VPCError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    return OFFLINE_DETECTORS[name]


def make_detector(name, yolo_weights=DEFAULT_YOLO_WEIGHTS, device=None, batch_size=16):
    """The detector chosen with --detector (YOLO weights are resolved and loaded here)."""
    if name == YOLO:
        return YoloDetector(yolo_weights, device=device, batch_size=batch_size)
    return _offline_detector(name)()


def detector_description(name, yolo_weights=DEFAULT_YOLO_WEIGHTS):
    """The label a detector's results carry, known without loading it."""
    if name == YOLO:
        return yolo_description(yolo_weights)
    return _offline_detector(name).description
