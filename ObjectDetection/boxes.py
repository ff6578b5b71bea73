"""Boxes and crops of SPEC section 2: key frame, class and confidence filter, expansion,
squaring, clipping, and the per-clip object arrays cut from the clip's frames.

A detection (and a stored box) is a row ``[xmin, ymin, xmax, ymax, conf, cls]`` of floats in the
key frame's pixel coordinates.
"""
import cv2
import numpy as np

from extra.datasets import normalize_frame
from extra.errors import VPCError
from extra.store import empty_clip

BOX_COLUMNS = 6


def key_frame_offset(consecutive):
    """Position of the detector's frame inside a clip: the middle one (d // 2) when d >= 4, else the last."""
    return consecutive // 2 if consecutive >= 4 else consecutive - 1


def as_detections(rows):
    """Any sequence of ``[xmin, ymin, xmax, ymax, conf, cls]`` rows -> float64 array (k, 6)."""
    try:
        array = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        raise VPCError(f"expected boxes as rows of {BOX_COLUMNS} numbers [xmin, ymin, xmax, ymax, conf, cls], "
                       f"got {str(rows)[:80]}") from None
    if array.size == 0:
        return np.zeros((0, BOX_COLUMNS))
    if array.ndim != 2 or array.shape[1] != BOX_COLUMNS:
        raise VPCError(f"expected boxes as rows of {BOX_COLUMNS} numbers "
                       f"[xmin, ymin, xmax, ymax, conf, cls], got an array of shape {array.shape}")
    return array


def select_detections(detections, classes, threshold):
    """Rows whose class is one of ``classes`` and whose confidence is strictly greater than ``threshold``."""
    detections = as_detections(detections)
    keep = np.isin(detections[:, 5], classes) & (detections[:, 4] > threshold)
    return detections[keep]


def expand_box(xmin, ymin, xmax, ymax, factor):
    """Grow each side by (f - 1) times the box's extent along that axis, factor = (fx, fy)."""
    fx, fy = factor
    width, height = xmax - xmin, ymax - ymin
    return (xmin - (fx - 1) * width, ymin - (fy - 1) * height,
            xmax + (fx - 1) * width, ymax + (fy - 1) * height)


def square_box(xmin, ymin, xmax, ymax):
    """Grow the shorter side equally on both ends until the box is square."""
    width, height = xmax - xmin, ymax - ymin
    if width < height:
        grow = (height - width) / 2
        return xmin - grow, ymin, xmax + grow, ymax
    grow = (width - height) / 2
    return xmin, ymin - grow, xmax, ymax + grow


def clip_box(xmin, ymin, xmax, ymax, max_w, max_h):
    """Clip at 0 below and at the dataset's frame size above (the box may stop being square)."""
    return max(xmin, 0.0), max(ymin, 0.0), min(xmax, float(max_w)), min(ymax, float(max_h))


def object_boxes(detections, settings, threshold):
    """Detections of one key frame -> the stored boxes: filtered, expanded, squared, clipped.

    ``settings`` is an extra.config.DatasetSettings; returns a list of 6-float lists.
    """
    boxes = []
    for xmin, ymin, xmax, ymax, conf, cls in select_detections(detections, settings.detector_classes, threshold):
        corners = expand_box(float(xmin), float(ymin), float(xmax), float(ymax), settings.box_factor)
        corners = clip_box(*square_box(*corners), settings.max_w, settings.max_h)
        boxes.append([*corners, float(conf), float(cls)])
    return boxes


def crop_object(frame, box, obj_size):
    """The box's pixels (corners truncated to int) resized with OpenCV to obj_size x obj_size, uint8 BGR."""
    xmin, ymin, xmax, ymax = (int(v) for v in box[:4])
    crop = frame[max(ymin, 0):ymax, max(xmin, 0):xmax]
    if crop.size == 0:
        raise VPCError(f"box {list(box[:4])} lies outside the {frame.shape[1]}x{frame.shape[0]} frame: "
                       f"boxes and frames do not belong together")
    return cv2.resize(crop, (obj_size, obj_size))


def clip_crops(frames, boxes, obj_size):
    """Every box cut from every frame of the clip: uint8 BGR (n_objects, d, obj_size, obj_size, 3)."""
    if len(boxes) == 0:
        return np.zeros((0, len(frames), obj_size, obj_size, 3), dtype=np.uint8)
    return np.stack([np.stack([crop_object(frame, box, obj_size) for frame in frames]) for box in boxes])


def objects_array(crops):
    """Crops (n, d, H, W, 3) uint8 -> the stored float32 (n, 3, d, H, W), x / 127.5 - 1 in BGR order.

    No crop gives the placeholder.
    """
    if len(crops) == 0:
        return empty_clip()
    return np.ascontiguousarray(normalize_frame(crops).transpose(0, 4, 1, 2, 3))
