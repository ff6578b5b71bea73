"""Detectors: YOLOv5 weights resolution and loading, batching, the motion and HOG detectors."""
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from extra.config import DATASETS
from extra.datasets import Video, list_videos
from extra.errors import VPCError
from extra.make_demo import Mover, draw_person, make_demo, mover_mask, plan_video, render_background
from ObjectDetection.detectors import (
    YOLO_RELEASE, HogDetector, MotionDetector, YoloDetector, hog_confidence, load_yolo, moving_blobs,
    resolve_yolo_weights, shape_batches, yolo_inputs,
)


def iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --- YOLOv5 weights -------------------------------------------------------------------------------

def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, destination, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(VPCError) as error:
        resolve_yolo_weights("yolov5l")
    message = str(error.value)
    cached = tmp_path / "hub" / "checkpoints" / "yolov5l.pt"
    assert f"put {YOLO_RELEASE}/yolov5l.pt at {cached}" in message
    for hint in ("--yolo_weights PATH", "--detector=motion", "--detector=hog", "--is_load_train_pickle"):
        assert hint in message
    assert "\n" not in message
    cached.write_bytes(b"weights")          # once the file is there, the name resolves to it, offline
    assert resolve_yolo_weights("yolov5l.pt") == cached


def test_weights_path_that_does_not_exist(tmp_path):
    with pytest.raises(VPCError, match="YOLOv5 weights file not found: .*best.pt.*--detector=motion"):
        resolve_yolo_weights(str(tmp_path / "best.pt"))
    with pytest.raises(VPCError, match="weights file not found"):
        resolve_yolo_weights(str(tmp_path / "yolov5l.pt"))       # a path, not a model name


def test_a_file_that_is_no_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(VPCError, match="cannot load YOLOv5 weights from .*broken.pt"):
        load_yolo(path, "cpu")


def random_yolo_checkpoint(path, architecture):
    """A YOLOv5 checkpoint as the releases store it ({'model': whole fp16 model}), with random weights.

    Random weights give no box above YOLOv5's 0.25 NMS threshold; the objectness and class-0
    biases of the coarsest scale are raised so that some (meaningless) boxes come out.
    """
    import yolov5
    from yolov5.models.yolo import Model

    torch.manual_seed(0)
    model = Model(str(Path(yolov5.__file__).parent / "models" / f"{architecture}.yaml"), ch=3, nc=80)
    detect = model.model[-1]
    with torch.no_grad():
        bias = detect.m[-1].bias.view(detect.na, -1)
        bias[:, 4] = 0.0
        bias[:, 5] = 4.0
    torch.save({"model": model.half()}, path)
    return path


