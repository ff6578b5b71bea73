"""Own footage: fit.py on normal .mp4 files with any names, score.py on an unlabelled video, live
sources, and what happens when a source stops or is damaged."""
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import loadmat

from extra.datasets import open_video
from extra.sources import ClipReader, footage_videos
from extra.footage_outputs import alarm_intervals

from tests.helpers import normal_footage, small_random_checkpoint, to_mp4

REPO = Path(__file__).resolve().parent.parent
CSV_COLUMNS = ("frame", "timestamp", "spatial", "temporal", "highlevel", "fused", "alarm")   # a published model's
D = 4
NAMES = ("cam 1 morning", "zz_2", "Lobby 3 east")     # any names; in the datasets' order by their integers


def command(script, *args):
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO, capture_output=True, text=True)


def one_error_line(result, pattern):
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    assert __import__("re").search(pattern, errors[0]), errors[0]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Normal .mp4 files with arbitrary names, a model fitted on them, a test video and its labels."""
    root = tmp_path_factory.mktemp("footage")
    data, normal = normal_footage(root, 40, NAMES)
    test = to_mp4(data / "testing" / "frames" / "01", root / "street.mp4")
    labels = np.zeros(40, np.uint8)
    start, end = np.asarray(loadmat(str(data / "avenue.mat"))["gt"][0, 0]).ravel()
    labels[start - 1:end] = 1
    weights = small_random_checkpoint(root / "small.pt")
    model = root / "camera.vpc"
    result = command("fit.py", normal, "--out", model, "--detector", "motion", "--preset", "avenue",
                     f"--consecutive={D}", f"--clip_weights={weights}", f"--work_dir={root / 'work'}")
    assert result.returncode == 0, result.stderr
    return root, model, test, labels, result.stdout


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_fit_on_mp4_files_with_any_names(fitted):
    root, model, _, _, printed = fitted
    assert [v.name for v in footage_videos([root / "normal"])] == list(NAMES)
    assert f"model: {model} (3 normal videos" in printed and "alarm threshold" in printed
    folder, = (root / "work" / "footage").iterdir()          # one folder, named by the first video, keyed by the inputs
    batches = folder / "objects" / "avenue" / "train" / "zz_2_object_batches.h5"
    assert folder.name.startswith(f"{NAMES[0]}_") and batches.is_file()
    made = batches.stat().st_mtime_ns
    from Memorization.model import VideoPatchCore

    loaded = VideoPatchCore.load(model)
    assert loaded.calibration["held_out"] == list(NAMES) and loaded.calibration["clip_threshold"] > 0
    # a rerun under another model name reuses every intermediate file and writes the same model
    again = command("fit.py", root / "normal", "--out", root / "again.vpc", "--detector", "motion", "--preset", "avenue",
                    f"--consecutive={D}", f"--clip_weights={root / 'small.pt'}", f"--work_dir={root / 'work'}")
    assert again.returncode == 0, again.stderr
    assert "objects: 3/3 done" in again.stdout
    assert [p.name for p in (root / "work" / "footage").iterdir()] == [folder.name]
    assert batches.stat().st_mtime_ns == made
    reloaded = VideoPatchCore.load(root / "again.vpc")
    assert all((reloaded.banks[b] == loaded.banks[b]).all() for b in loaded.banks)


def test_score_an_unlabelled_video(fitted, tmp_path):
    root, model, test, labels, _ = fitted
    result = command("score.py", model, test, "--detector", "motion", "--out_dir", tmp_path, "--video_out")
    assert result.returncode == 0, result.stderr
    header, rows = read_csv(tmp_path / "street.csv")
    assert tuple(header) == CSV_COLUMNS and len(rows) == 40            # 10 clips of 4 frames
    assert [int(r[0]) for r in rows] == list(range(40)) and float(rows[5][1]) == pytest.approx(5 / 25)
    alarms = np.array([int(r[6]) for r in rows])
    anomalous = np.flatnonzero(labels)
    # the alarms lie in the generated anomaly (give or take a clip), and it raises some
    assert alarms.any() and np.flatnonzero(alarms).min() >= anomalous.min() - D
    assert np.flatnonzero(alarms).max() <= anomalous.max() + D
    intervals = json.loads((tmp_path / "street_alarms.json").read_text())
    assert intervals["frames_scored"] == 40
    expected = alarm_intervals(list(range(40)), [i / 25 for i in range(40)], alarms,
                               np.array([float(r[5]) for r in rows]))      # the CSV keeps 6 digits
    assert intervals["alarm_intervals"] == [{**e, "peak": pytest.approx(e["peak"], rel=1e-5)} for e in expected]
    # the bank columns are calibrated: 0 the median and 1 the 90th percentile of the normal range (the high-level
    # one then standardised by the video's earlier clips); --raw_scores the distances
    raw = command("score.py", model, test, "--out_dir", tmp_path / "raw", "--raw_scores")
    assert raw.returncode == 0, raw.stderr
    from extra.evaluation.fusion import causal_standardised, normalised
    from Memorization.model import VideoPatchCore

    scales = VideoPatchCore.load(model).calibration["normalisation"]
    _, raw_rows = read_csv(tmp_path / "raw" / "street.csv")
    for column, bank in enumerate(("spatial", "temporal", "highlevel"), start=2):
        distances = np.array([float(r[column]) for r in raw_rows])
        expected = normalised(distances, scales[bank])          # the calibration's (log) scale
        if bank == "highlevel":
            assert scales[bank]["causal"] == {"clip_frames": D, "prior_clips": 1.0}
            expected = causal_standardised(expected, D)
        np.testing.assert_allclose([float(r[column]) for r in rows], expected, rtol=1e-4, atol=1e-5)
    assert [r[5:] for r in raw_rows] == [r[5:] for r in rows]          # the fused score and alarms the same
    capture = cv2.VideoCapture(str(tmp_path / "street.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 40 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 4 * 160
    assert capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == 4 * 96 + 112         # enlarged to 640 wide, the timeline under
    assert "street: 40 frames scored" in result.stdout and "ms mean" in result.stdout
    # with the ground truth: the AUROC too
    np.save(tmp_path / "labels.npy", labels)
    graded = command("score.py", model, test, "--detector", "motion", "--out_dir", tmp_path / "gt",
                     "--gt", tmp_path / "labels.npy")
    assert graded.returncode == 0
    auroc = float(graded.stdout.split("; AUROC ")[1].split("%")[0])
    assert auroc > 80                    # random weights, yet the generated anomaly stands out


def test_the_detector_fit_py_used_is_the_default_and_another_is_said(fitted, tmp_path):
    root, model, test, _, _ = fitted
    given = command("score.py", model, test, "--detector", "motion", "--out_dir", tmp_path / "given")
    recorded = command("score.py", model, test, "--out_dir", tmp_path / "recorded")
    assert given.returncode == recorded.returncode == 0, recorded.stderr
    assert (tmp_path / "recorded" / "street.csv").read_bytes() == (tmp_path / "given" / "street.csv").read_bytes()
    other = command("score.py", model, test, "--detector", "hog", "--out_dir", tmp_path / "hog")
    assert other.returncode == 0 and "--detector hog overrides the model's motion" in other.stderr


def test_live_file_gives_the_offline_scores(fitted, tmp_path):
    root, model, test, _, _ = fitted
    offline = command("score.py", model, test, "--detector", "motion", "--out_dir", tmp_path / "offline")
    live = command("score.py", model, test, "--detector", "motion", "--out_dir", tmp_path / "live", "--live")
    assert offline.returncode == live.returncode == 0, live.stderr
    assert (tmp_path / "live" / "street.csv").read_bytes() == (tmp_path / "offline" / "street.csv").read_bytes()
    assert "the source ended after 40 frames" in live.stdout


def test_a_source_that_ends_mid_clip_or_breaks(fitted, tmp_path):
    root, model, test, _, _ = fitted
    short = to_mp4(test, tmp_path / "short.mp4", frames=30)                 # 7 clips and 2 frames
    result = command("score.py", model, short, "--detector", "motion", "--out_dir", tmp_path, "--live")
    assert result.returncode == 0
    assert "after 30 frames; the last 2, fewer than a clip of 4, are not scored" in result.stdout
    # one row per frame read: the last 2, of no clip, with empty scores and no alarm
    rows = read_csv(tmp_path / "short.csv")[1]
    assert [int(row[0]) for row in rows] == list(range(30)) and all(row[2] for row in rows[:28])
    assert all(row[2:-1] == [""] * (len(CSV_COLUMNS) - 3) and row[-1] == "0" for row in rows[28:])
    assert "(2 of 30 frames have no full clip or window around them: their CSV rows have empty scores)" in result.stdout
    summary = json.loads((tmp_path / "short_alarms.json").read_text())
    assert (summary["frames"], summary["frames_scored"], summary["frame_base"]) == (30, 28, 0) and "failed" not in summary
    # frames that cannot be read in the middle: one line, and the clips before it kept as whole rows
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(open_video(test).frames_at(range(40))):
        cv2.imwrite(str(frames / f"{i:03d}.jpg"), image)
    (frames / "021.jpg").write_bytes(b"not a jpeg")
    broken = command("score.py", model, frames, "--detector", "motion", "--out_dir", tmp_path)
    one_error_line(broken, r"cannot read frame .*021\.jpg")
    header, rows = read_csv(tmp_path / "frames.csv")
    assert tuple(header) == CSV_COLUMNS and len(rows) == 20 and all(len(row) == len(CSV_COLUMNS) for row in rows)
    summary = json.loads((tmp_path / "frames_alarms.json").read_text())
    assert summary["frames_scored"] == 20 and "cannot read frame" in summary["failed"]     # no silent "no alarms"
    one_error_line(command("score.py", model, "7", "--detector", "motion", "--out_dir", tmp_path),
                   r"cannot open the source 7")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    one_error_line(command("score.py", model, bad, "--detector", "motion", "--out_dir", tmp_path),
                   r"cannot open video file .*bad\.mp4")


def test_model_files_that_score_py_refuses(fitted, tmp_path):
    root, model, test, _, _ = fitted
    cut = tmp_path / "cut.vpc"
    cut.write_bytes(model.read_bytes()[:1000])
    one_error_line(command("score.py", cut, test, "--out_dir", tmp_path), r"cut\.vpc is not a readable model file")
    one_error_line(command("score.py", model, tmp_path / "absent.mp4", "--out_dir", tmp_path),
                   r"video not found: .*absent\.mp4")


def test_one_normal_video_uses_the_documented_fallback(fitted, tmp_path):
    root, *_ = fitted
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(root / "normal" / "zz_2.mp4", one / "only.mp4")
    result = command("fit.py", one, "--out", tmp_path / "one.vpc", "--detector", "motion", "--preset", "avenue",
                     f"--consecutive={D}", f"--clip_weights={root / 'small.pt'}", f"--work_dir={tmp_path / 'work'}")
    assert result.returncode == 0, result.stderr
    assert "one training video: the label-free calibration holds out each half of it" in result.stderr
    assert "halves of the only training video" in result.stdout


def test_clip_reader_names_and_notes(tmp_path):
    frames = tmp_path / "cam 3"
    frames.mkdir()
    for i in range(9):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    reader = ClipReader(frames, 4)
    clips = list(reader)
    assert reader.name == "cam 3" and [c.first_frame for c in clips] == [0, 4]
    assert clips[1].timestamps == [4 / 25, 5 / 25, 6 / 25, 7 / 25]
    assert reader.note == "the last 1 frames, fewer than a clip of 4, are not scored"
    # a file's own frame rate is known before its first clip: the outputs' timestamps and MP4 need it
    writer = cv2.VideoWriter(str(tmp_path / "slow.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (8, 8))
    for i in range(9):
        writer.write(np.full((8, 8, 3), i, np.uint8))
    writer.release()
    slow = ClipReader(tmp_path / "slow.mp4", 4)
    assert slow.fps == 10 and list(slow)[1].timestamps == [0.4, 0.5, 0.6, 0.7]


def test_clip_weights_are_found_by_their_hash(fitted, tmp_path):
    import dataclasses

    import torch

    from extra.errors import VPCError
    from Memorization.encoders.loader import model_backbone
    from Memorization.model import VideoPatchCore

    root, model_path, _, _, _ = fitted
    model = VideoPatchCore.load(model_path)
    moved = tmp_path / "moved.pt"
    shutil.copy(model.method.backbone, moved)
    model.method = dataclasses.replace(model.method, backbone=str(tmp_path / "gone.pt"))    # the recorded file is gone
    found = model_backbone(model, "cpu", clip_weights=str(moved))
    assert found.identity()["weights_sha256"] == model.backbone["weights_sha256"]
    other = tmp_path / "other.pt"
    state = torch.load(moved, map_location="cpu", weights_only=True)
    torch.save({key: value + 1 if value.is_floating_point() else value for key, value in state.items()}, other)
    with pytest.raises(VPCError, match=r"made with .* weights of SHA-256 [0-9a-f]{16}\.\.\.; none found: .*other\.pt "
                                       r"\(other weights\).*gone\.pt.*; pass that weights file with --clip_weights$"):
        model_backbone(model, "cpu", clip_weights=str(other))
