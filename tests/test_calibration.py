"""Label-free calibration: pseudo-anomaly recipes on tiny tensors, the normalisation, weights and
threshold computed by hand, and a stage run that never reads the test labels."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extra.evaluation.fusion import FusionWeights, calibrated_streams, normalisation
from extra.evaluation.harness import evaluate
from extra.evaluation.protocol import VIDEOPATCHCORE
from extra.evaluation.scores import make_video_scores
from extra.make_demo import make_demo
from extra.pseudo_anomalies import freeze_index, pasted, shuffled_grid, skip_index, swapped
from Memorization.calibration.weights import calibrate
from Memorization.run import main as run_stage
from ObjectDetection.run import main as detection_main
from tests.helpers import small_random_checkpoint

STREAMS = {"spatial": "local", "temporal": "local", "highlevel": "global"}


# --- recipes ------------------------------------------------------------------------------------------

def test_freeze_repeats_the_middle_frame_to_the_end():
    assert freeze_index(5).tolist() == [0, 1, 2, 2, 2]
    assert freeze_index(4).tolist() == [0, 1, 2, 2]


def test_skip_index_speeds_up_and_lowers_the_stride_at_the_end():
    assert skip_index(10, 4, 3, 100) == [10, 13, 16, 19]
    # from frame 90 a stride of 5 would end at 105 > 99: 4 ends at 102, 3 at 99
    assert skip_index(90, 4, 5, 99) == [90, 93, 96, 99]
    assert skip_index(96, 4, 5, 99) == [96, 97, 98, 99]     # stride 1 at the very end: the clip itself


def test_skip_index_clamps_at_the_end_as_the_dual_memory_loader_does():
    rng = np.random.default_rng(0)
    # 120 frames (last 119), 16 frames at stride 2: start 90 ends at 120, one past the end: kept, clamped
    assert skip_index(90, 16, 2, 119, "clamp", rng) == [*range(90, 120, 2), 119]
    assert skip_index(0, 16, 2, 119, "clamp", rng) == list(range(0, 31, 2))
    # start 100 would end at 130: drawn again until a start ends by 120 (the same draws as rng's)
    draws, expected = np.random.default_rng(1), 100
    while 120 < expected + 30:
        expected = int(draws.integers(0, 120))
    assert skip_index(100, 16, 2, 119, "clamp", np.random.default_rng(1)) == list(range(expected, expected + 31, 2))
    # a video too short for any start: 10 draws, then the last start, clamped
    draws = np.random.default_rng(2)
    for _ in range(10):
        start = int(draws.integers(0, 20))
    assert skip_index(5, 16, 2, 19, "clamp", np.random.default_rng(2)) == [min(start + 2 * k, 19) for k in range(16)]


def test_shuffled_grid_permutes_whole_cells_the_same_way_everywhere():
    crops = torch.arange(2 * 1 * 2 * 8 * 8, dtype=torch.float32).view(2, 1, 2, 8, 8)
    out = shuffled_grid(crops, np.random.default_rng(0))
    assert out.shape == crops.shape and not torch.equal(out, crops)
    cells = lambda x: x.reshape(2, 1, 2, 4, 2, 4, 2).permute(0, 1, 2, 3, 5, 4, 6).reshape(2, 1, 2, 16, 2, 2)  # noqa: E731
    before, after = cells(crops), cells(out)
    # every output cell is an input cell, at one permutation shared by objects and frames
    permutation = [next(j for j in range(16) if torch.equal(after[0, 0, 0, i], before[0, 0, 0, j])) for i in range(16)]
    assert sorted(permutation) == list(range(16))
    assert torch.equal(after, before[:, :, :, permutation])


def test_pasted_blends_a_shrunken_donor_with_a_soft_edge():
    crops = torch.zeros(1, 3, 2, 16, 16)
    donor = torch.ones(1, 3, 2, 32, 32)
    out = pasted(crops, donor, np.random.default_rng(1))
    inside = out[0, 0, 0]
    assert inside.max() == pytest.approx(1.0) and inside.min() == 0.0
    # the square is 8 x 8: the blurred edge leaves values strictly between 0 and 1 around it
    assert ((inside > 0.01) & (inside < 0.99)).any()
    assert (inside > 0.5).sum() == pytest.approx(64, abs=16)


def test_swapped_takes_one_region_from_the_partner_frames():
    frames = [np.zeros((6, 9, 3), np.uint8)] * 2
    partners = [np.full((6, 9, 3), 200, np.uint8)] * 2
    out = swapped(frames, partners, np.random.default_rng(0))
    for frame in out:
        changed = (frame[..., 0] == 200)
        assert changed.sum() == 3 * 6                               # h // 2 rows x w * 2 // 3 columns
        rows, columns = np.nonzero(changed)
        assert rows.max() - rows.min() == 2 and columns.max() - columns.min() == 5
    assert (frames[0] == 0).all()                                    # inputs untouched


# --- calibration by hand ------------------------------------------------------------------------------

def calibration_case():
    """Two sequences: spatial separates the pseudo-anomalies, temporal and high-level do not."""
    labels = [np.array([0, 0, 0, 1, 1, 0]), np.array([0, 1, 1, 0, 0, 0])]
    spatial = [np.array([1.0, 2.0, 1.0, 9.0, 8.0, 3.0]), np.array([2.0, 7.0, 9.0, 1.0, 2.0, 1.0])]
    flat = [np.array([5.0, 4.0, 5.0, 4.0, 5.0, 4.0])] * 2
    per_bank = {"spatial": spatial, "temporal": flat, "highlevel": flat}
    return make_video_scores(per_bank, labels, STREAMS, ["a", "b"]), labels


def test_normalisation_is_min_and_99th_percentile_of_normal_frames():
    scores, labels = calibration_case()
    scales = normalisation(scores, labels)
    normal_spatial = [1.0, 2.0, 1.0, 3.0, 2.0, 1.0, 2.0, 1.0]
    assert scales["spatial"] == {"low": 1.0, "high": pytest.approx(np.percentile(normal_spatial, 99))}
    assert scales["temporal"] == {"low": 4.0, "high": pytest.approx(np.percentile([5, 4, 5, 5, 4, 5, 4, 4], 99))}


def test_weights_threshold_and_streams():
    scores, labels = calibration_case()
    calibration = calibrate(scores, labels, false_alarm_rate=0.25, details={"recipes": ["toy"]})
    # spatial alone separates perfectly: a1 = 1.0 comes first on the grid; the total keeps the
    # first best b1 (1.0) and sigma 0
    assert calibration["weights"] == FusionWeights(1.0, 0.0, 1.0, 0.0, 0).__dict__
    assert calibration["separation_auroc"] == 1.0 and calibration["recipes"] == ["toy"]
    streams = calibrated_streams(scores, calibration)
    scale = calibration["normalisation"]["spatial"]
    expected = (np.concatenate(scores.banks["spatial"]) - scale["low"]) / (scale["high"] - scale["low"])
    np.testing.assert_allclose(streams["total"], expected)
    normal = streams["total"][np.concatenate(labels) == 0]
    assert calibration["threshold"] == pytest.approx(np.quantile(normal, 0.75))
    json.dumps(calibration)                                           # plain JSON, for the model file


def test_label_free_column_uses_the_calibration_only():
    scores, labels = calibration_case()
    calibration = calibrate(scores, labels, 0.25)
    results = evaluate(scores, VIDEOPATCHCORE, FusionWeights.chosen(0.5, 0.5, 0), calibration)
    free = results["label_free"]
    assert free["streams"]["total"]["micro"] == 1.0 and free["calibration"] == calibration
    # normal spatial frames 1 1 1 1 2 2 2 3: the 75 % quantile is 2, and only the 3 lies above it
    assert free["alarms"] == {"false_alarm_rate": 1 / 8, "detection_rate": 1.0}


# --- the stage: label-free numbers never read the test labels ---------------------------------------

D = 3


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    make_demo(root / "data", "avenue", seed=3, n_train=2, n_test=2, n_frames=15, width=96, height=64)
    common = [f"--data_root={root / 'data'}", "--dataset=avenue", f"--consecutive={D}"]
    assert detection_main(common + [f"--work_dir={root / 'work'}", "--detector=motion"]) == 0
    return root, common + [f"--clip_weights={small_random_checkpoint(root / 'small.pt')}", "--spatial_f_coreset=0.5"]


def results_of(work):
    (path,) = Path(work).glob("results/avenue/*/*/results.json")
    return json.loads(path.read_text())["results"]


def test_scrambled_test_labels_leave_the_calibration_unchanged(stage, tmp_path, capsys):
    root, args = stage
    assert run_stage(args + [f"--work_dir={root / 'work'}"]) == 0
    printed = capsys.readouterr().out
    results = results_of(root / "work")
    first = results["label_free"]
    assert "| stream | protocol micro | protocol macro | protocol padded | fixed micro" in printed
    assert "label-free micro | label-free macro | label-free padded |" in printed
    # the generator's region tracks give the region metrics of every detected object
    regions = results["regions"]
    assert 0 <= regions["rbdc"] <= 1 and 0 <= regions["tbdc"] <= 1 and regions["tracks"] == 2
    assert f"RBDC {100 * regions['rbdc']:.2f}%, TBDC {100 * regions['tbdc']:.2f}%" in printed
    # the same run on a copy whose test labels are shuffled: a different test set, the same training data
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    from scipy.io import loadmat, savemat

    gt = loadmat(str(data / "avenue" / "avenue.mat"))["gt"]
    savemat(str(data / "avenue" / "avenue.mat"), {"gt": gt[:, ::-1]})
    work = tmp_path / "work"
    shutil.copytree(root / "work" / "objects", work / "objects")
    assert run_stage([a for a in args if not a.startswith("--data_root")]
                     + [f"--data_root={data}", f"--work_dir={work}"]) == 0
    second = results_of(work)["label_free"]
    assert second["calibration"] == first["calibration"]
    assert second["weights"] == first["weights"] and second["threshold"] == first["threshold"]
    assert first["calibration"]["recipes"] == ["reverse", "freeze", "skip", "paste", "shuffle", "swap"]
    assert first["calibration"]["held_out"] == ["01", "02"] and first["calibration"]["sequences"] == 12


def test_one_training_video_holds_out_its_halves_and_says_so(stage, tmp_path, capsys):
    root, args = stage
    data, work = tmp_path / "data", tmp_path / "work"
    shutil.copytree(root / "data", data)
    shutil.rmtree(data / "avenue" / "training" / "frames" / "02")
    shutil.copytree(root / "work" / "objects", work / "objects")
    flags = [a for a in args if not a.startswith("--data_root")] + [f"--data_root={data}", f"--work_dir={work}"]
    assert run_stage(flags + ["--bank_order=concat_then_subsample"]) == 0
    assert "one training video: the label-free calibration holds out each half of it" in capsys.readouterr().err
    calibration = results_of(work)["label_free"]["calibration"]
    assert calibration["fallback"] == "halves of the only training video"
    assert calibration["held_out"] == ["01 (half 1)", "01 (half 2)"] and calibration["sequences"] == 12


def test_sequences_without_normal_frames_are_refused_in_one_line():
    from extra.errors import VPCError

    labels = [np.ones(4, np.int64)]
    scores = make_video_scores({b: [np.arange(4.0)] for b in STREAMS}, labels, STREAMS)
    with pytest.raises(VPCError, match="needs training videos of at least two clips"):
        calibrate(scores, labels)
