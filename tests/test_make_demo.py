import hashlib
import io
import json
import time

import cv2
import numpy as np
import pytest
from scipy.io import loadmat

from extra.config import DATASETS
from extra.datasets import intervals_from_labels, intervals_to_labels, load_ground_truth, scan_split
from extra.errors import VPCError, run_main
from extra.make_demo import (ANOMALY_KINDS, Mover, anomaly_span, anomaly_tracks, avenue_mat_bytes, load_manifest,
                             main, make_demo, mover_mask, plan_video, render_background, render_frame, track_labels)

TINY = dict(n_train=2, n_test=4, n_frames=13, width=96, height=64)


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, monkeypatch):
    first = make_demo(tmp_path / "a", seed=0, **TINY)
    # scipy stamps the creation time into .mat headers: a later run must still match.
    monkeypatch.setattr(time, "asctime", lambda *args: "Thu Jan  1 00:00:00 1970")
    again = make_demo(tmp_path / "b", seed=0, **TINY)
    other = make_demo(tmp_path / "c", seed=1, **TINY)
    assert first == tmp_path / "a" / "avenue"
    assert tree_digest(first) == tree_digest(again)
    assert tree_digest(first) != tree_digest(other)


def test_video_files_are_reproducible_too(tmp_path):
    a = make_demo(tmp_path / "a", seed=3, as_video_files=True, **TINY)
    b = make_demo(tmp_path / "b", seed=3, as_video_files=True, **TINY)
    assert tree_digest(a) == tree_digest(b)


@pytest.mark.parametrize("dataset", ["avenue", "shanghai", "iitb"])
def test_layout_reads_back_with_the_reported_labels(tmp_path, dataset):
    settings = DATASETS[dataset]
    make_demo(tmp_path, dataset=dataset, seed=5, **TINY)
    manifest = load_manifest(tmp_path / dataset)
    train = scan_split(settings, tmp_path, "train")
    test = scan_split(settings, tmp_path, "test")
    assert [v.name for v in train] == [r["name"] for r in manifest["train"]]
    assert [v.name for v in test] == [r["name"] for r in manifest["test"]]
    assert len(train) == 2 and len(test) == 4
    assert all(v.n_raw_frames == 13 for v in train + test)
    assert all(v.n_frames == (12 if dataset == "iitb" else 13) for v in train + test)
    labels = load_ground_truth(settings, tmp_path, test)
    total = 0
    for video, record in zip(test, manifest["test"]):
        got = labels[video.name]
        assert got.tolist() == record["labels"]
        intervals = np.array(record["intervals"]).T
        assert np.array_equal(intervals_to_labels(intervals, 13), got)
        # 13 frames: an anomaly of 3 (20-35 %) between normal stretches of 5.
        assert intervals.T.tolist() == [[6, 8]]
        tracks = json.loads((tmp_path / dataset / "test_regions" / f"{video.name}.json").read_text())["tracks"]
        assert [[box[0] for box in track] for track in tracks] == [[5, 6, 7]]
        total += int(got.sum())
    assert manifest["anomalous_frames"] == total
    assert [r["anomalies"][-1]["kind"] for r in manifest["test"]] == ["running", "wrong_way", "object", "thrown"]


def test_frame_files_follow_each_dataset_naming(tmp_path):
    for dataset in ("avenue", "shanghai", "iitb"):
        make_demo(tmp_path, dataset=dataset, seed=0, **TINY)
    shanghai_train = scan_split(DATASETS["shanghai"], tmp_path, "train")[0]
    # Integer order, not text order: 2.jpg before 10.jpg.
    assert [p.name for p in shanghai_train.frame_paths] == [f"{t}.jpg" for t in range(13)]
    assert shanghai_train.name == "01_001"
    assert scan_split(DATASETS["shanghai"], tmp_path, "test")[0].frame_paths[0].name == "000.jpg"
    assert scan_split(DATASETS["avenue"], tmp_path, "test")[3].frame_paths[-1].name == "0012.jpg"
    iitb_test = scan_split(DATASETS["iitb"], tmp_path, "test")
    assert [v.name for v in iitb_test] == ["000003", "000004", "000005", "000006"]
    assert (tmp_path / "iitb" / "groundtruth" / "000003" / "000003.npy").is_file()


def test_avenue_mat_holds_a_pair_for_one_interval_and_2xK_for_more(tmp_path):
    make_demo(tmp_path, seed=0, **TINY)
    manifest = load_manifest(tmp_path / "avenue")
    gt = loadmat(str(tmp_path / "avenue" / "avenue.mat"))["gt"]
    assert gt.shape == (1, 4)
    for entry, record in zip(gt[0], manifest["test"]):
        # A plain pair (1-D) as in the real file; MATLAB, hence loadmat, makes it a 1 x 2 row.
        assert entry.shape == (1, 2) and [entry[0].tolist()] == record["intervals"]
    two = np.array([[3, 20], [9, 25]])
    (entry,) = loadmat(io.BytesIO(avenue_mat_bytes([two])))["gt"][0]
    assert np.array_equal(entry, two)