def frame_folder(folder, shapes):
    """One PNG frame per (height, width), distinct smooth noise each."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (height, width) in enumerate(shapes):
        frame = cv2.GaussianBlur((rng.random((height, width, 3)) * 255).astype(np.uint8), (0, 0), 3)
        paths.append(folder / f"{i:04d}.png")
        cv2.imwrite(str(paths[-1]), frame)
    return Video(name=folder.name, index=0, source=folder, frame_paths=paths)


def test_shape_batches_group_equal_shapes_in_order():
    items = [(0, "a"), (1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, "a")]
    assert list(shape_batches(items, 2)) == [[0, 1], [2], [3], [4, 5]]
    assert list(shape_batches(items, 1)) == [[i] for i in range(6)]
    assert list(shape_batches([], 4)) == []


def test_yolo_gets_frame_files_or_decoded_rgb_key_frames(tmp_path):
    make_demo(tmp_path / "folders", "avenue", n_train=1, n_test=1, n_frames=12, width=64, height=48)
    make_demo(tmp_path / "files", "avenue", n_train=1, n_test=1, n_frames=12, width=64, height=48,
              as_video_files=True)
    (folder,) = list_videos(DATASETS["avenue"], tmp_path / "folders", "train", 4)
    (file,) = list_videos(DATASETS["avenue"], tmp_path / "files", "train", 4)
    assert list(yolo_inputs(folder, 4)) == [(str(folder.frame_file(i)), (48, 64)) for i in (2, 6, 10)]
    decoded = list(yolo_inputs(file, 4))
    bgr = [frames[2] for _, frames in file.iter_clips(4)]
    assert len(decoded) == 3
    for (rgb, shape), frame in zip(decoded, bgr):
        assert shape == (48, 64)
        np.testing.assert_array_equal(rgb, frame[:, :, ::-1])


def test_batched_detection_equals_one_at_a_time(tmp_path):
    checkpoint = random_yolo_checkpoint(tmp_path / "random_yolov5n.pt", "yolov5n")
    wide, tall = (90, 160), (160, 90)
    video = frame_folder(tmp_path / "frames", [wide, wide, tall, wide, wide, tall])
    detector = YoloDetector(str(checkpoint), device="cpu", batch_size=2)
    model, batch_sizes = detector.model, []

    def counting_model(images, size):
        batch_sizes.append(len(images))
        return model(images, size=size)

    detector.model = counting_model
    batched = list(detector.detect_video(video, consecutive=1))     # d = 1: every frame is a key frame
    assert batch_sizes == [2, 1, 2, 1]
    detector.batch_size = 1
    single = list(detector.detect_video(video, consecutive=1))
    assert len(batched) == len(single) == 6
    for one, other in zip(batched, single):
        np.testing.assert_array_equal(one, other)
    assert all(len(d) > 0 for d in batched)
    assert batched[2][:, 2].max() <= 90 < batched[0][:, 2].max()     # boxes follow each frame's own size


def test_random_yolov5l_checkpoint_loads_like_a_users_weights_file(tmp_path):
    checkpoint = random_yolo_checkpoint(tmp_path / "random_yolov5l.pt", "yolov5l")
    video = frame_folder(tmp_path / "frames", [(360, 640)])
    detector = YoloDetector(str(checkpoint), device="cpu")      # the --yolo_weights PATH code path
    assert detector.description == "yolov5 random_yolov5l.pt"
    assert len(detector.model.names) == 80
    (detections,) = detector.detect_video(video, consecutive=1)
    assert detections.dtype == np.float64 and detections.ndim == 2 and detections.shape[1] == 6
    assert len(detections) > 0
    x0, y0, x1, y1, conf, cls = detections.T
    assert (0 <= x0).all() and (x0 <= x1).all() and (x1 <= 640).all()
    assert (0 <= y0).all() and (y0 <= y1).all() and (y1 <= 360).all()
    assert ((conf > 0.25) & (conf <= 1)).all()
    assert np.array_equal(cls, np.round(cls)) and ((cls >= 0) & (cls < 80)).all()


# --- motion ---------------------------------------------------------------------------------------

def test_moving_blobs_are_boxes_of_large_enough_components():
    mask = np.zeros((60, 80), np.uint8)
    mask[10:40, 5:25] = 255          # 20 x 30 blob
    mask[45:55, 60:70] = 255         # 10 x 10 blob (area about 100 after morphology)
    mask[2, 70] = 255                # speckle: removed by the opening
    boxes = moving_blobs(mask, min_area=50)
    assert boxes.tolist() == [[5, 10, 25, 40, 1.0, 0], [60, 45, 70, 55, 1.0, 0]]
    assert moving_blobs(mask, min_area=200).tolist() == [[5, 10, 25, 40, 1.0, 0]]
    assert moving_blobs(np.zeros((60, 80), np.uint8), 1).shape == (0, 6)


def test_motion_detector_finds_the_walking_figures(tmp_path):
    width, height, n_frames, d = 320, 180, 40, 4
    make_demo(tmp_path, "avenue", seed=0, n_train=1, n_test=1, n_frames=n_frames, width=width, height=height)
    (video,) = list_videos(DATASETS["avenue"], tmp_path, "train", d)
    movers = plan_video(0, "train", 0, n_frames, width, height)       # three walkers, apart from each other
    detections = list(MotionDetector().detect_video(video, d))
    assert len(detections) == video.n_clips(d) == 10
    for clip, found in zip(video.clips(d), detections):
        key = clip[d // 2]
        truth = []
        for mover in movers:
            ys, xs = np.nonzero(mover_mask(mover, key, width, height) >= 128)
            truth.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        assert len(found) == len(truth) == 3
        assert (found[:, 4] == 1.0).all() and (found[:, 5] == 0).all()
        for figure in truth:         # each figure has its own box, and each box is on a figure
            assert max(iou(figure, box) for box in found) > 0.35
        for box in found:
            assert max(iou(figure, box) for figure in truth) > 0.35


def test_motion_detector_sees_nothing_in_a_still_video(tmp_path):
    frame = render_background(0, 160, 90)
    folder = tmp_path / "still"
    folder.mkdir()
    paths = [folder / f"{i:04d}.png" for i in range(12)]
    for path in paths:
        cv2.imwrite(str(path), frame)
    video = Video(name="still", index=0, source=folder, frame_paths=paths)
    assert [len(found) for found in MotionDetector().detect_video(video, 4)] == [0, 0, 0]


# --- HOG ------------------------------------------------------------------------------------------

def test_hog_confidence_is_the_logistic_of_the_svm_margin():
    np.testing.assert_allclose(hog_confidence([[0.0], [np.log(3.0)], [-np.log(4.0)]]), [0.5, 0.75, 0.2])


def test_hog_finds_a_tall_person_and_skips_frames_smaller_than_its_window():
    background = render_background(0, 320, 400)
    frame = background.copy()
    person = Mover("person", 0, 10, 160, 320, 0, 0, 260, ((140, 170, 210), (40, 40, 210), (70, 45, 30)),
                   swing=0.3, stride=100)
    draw_person(frame, person, 3)
    detector = HogDetector()
    (box,) = detector.detect(frame)
    x0, y0, x1, y1, conf, cls = box
    assert x0 < 160 < x1 and y0 < 190 < y1          # around the figure's middle
    assert 0.6 < conf < 1 and cls == 0
    assert detector.detect(background).shape == (0, 6)
    assert detector.detect(background[:90, :160]).shape == (0, 6)   # OpenCV may crash on these: never called
