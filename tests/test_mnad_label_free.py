"""MNAD's label-free column: which training footage is held out, the pseudo-anomalous windows, the
calibration by hand on small vectors, and a tiny run trained with --hold_out whose evaluation has the
column and says what was held out."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from extra.cli import dataset_settings
from extra.datasets import scan_split
from extra.errors import VPCError
from extra.evaluation.results import RESULTS_FILE
from extra.evaluation.scores import make_video_scores
from extra.make_demo import make_demo
from extra.heldout import pseudo_window, recipes_for
from extra.windows import Piece, Windows, hold_out_pieces, resized
from MNAD.data import input_frame, stacked
from MNAD.evaluate import main as evaluate_main
from MNAD.scoring import STREAMS, calibrate, calibrated_streams
from MNAD.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = ["--h", "32", "--w", "32", "--epochs", "1", "--msize", "4", "--hold_out", "1"]


def videos(*lengths):
    return [SimpleNamespace(name=f"{i + 1:02d}", n_frames=n, first_frame=0) for i, n in enumerate(lengths)]


def test_held_out_videos_are_spread_over_the_split_and_a_lone_video_gives_its_second_half():
    train, held = hold_out_pieces(videos(10, 10, 10, 10), 2, 5)
    assert [p.name for p in held] == ["01", "04"] and [p.name for p in train] == ["02", "03"]
    train, held = hold_out_pieces(videos(10, 10, 10), 1, 5)
    assert [p.name for p in held] == ["01"] and all(p.start == 0 and p.stop == 10 for p in held + train)
    assert hold_out_pieces(videos(10, 10), 0, 5)[1] == []
    (first,), (second,) = hold_out_pieces(videos(13), 1, 5)
    assert (first.name, first.start, first.stop) == ("01 (first half)", 0, 6)
    assert (second.name, second.start, second.stop) == ("01 (second half)", 6, 13)
    with pytest.raises(VPCError, match=r"^--hold_out 2 leaves no training video: hold out at most 1 of the 2$"):
        hold_out_pieces(videos(10, 10), 2, 5)
    with pytest.raises(VPCError, match="has 9 frames, too few for two halves"):
        hold_out_pieces(videos(9), 1, 5)


def test_calibration_by_hand():
    # one sequence of 6 frames; frames 4 and 5 pseudo-anomalous: low PSNR, high distance
    psnr = np.array([30.0, 31.0, 29.0, 30.0, 20.0, 22.0])
    distance = np.array([0.10, 0.12, 0.11, 0.30, 0.15, 0.14])
    labels = [np.array([0, 0, 0, 0, 1, 1])]
    scores = make_video_scores({"psnr": [psnr], "distance": [distance]}, labels, STREAMS, ["held"])
    calibration = calibrate(scores, labels, 0.25, {"held_out": ["held"]})
    # normal frames: -PSNR in [-31, -29], 99th percentile -29.03; distance in [0.10, 0.30], 99th 0.2946
    low, high = -31.0, np.percentile([-30.0, -31.0, -29.0, -30.0], 99)
    assert calibration["normalisation"]["psnr"] == pytest.approx({"low": low, "high": high})
    assert calibration["normalisation"]["distance"] == pytest.approx(
        {"low": 0.10, "high": np.percentile([0.10, 0.12, 0.11, 0.30], 99)})
    # PSNR alone separates perfectly, the distance does not (0.30 on a normal frame): alpha 1.0, the first best
    assert calibration["weights"] == {"alpha": 1.0} and calibration["separation_auroc"] == 1.0
    psnr_n = (-psnr - low) / (high - low)
    assert calibration["threshold"] == pytest.approx(np.quantile(psnr_n[:4], 0.75))
    assert calibration["clip_threshold"] == calibration["threshold"] and calibration["held_out"] == ["held"]
    # the calibrated streams of any scores: fixed scales, nothing of the scored video used
    other = make_video_scores({"psnr": [np.array([25.0])], "distance": [np.array([0.2])]}, [[0]], STREAMS)
    half = {**calibration, "weights": {"alpha": 0.5}}
    streams = calibrated_streams(other, half)
    d_scale = calibration["normalisation"]["distance"]
    expected_d = (0.2 - d_scale["low"]) / (d_scale["high"] - d_scale["low"])
    assert streams["psnr"][0] == pytest.approx((-25.0 - low) / (high - low))
    assert streams["distance"][0] == pytest.approx(expected_d)
    assert streams["total"][0] == pytest.approx(0.5 * streams["psnr"][0] + 0.5 * expected_d)
    with pytest.raises(VPCError, match="both normal and pseudo-anomalous"):
        calibrate(scores, [np.zeros(6, int)], 0.25)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnad_free") / "data"
    make_demo(root, "avenue", seed=0, n_train=2, n_test=2, n_frames=12, width=64, height=48)
    return root


def test_pseudo_anomalous_windows(data):
    (video, _) = scan_split(dataset_settings("avenue"), data, "train")
    windows = Windows([Piece(video.name, video, 0, video.n_frames)], 5, 32, 32, stacked)
    frames = [torch.from_numpy(input_frame(f)) for f in windows.frames(0, range(2, 7))]
    window = windows[2]
    assert torch.equal(window, torch.cat(frames))
    reverse = pseudo_window("reverse", windows, 2, [0], None)
    assert torch.equal(reverse, torch.cat(frames[::-1]))
    freeze = pseudo_window("freeze", windows, 2, [0], None)
    assert torch.equal(freeze, torch.cat([frames[0], frames[1], frames[2], frames[2], frames[2]]))
    # the stride is lowered until the window ends by the video's last frame (11): from frame 2, 5 frames
    skip = pseudo_window("skip", windows, 2, [0], None)
    stride = int(np.random.default_rng([0]).integers(2, 6))
    while stride > 1 and 2 + 4 * stride > 11:
        stride -= 1
    expected = [torch.from_numpy(input_frame(f)) for f in windows.frames(0, range(2, 2 + 5 * stride, stride))]
    assert stride > 1 and torch.equal(skip, torch.cat(expected))
    # spatial recipes: one square of half the side changed the same way in every frame, the rest untouched
    for recipe in ("shuffle", "paste", "swap"):
        donor = windows.frames(0, range(7, 12))
        altered = pseudo_window(recipe, windows, 2, [1], donor)
        changed = (altered != window).view(5, 3, 32, 32).any(dim=1)
        assert changed.any() and not changed.all(), recipe
        assert torch.equal(pseudo_window(recipe, windows, 2, [1], donor), altered)      # seeded
    assert recipes_for(1) == ("paste", "shuffle", "swap") and len(recipes_for(5)) == 6
    assert resized(np.zeros((48, 64, 3), np.uint8), 32, 32).shape == (32, 32, 3)


def test_a_run_trained_with_hold_out_has_a_label_free_column(data, tmp_path, capsys):
    args = [f"--data_root={data}", f"--work_dir={tmp_path}", *SMALL]
    assert train_main(args) == 0
    assert "held out of training for the label-free calibration: 01\n" in capsys.readouterr().out
    assert evaluate_main(args + ["--false_alarm_rate", "0.2"]) == 0
    report = capsys.readouterr().out
    assert "chosen on training videos only (held out: 01);" in report and "Label-free alarms (total >" in report
    folder = tmp_path / "mnad" / "avenue" / "pred_msize4_h32_w32_epochs1_hold_out1" / "results_false_alarm_rate0.2"
    document = json.loads((folder / RESULTS_FILE).read_text())
    free = document["results"]["label_free"]
    assert document["metadata"]["held_out"] == ["01"] and free["calibration"]["held_out"] == ["01"]
    assert set(free["streams"]) == {"psnr", "distance", "total"} and free["target_false_alarm_rate"] == 0.2
    assert free["weights"]["alpha"] in [i / 10 for i in range(11)]
    # 8 windows of 5 frames in the held-out video, 6 recipes, a stretch of 2 windows each
    assert free["calibration"]["sequences"] == 6 and free["calibration"]["recipes"][0] == "reverse"
    assert 0 <= free["alarms"]["false_alarm_rate"] <= 1
    # 6 normal windows (frames) held out: a 20 % rate rests on 1.2 of them, and the run says so
    support = free["calibration"]["support"]
    assert support["normal_frames"] == 6 and not support["supported"]
    assert f"Note: {support['note']}." in report
    assert free["measured_false_alarm"]["unit"] == "frames"


def test_own_footage_fit_and_score_with_mnad(data, tmp_path, capsys):
    import csv

    from fit import main as fit_main
    from MNAD.checkpoints import load_checkpoint
    from score import main as score_main

    model = tmp_path / "camera.mnad"
    flags = ["--h", "32", "--w", "32", "--epochs", "1", "--msize", "4", f"--work_dir={tmp_path / 'work'}"]
    assert fit_main([data / "avenue/training/frames", "--out", model, "--method", "mnad", *flags,
                     "--false_alarm_rate", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "held out of training for the label-free calibration: 01\n" in out
    assert f"model: {model} (MNAD pred, 2 normal videos, held out for calibration: 01; alpha" in out
    calibration = load_checkpoint(model).settings["calibration"]
    assert calibration["held_out"] == ["01"] and calibration["false_alarm_rate"] == 0.2
    assert score_main(list(map(str, [model, data / "avenue/testing/frames/01", "--out_dir", tmp_path / "scores",
                                     "--gt", data / "avenue/avenue.mat"]))) == 0
    assert "01: 8 frames scored" in capsys.readouterr().out     # 12 frames, the first 4 before a full window
    with open(tmp_path / "scores/01.csv") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["frame", "timestamp", "psnr", "distance", "fused", "alarm"]
    # one row per frame; the first 4, before a full window, with empty scores
    assert [int(row[0]) for row in rows[1:]] == list(range(12)) and rows[1][2:] == ["", "", "", "0"]
    assert all(int(row[5]) == (float(row[4]) > calibration["threshold"]) for row in rows[5:])
    # a checkpoint of MNAD/train.py has no calibration; fit.py refuses to fit without held-out footage
    trained = next((tmp_path / "work").rglob("model.safetensors"))
    with pytest.raises(VPCError, match="has no label-free calibration .* fit.py --method mnad"):
        score_main(list(map(str, [trained, data / "avenue/testing/frames/01", "--out_dir", tmp_path / "scores"])))
    with pytest.raises(VPCError, match="^--hold_out must be at least 1"):
        fit_main([data / "avenue/training/frames", "--out", model, "--method=mnad", "--hold_out", "0"])


def test_fit_method_mnad_help_and_errors_load_no_model_code():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    probe = ("import runpy, sys; sys.argv = ['fit.py', *sys.argv[1:]]\n"
             "try:\n    runpy.run_path('fit.py', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'cv2', 'sklearn') if m in sys.modules))")
    for args, expected in ((["--method", "mnad", "--help"], "--mnad_method {pred,recon}"),
                           (["v", "--out", "m", "--method=mnad", "--h", "30"], "error: --h and --w must be multiples")):
        result = subprocess.run([sys.executable, "-c", probe, *args], cwd=repo, capture_output=True, text=True,
                                timeout=60)
        assert result.stdout.splitlines()[-1] == "[]", result.stdout
        assert expected in result.stdout + result.stderr