def test_anomalous_frame_differs_from_background_where_the_anomaly_is_drawn(tmp_path):
    make_demo(tmp_path, seed=2, **TINY)
    background = render_background(2, 96, 64).astype(np.int16)
    movers = plan_video(2, "test", 0, 13, 96, 64)
    runner = movers[-1]
    assert runner.kind == "running"
    record = load_manifest(tmp_path / "avenue")["test"][0]
    first, last = record["anomalies"][-1]["first"] - 1, record["anomalies"][-1]["last"] - 1     # 0-based
    t = (first + last) // 2                                  # mid-crossing: inside the frame
    frame = cv2.imread(str(tmp_path / "avenue" / "testing" / "frames" / "01" / f"{t:04d}.jpg")).astype(np.int16)
    difference = np.abs(frame - background).mean(axis=2)
    drawn = mover_mask(runner, t, 96, 64) >= 128
    anything = sum(mover_mask(m, t, 96, 64).astype(int) for m in movers) > 0
    far_from_movers = cv2.erode((~anything).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert drawn.sum() > 20
    assert difference[drawn].mean() > 40
    assert difference[far_from_movers].mean() < 4             # only JPEG noise elsewhere
    # Frames before the anomaly starts show no anomalous pixels: the label says 0 there.
    assert record["labels"][first - 1] == 0 and record["labels"][first] == 1


def test_labels_and_boxes_follow_visibility_hand_worked():
    # A ball of radius 3 centred at x = -20 + 4t: its right edge reaches pixel 0 at t = 5
    # (centre 0; at t = 4 the edge is at x = -1); it exists up to frame 9.
    ball = Mover("ball", 0, 9, -20.0, 20.0, 4.0, 0.0, 3.0, ((0, 0, 255),), kind="thrown")
    walker = Mover("ball", 0, 11, 20.0, 20.0, 0.0, 0.0, 3.0, ((0, 255, 0),))      # normal: never labelled
    tracks = anomaly_tracks([ball, walker], 12, 40, 40)
    # Box of every touched pixel (antialiasing reaches 4 px from the centre), clipped at 0, ends exclusive.
    assert tracks == [[[t, max(0, 4 * t - 24), 16, 4 * t - 15, 25] for t in range(5, 10)]]
    labels = track_labels(tracks, 12)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [0] * 2
    assert intervals_from_labels(labels).tolist() == [[6], [10]]
    assert intervals_from_labels([1, 1, 0, 1]).tolist() == [[1, 4], [2, 4]]
    assert intervals_from_labels([0, 0]).shape == (2, 0)


@pytest.mark.parametrize("n_frames", [8, 9, 13, 40, 60, 80, 120, 1000])
def test_anomaly_span_is_20_to_35_percent_between_normal_stretches(n_frames):
    shortest, longest = -(-n_frames // 5), 7 * n_frames // 20
    normal = max(-(-3 * n_frames // 20), 10 if n_frames >= 40 else 0)
    for seed in range(30):
        start, length = anomaly_span(np.random.default_rng(seed), n_frames)
        assert shortest <= length <= longest
        assert start >= normal and n_frames - start - length >= normal


@pytest.mark.parametrize("n_frames", [40, 60, 80, 120])
@pytest.mark.parametrize("width, height", [(96, 64), (640, 360)])
def test_rendered_anomalies_follow_the_span_rule(n_frames, width, height):
    """Labels come from visibility: each video's one anomaly is in view on 20-35 % of its frames,
    with at least 15 % and 10 normal frames before and after it."""
    for seed in range(3):
        for index, kind in enumerate(ANOMALY_KINDS):
            movers = plan_video(seed, "test", index, n_frames, width, height)
            assert [m.kind for m in movers if m.anomalous] == [kind]
            ((first,), (last,)) = intervals_from_labels(track_labels(anomaly_tracks(movers, n_frames, width, height),
                                                                     n_frames))
            assert 20 * n_frames <= 100 * (last - first + 1) <= 35 * n_frames
            assert 100 * min(first - 1, n_frames - last) >= max(15 * n_frames, 1000)


def test_default_demo_test_videos_are_mostly_normal():
    """`make demo`'s four test videos (seed 0, 60 frames, 640 x 360): 12 to 21 anomalous frames each."""
    for index in range(4):
        labels = track_labels(anomaly_tracks(plan_video(0, "test", index, 60, 640, 360), 60, 640, 360), 60)
        assert 12 <= labels.sum() <= 21 and labels[0] == labels[-1] == 0


@pytest.mark.parametrize("dataset, as_video_files", [("avenue", False), ("iitb", True)])
def test_region_tracks_box_exactly_the_visible_anomalous_movers(tmp_path, dataset, as_video_files):
    make_demo(tmp_path, dataset=dataset, seed=6, n_train=1, n_test=4, n_frames=40, width=160, height=96,
              as_video_files=as_video_files)
    settings = DATASETS[dataset]
    videos = scan_split(settings, tmp_path, "test")
    labels = load_ground_truth(settings, tmp_path, videos)
    for index, video in enumerate(videos):
        tracks = json.loads((tmp_path / dataset / "test_regions" / f"{video.name}.json").read_text())["tracks"]
        anomalous = [m for m in plan_video(6, "test", index, 40, 160, 96) if m.anomalous]
        assert len(tracks) == len(anomalous) == 1
        boxes = [{box[0]: box[1:] for box in track} for track in tracks]
        for t in range(40):                   # frame t: the t-th file on disk (IITB's unused first one included)
            masks = [mover_mask(m, t, 160, 96) for m in anomalous]
            visible = [bool((mask >= 128).any()) for mask in masks]
            assert [t in b for b in boxes] == visible
            assert labels[video.name][t] == any(visible)
            for mask, b in zip(masks, boxes):
                if t in b:
                    xmin, ymin, xmax, ymax = b[t]
                    assert 0 <= xmin < xmax <= 160 and 0 <= ymin < ymax <= 96
                    inside = np.zeros_like(mask, bool)
                    inside[ymin:ymax, xmin:xmax] = True
                    assert not mask[~inside].any()                  # encloses every pixel it touches
                    assert mask[ymin].any() and mask[ymax - 1].any() and mask[:, xmin].any() and mask[:, xmax - 1].any()


def test_video_files_read_back_as_clips(tmp_path):
    make_demo(tmp_path / "avi", seed=4, as_video_files=True, **TINY)
    settings = DATASETS["avenue"]
    videos = scan_split(settings, tmp_path / "avi", "test")
    assert (tmp_path / "avi" / "avenue" / "testing" / "frames" / "01.avi").is_file()
    assert [v.name for v in videos] == ["01", "02", "03", "04"] and all(v.is_file for v in videos)
    assert videos[0].n_raw_frames == 13
    clips = list(videos[0].iter_clips(4))
    assert [c for c, _ in clips] == [0, 1, 2]
    assert all(len(frames) == 4 and frames[0].shape == (64, 96, 3) for _, frames in clips)
    # Clip 1, position 1 is frame 5: closest to the rendered frame 5, up to MJPG noise.
    background, movers = render_background(4, 96, 64), plan_video(4, "test", 0, 13, 96, 64)
    decoded = clips[1][1][1].astype(int)
    errors = [np.abs(decoded - render_frame(background, movers, t)).mean() for t in range(13)]
    assert int(np.argmin(errors)) == 5 and errors[5] < 4
    labels = load_ground_truth(settings, tmp_path / "avi", videos)
    assert labels["01"].tolist() == load_manifest(tmp_path / "avi" / "avenue")["test"][0]["labels"]


def test_existing_dataset_is_refused_kept_or_replaced(tmp_path):
    target = make_demo(tmp_path, seed=0, **TINY)
    before = tree_digest(target)
    with pytest.raises(VPCError, match="--overwrite"):
        make_demo(tmp_path, seed=1, **TINY)
    assert make_demo(tmp_path, seed=1, skip_existing=True, **TINY) == target
    assert tree_digest(target) == before
    make_demo(tmp_path, seed=1, overwrite=True, **TINY)
    assert load_manifest(target)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avenue"]   # no staging folder left


def test_command_line(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--seed", "0", "--dataset", "shanghai", "--n_train", "1", "--n_test", "2",
            "--n_frames", "9", "--width", "64", "--height", "48"]
    assert run_main(main, args) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    manifest = load_manifest(tmp_path / "shanghai")
    assert f"{manifest['anomalous_frames']} of 18 test frames anomalous" in summary
    assert (manifest["width"], manifest["height"], manifest["n_frames"]) == (64, 48, 9)
    assert run_main(main, args) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_main(main, args + ["--overwrite"]) == 0


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr("extra.make_demo.write_ground_truth", fail)
    with pytest.raises(RuntimeError):
        make_demo(tmp_path, seed=0, **TINY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change, message", [
    (dict(dataset="ucsd"), "unknown dataset"),
    (dict(n_frames=3), "n_frames"),
    (dict(width=10), "at least 32"),
    (dict(seed=-1), "seed"),
    (dict(n_test=0), "one test video"),
    (dict(overwrite=True, skip_existing=True), "choose one"),
])
def test_bad_arguments_are_refused(tmp_path, change, message):
    arguments = dict(TINY, seed=0)
    arguments.update(change)
    with pytest.raises(VPCError, match=message):
        make_demo(tmp_path, **arguments)
    assert list(tmp_path.iterdir()) == []
