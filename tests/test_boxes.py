"""Key frame, box filtering, expansion, squaring, clipping and crops (SPEC section 2), by hand."""
import numpy as np
import pytest

from extra.config import DATASETS
from extra.errors import VPCError
from ObjectDetection.boxes import (
    as_detections, clip_box, clip_crops, crop_object, expand_box, key_frame_offset, object_boxes,
    objects_array, select_detections, square_box,
)


@pytest.mark.parametrize("d, offset", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 2), (10, 5)])
def test_key_frame_is_the_middle_from_four_frames_else_the_last(d, offset):
    assert key_frame_offset(d) == offset


def test_class_and_confidence_filter_keeps_strictly_greater():
    detections = [
        [0, 0, 10, 10, 0.7, 0],          # equal to the threshold: dropped
        [0, 0, 10, 10, 0.7000001, 0],    # kept
        [0, 0, 10, 10, 0.95, 5],         # bus: not a kept class
        [0, 0, 10, 10, 0.9, 7],          # truck: kept
        [0, 0, 10, 10, 0.9, 3],          # motorcycle: kept
        [0, 0, 10, 10, 0.5, 1],          # below
    ]
    kept = select_detections(detections, (0, 1, 2, 3, 7), 0.7)
    assert kept[:, 4].tolist() == [0.7000001, 0.9, 0.9]
    assert kept[:, 5].tolist() == [0, 7, 3]
    assert select_detections([], (0,), 0.5).shape == (0, 6)


def test_expand_square_clip_pieces():
    assert expand_box(100, 100, 150, 200, (1.2, 1.2)) == pytest.approx((90, 80, 160, 220))
    assert expand_box(100, 100, 150, 200, (1.0, 1.0)) == (100, 100, 150, 200)
    assert square_box(100, 50, 120, 110) == (80, 50, 140, 110)          # tall: widened
    assert square_box(0, 10, 100, 30) == (0, -30, 100, 70)              # wide: heightened
    assert square_box(1, 2, 11, 12) == (1, 2, 11, 12)                   # already square
    assert clip_box(-14, 386, 84, 484, 856, 480) == (0, 386, 84, 480)


# (dataset, detection, expected stored box) worked out by hand from SPEC section 2.
HAND_COMPUTED = [
    # avenue, factor 1.0, 640 x 360: squared only (w 20, h 60 -> 20 px more on each side).
    ("avenue", [100, 50, 120, 110, 0.9, 0], [80, 50, 140, 110]),
    ("avenue", [5, 300, 45, 350, 0.9, 0], [0, 300, 50, 350]),            # 5 - 5 = 0
    ("avenue", [630, 340, 640, 360, 0.9, 2], [625, 340, 640, 360]),      # clipped at 640: no longer square
    # shanghai, factor 1.2, 856 x 480: w 50 h 100 -> [90, 80, 160, 220] -> square 140 -> x +- 35.
    ("shanghai", [100, 100, 150, 200, 0.9, 0], [55, 80, 195, 220]),
    ("shanghai", [10, 400, 60, 470, 0.9, 1], [0, 386, 84, 480]),         # [-14, 386, 84, 484] clipped
    # iitb, factor 1.0, 1920 x 1080.
    ("iitb", [1900, 1000, 1920, 1080, 0.9, 0], [1870, 1000, 1920, 1080]),
    ("iitb", [0, 10, 100, 30, 0.9, 3], [0, 0, 100, 70]),                 # y grown 40 each way, clipped at 0
]


@pytest.mark.parametrize("dataset, detection, expected", HAND_COMPUTED)
def test_stored_boxes_per_dataset(dataset, detection, expected):
    (box,) = object_boxes([detection], DATASETS[dataset], threshold=0.6)
    assert box[:4] == pytest.approx(expected, abs=1e-9)
    assert box[4:] == [0.9, float(detection[5])]
    assert all(isinstance(v, float) for v in box)


def test_thresholds_of_each_dataset_apply_through_object_boxes():
    detections = [[0, 0, 10, 10, 0.75, 0], [0, 0, 10, 10, 0.85, 0]]
    assert len(object_boxes(detections, DATASETS["avenue"], DATASETS["avenue"].train_conf)) == 2    # > 0.7
    assert len(object_boxes(detections, DATASETS["shanghai"], DATASETS["shanghai"].train_conf)) == 1  # > 0.8
    assert len(object_boxes(detections, DATASETS["iitb"], DATASETS["iitb"].test_conf)) == 2         # > 0.6


def generated_frames(d, height=40, width=60):
    """d distinct frames: pixel (y, x, c) = (y * 7 + x * 3 + c * 50 + t * 11) mod 256."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return [((y * 7 + x * 3 + c * 50 + t * 11) % 256).astype(np.uint8) for t in range(d)]


def test_crop_values_equal_a_hand_made_crop():
    frames = generated_frames(3)
    boxes = [[10.9, 5.5, 18.2, 13.99, 0.9, 0], [0.0, 0.0, 8.0, 8.0, 0.8, 2]]   # both 8 x 8 after truncation
    objects = objects_array(clip_crops(frames, boxes, obj_size=8))
    assert objects.shape == (2, 3, 3, 8, 8) and objects.dtype == np.float32
    for t, frame in enumerate(frames):
        for c in range(3):          # BGR order kept: channel c is OpenCV's channel c
            expected = frame[5:13, 10:18, c].astype(np.float32) / 127.5 - 1
            np.testing.assert_array_equal(objects[0, c, t], expected)
            np.testing.assert_array_equal(objects[1, c, t], frame[0:8, 0:8, c].astype(np.float32) / 127.5 - 1)
    assert objects.min() >= -1 and objects.max() <= 1


def test_crop_is_resized_to_the_object_size():
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[10:20, 20:30] = (10, 20, 30)      # a uniform 10 x 10 patch, cut and upsampled to 16 x 16
    crop = crop_object(frame, [20, 10, 30, 20], 16)
    assert crop.shape == (16, 16, 3)
    assert (crop == np.array([10, 20, 30], np.uint8)).all()


def test_no_box_gives_the_one_element_placeholder():
    placeholder = objects_array(clip_crops(generated_frames(4), [], obj_size=8))
    assert placeholder.shape == (1,) and placeholder.dtype == np.float32 and placeholder[0] == 0


def test_box_outside_the_frame_and_malformed_rows_are_errors():
    with pytest.raises(VPCError, match="lies outside"):
        crop_object(np.zeros((10, 10, 3), np.uint8), [20, 20, 30, 30], 8)
    with pytest.raises(VPCError, match="rows of 6 numbers"):
        as_detections([[1, 2, 3, 4]])
