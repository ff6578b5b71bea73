"""Label-free calibration: pseudo-anomaly recipes on tiny tensors, the normalisation, weights and
threshold computed by hand, and a stage run that never reads the test labels."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extra.evaluation.fusion import (
    FusionWeights, calibrated_streams, causal_standardised, causal_step, clip_values, log_normalisation, normalised,
)
from extra.evaluation.alarms import false_alarm_support, measured_rate_interval, rate_interval
from extra.evaluation.harness import evaluate
from extra.evaluation.metrics import micro_auroc
from extra.evaluation.protocol import VIDEOPATCHCORE
from extra.evaluation.results import alarms_text, format_results
from extra.evaluation.scores import make_video_scores
from extra.make_demo import make_demo
from extra.pseudo_anomalies import freeze_index, pasted, shuffled_grid, skip_index, swapped
from Memorization.calibration.heldout import held_out_ratio
from Memorization.calibration.weights import (
    NEUTRAL, auroc_standard_error, calibrate, choose_weights, separation,
)
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


def test_log_normalisation_is_median_and_90th_percentile_of_normal_logs():
    scores, labels = calibration_case()
    scales = log_normalisation(scores, labels)
    # the normal spatial frames 1 2 1 3 2 1 2 1, offset by the smallest positive one, 1
    logs = np.log(np.array([1.0, 2.0, 1.0, 3.0, 2.0, 1.0, 2.0, 1.0]) + 1.0)
    assert scales["spatial"] == {"low": pytest.approx(np.median(logs)), "high": pytest.approx(np.percentile(logs, 90)),
                                 "offset": 1.0, "log": True}
    # temporal: four 4s and four 5s, offset by 4: the median halfway between log 8 and log 9, the 90th percentile log 9
    assert scales["temporal"]["offset"] == 4.0
    assert scales["temporal"]["low"] == pytest.approx((np.log(8) + np.log(9)) / 2)
    assert scales["temporal"]["high"] == pytest.approx(np.log(9))
    # the median maps to 0, the 90th percentile to 1
    spatial = scales["spatial"]
    assert normalised(np.exp(spatial["low"]) - 1.0, spatial) == pytest.approx(0.0)
    assert normalised(np.exp(spatial["high"]) - 1.0, spatial) == pytest.approx(1.0)


def test_log_normalisation_keeps_every_rank_and_maps_zero_scores():
    labels = [np.zeros(5, np.int64)]
    scores = make_video_scores({b: [np.array([0.0, 0.0, 2.0, 4.0, 14.0])] for b in STREAMS}, labels, STREAMS)
    scale = log_normalisation(scores, labels)["spatial"]
    assert scale["offset"] == 2.0                                    # clips without objects score 0
    logs = np.log([2.0, 2.0, 4.0, 6.0, 16.0])
    assert scale["low"] == pytest.approx(np.log(4.0)) and scale["high"] == pytest.approx(np.percentile(logs, 90))
    spread = scale["high"] - np.log(4.0)
    np.testing.assert_allclose(normalised([0.0, 2.0, 14.0], scale), [-np.log(2.0) / spread, 0.0, np.log(4.0) / spread])
    # strictly increasing, below the smallest normal score too: no two scores tie
    tiny = normalised([0.0, 1e-6, 1e-3, 0.5], scale)
    assert (np.diff(tiny) > 0).all()
    # a bank whose normal frames all score 0 (no objects anywhere) gets a unit scale, not a division by 0
    zero = make_video_scores({b: [np.zeros(5)] for b in STREAMS}, labels, STREAMS)
    assert log_normalisation(zero, labels)["spatial"] == {"low": 0.0, "high": 1.0, "offset": 1.0, "log": True}


def test_a_linear_scale_is_read_as_before():
    # calibrations saved before the log scale (and MNAD's, the dual-memory model's) have no "log"
    np.testing.assert_allclose(normalised([1.0, 3.0, 5.0], {"low": 1.0, "high": 5.0}), [0.0, 0.5, 1.0])


def test_weights_threshold_and_streams():
    scores, labels = calibration_case()
    calibration = calibrate(scores, labels, false_alarm_rate=0.25, details={"recipes": ["toy"]})
    # spatial alone separates perfectly (AUROC 1, standard error 0): the grid's best, a1 = 1.0 first on
    # the grid, then the first best b1 (1.0) and sigma 0, replaces the neutral prior
    assert calibration["weights"] == FusionWeights(1.0, 0.0, 1.0, 0.0, 0).__dict__
    assert calibration["weights_choice"]["kept"] == "grid_best" and calibration["weights_choice"]["margin"] == 0.0
    assert calibration["separation_auroc"] == 1.0 and calibration["recipes"] == ["toy"]
    streams = calibrated_streams(scores, calibration)
    scale = calibration["normalisation"]["spatial"]
    expected = (np.log(np.concatenate(scores.banks["spatial"]) + 1.0) - scale["low"]) / (scale["high"] - scale["low"])
    np.testing.assert_allclose(streams["total"], expected)
    normal = streams["total"][np.concatenate(labels) == 0]
    assert calibration["threshold"] == pytest.approx(np.quantile(normal, 0.75))
    assert calibration["clip_threshold"] == calibration["threshold"]        # sigma 0: nothing to unsmooth
    # 8 normal frames (one unit each by default) at 25 %: 2 expected above the threshold, fewer than 5
    assert calibration["support"] == {"normal_clips": 8, "clips_above_threshold": 2.0, "supported": False,
                                      "note": calibration["support"]["note"]}
    json.dumps(calibration)                                           # plain JSON, for the model file


def test_auroc_standard_error_by_hand():
    # Hanley and McNeil: A 0.75, 4 anomalous and 8 normal: Q1 = 0.6, Q2 = 9/14,
    # var = (0.1875 + 3 (0.6 - 0.5625) + 7 (9/14 - 0.5625)) / 32 = 0.8625 / 32
    assert auroc_standard_error(0.75, 4, 8) == pytest.approx(np.sqrt(0.8625 / 32))
    assert auroc_standard_error(1.0, 4, 8) == 0.0
    assert auroc_standard_error(0.75, 400, 800) < auroc_standard_error(0.75, 4, 8) / 9


def steering_case():
    """Spatial separates the pseudo-anomalies imperfectly (AUROC 25 / 32 alone); temporal and high-level
    rank them mostly backwards, so the neutral prior separates worse (below 0.5)."""
    labels = [np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0])]
    spatial = np.array([1.0, 2.0, 1.5, 1.2, 3.0, 2.2, 1.1, 1.3, 2.7, 2.9, 1.4, 1.0, 2.6, 1.3, 1.2, 1.6])
    backwards = np.array([3.0, 3.0, 3.0, 3.0, 1.0, 1.0, 3.0, 2.0, 2.0, 2.0, 3.0, 3.0, 1.5, 1.2, 3.0, 2.0])
    per_bank = {"spatial": [spatial], "temporal": [backwards], "highlevel": [backwards]}
    return make_video_scores(per_bank, labels, STREAMS), labels


def test_the_prior_is_kept_unless_the_grid_beats_it_by_two_standard_errors():
    scores, labels = steering_case()
    scales = log_normalisation(scores, labels)
    # the frames of one anomalous and one normal clip: the grid's best is within the noise, the prior is kept
    few, few_choice = choose_weights(scores, labels, scales, NEUTRAL, (1, 1), [None])
    assert few == NEUTRAL and few_choice["kept"] == "prior"
    assert few_choice["grid_best_auroc"] == 25 / 32 and few_choice["prior_auroc"] < 0.5
    assert few_choice["margin"] == pytest.approx(2 * np.sqrt(25 / 32 * 7 / 32))      # Hanley-McNeil, n = 1 + 1
    # the same frames from many clips: the difference is beyond the noise, the grid's best is taken
    many, many_choice = choose_weights(scores, labels, scales, NEUTRAL, (400, 1200), [None])
    assert many_choice["kept"] == "grid_best" and many == FusionWeights(**many_choice["grid_best"])
    assert many == FusionWeights(1.0, 0.0, 1.0, 0.0, 0)           # spatial alone, as the scores were made
    assert many_choice["margin"] == pytest.approx(2 * auroc_standard_error(25 / 32, 400, 1200))


def test_the_prior_is_kept_when_the_grid_best_misses_one_kind_of_pseudo_anomaly():
    y = np.array([0, 0, 0, 1, 1, 0, 0, 0])
    per_bank = {"spatial": [np.array([2.2, 3.2, 1.8, 1.2, 3.9, 2.7, 2.9, 2.7]),
                            np.array([2.4, 1.4, 1.9, 3.2, 3.7, 3.7, 3.8, 1.1])],
                "temporal": [np.array([3.2, 3.0, 2.9, 2.9, 1.4, 2.9, 3.4, 1.0]),
                             np.array([3.8, 1.4, 2.1, 2.7, 2.8, 2.6, 2.2, 3.6])],
                "highlevel": [np.array([2.2, 3.6, 2.0, 2.9, 3.5, 1.4, 1.5, 3.2]),
                              np.array([1.4, 1.1, 1.6, 2.2, 3.1, 3.1, 1.6, 1.7])]}
    labels = [y, y]
    scores = make_video_scores(per_bank, labels, STREAMS)
    scales = log_normalisation(scores, labels)
    # one kind: the grid's best (27 / 32, beyond the prior's by more than the margin) is taken
    same, same_choice = choose_weights(scores, labels, scales, NEUTRAL, (400, 1200), ["a", "a"])
    assert same_choice["kept"] == "grid_best" and same_choice["grid_best_auroc"] == 27 / 32
    assert 27 / 32 - same_choice["prior_auroc"] > same_choice["margin"]
    assert same == FusionWeights(**same_choice["grid_best"])
    # the second sequence another kind, on which the grid's best ranks worse than the prior: the prior is kept
    kept, choice = choose_weights(scores, labels, scales, NEUTRAL, (400, 1200), ["a", "b"])
    assert kept == NEUTRAL and choice["kept"] == "prior" and choice["grid_best_worse_on"] == ["b"]
    _, best_kinds = separation(scores, labels, scales, same, ["a", "b"])
    _, prior_kinds = separation(scores, labels, scales, NEUTRAL, ["a", "b"])
    assert best_kinds["b"] < prior_kinds["b"] and best_kinds["a"] >= prior_kinds["a"]


def test_false_alarm_support_says_when_the_footage_is_too_short():
    short = false_alarm_support(88, 0.01)
    assert not short["supported"] and short["clips_above_threshold"] == pytest.approx(0.88)
    assert short["note"] == ("the held-out normal footage gives 88 clips, so a false-alarm rate of 1% rests on 0.88 "
                             "of them: it cannot be set reliably; give about 500 clips of normal footage or a higher "
                             "--false_alarm_rate")
    assert false_alarm_support(500, 0.01) == {"normal_clips": 500, "clips_above_threshold": 5.0, "supported": True}
    # a frame-level method counts frames
    assert false_alarm_support(6, 0.2, "frames") == {
        "normal_frames": 6, "frames_above_threshold": pytest.approx(1.2), "supported": False,
        "note": "the held-out normal footage gives 6 frames, so a false-alarm rate of 20% rests on 1.2 of them: it "
                "cannot be set reliably; give about 25 frames of normal footage or a higher --false_alarm_rate"}


def test_held_out_banks_keep_the_model_bank_size():
    assert held_out_ratio(0.25, 4) == pytest.approx(1 / 3)       # 3 videos at 1/3 = 4 videos at 1/4
    assert held_out_ratio(0.01, 2) == pytest.approx(0.02)
    assert held_out_ratio(0.6, 2) == 1.0                         # capped: all rows


def test_label_free_column_uses_the_calibration_only():
    scores, labels = calibration_case()
    calibration = calibrate(scores, labels, 0.25)
    results = evaluate(scores, VIDEOPATCHCORE, FusionWeights.chosen(0.5, 0.5, 0), calibration)
    free = results["label_free"]
    assert free["streams"]["total"]["micro"] == 1.0 and free["calibration"] == calibration
    # normal spatial frames 1 1 1 1 2 2 2 3: the 75 % quantile is 2's, and only the 3 lies above it
    assert free["alarms"] == {"false_alarm_rate": 1 / 8, "detection_rate": 1.0}
    assert free["measured_false_alarm_rate"] == 1 / 8 and free["target_false_alarm_rate"] == 0.25
    # no clips in this calibration: each of the 8 normal frames is a trial, 1 alarmed
    assert free["measured_false_alarm"] == {"normal": 8, "unit": "frames", "interval": list(rate_interval(1, 8))}
    assert f"(0.5 x the target; 95% interval {100 * rate_interval(1, 8)[0]:.2g}-" in alarms_text(free)
    assert "clip_alarms" not in free                              # sigma 0: live alarms are the same


def test_the_report_says_which_weights_the_calibration_kept_and_why():
    scores, labels = calibration_case()
    calibration = calibrate(scores, labels, 0.25)
    results = evaluate(scores, VIDEOPATCHCORE, FusionWeights.chosen(0.5, 0.5, 0), calibration)
    choice = calibration["weights_choice"]
    text = format_results(results)
    assert (f"- label-free: weights a1=1.0, a2=0.0, b1=1.0, b2=0.0, sigma=0 (the pseudo-anomalies' best: "
            f"pseudo-anomaly AUROC 1.000 at the grid's best, {choice['prior_auroc']:.3f} at the prior, margin "
            f"0.000), per-bank normalisation") in text
    calibration["weights_choice"] = {**choice, "kept": "prior", "grid_best_worse_on": ["skip", "swap"]}
    text = format_results(evaluate(scores, VIDEOPATCHCORE, FusionWeights.chosen(0.5, 0.5, 0), calibration))
    assert (f"(the neutral prior kept: pseudo-anomaly AUROC 1.000 at the grid's best, "
            f"{choice['prior_auroc']:.3f} at the prior, margin 0.000; the grid's best is worse on skip, swap)") in text


def test_smoothed_label_free_alarms_are_measured_clip_by_clip_too():
    scores, labels = calibration_case()
    calibration = calibrate(scores, labels, 0.25)
    calibration["weights"]["sigma"] = 1
    streams = calibrated_streams(scores, calibration)
    calibration["threshold"] = float(np.quantile(streams["total"][np.concatenate(labels) == 0], 0.75))
    free = evaluate(scores, VIDEOPATCHCORE, FusionWeights.chosen(0.5, 0.5, 0), calibration)["label_free"]
    y = np.concatenate(labels)
    smoothed = streams["total"] > calibration["threshold"]
    assert free["measured_false_alarm_rate"] == pytest.approx(smoothed[y == 0].mean())
    # unsmoothed against the clip threshold: as in the sigma-0 case above, 1 of 8 normal frames
    assert free["clip_alarms"] == {"false_alarm_rate": 1 / 8, "detection_rate": 1.0}
    text = alarms_text(free)
    assert text.startswith(f"Label-free alarms (total > {calibration['threshold']:.4g}, set for 25% false alarms on "
                           f"normal held-out training frames): {100 * smoothed[y == 0].mean():.2f}% of normal test "
                           f"frames (")
    assert ("Clip by clip (unsmoothed, as live scoring alarms): 12.50% of normal, 100.00% of anomalous test "
            "frames.") in text
    assert text.endswith(f"Note: {calibration['support']['note']}.")


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


def test_an_objects_fused_score_is_b1_its_local_plus_b2_the_clips_global():
    from extra.evaluation.fusion import objects_fused

    calibration = {"weights": {"a1": 0.5, "a2": 0.5, "b1": 0.7, "b2": 0.3, "sigma": 0}}
    np.testing.assert_allclose(objects_fused([1.0, 2.0], 0.5, calibration), [0.85, 1.55])
    assert objects_fused([], 0.5, calibration).shape == (0,)


# --- the high-level bank standardised by each video's earlier clips (issue #23) ------------------------

def test_causal_step_by_hand():
    # no earlier clip: mean 0, spread 1 (the prior alone), the value kept
    assert causal_step(2.5, []) == 2.5
    # one earlier clip at 1, one clip of prior: mean 1/2, variance (1 + (1 - 1/2)^2) / 2 = 0.625
    assert causal_step(3.0, [1.0]) == pytest.approx(2.5 / np.sqrt(0.625))
    # earlier clips 1 and 3: mean 4/3, variance (1 + 1/9 + 25/9) / 3 = 35/27
    assert causal_step(-1.0, [1.0, 3.0]) == pytest.approx((-1.0 - 4 / 3) / np.sqrt(35 / 27))
    # no prior: the plain mean and standard deviation of the earlier clips
    assert causal_step(5.0, [1.0, 3.0], prior_clips=0.0) == pytest.approx(3.0)


def test_causal_standardised_reads_clips_and_never_later_frames():
    x = np.array([1.0, 1.0, 3.0, 3.0, -1.0, -1.0])
    expected = [1.0, 1.0, 2.5 / np.sqrt(0.625), 2.5 / np.sqrt(0.625), (-7 / 3) / np.sqrt(35 / 27),
                (-7 / 3) / np.sqrt(35 / 27)]
    np.testing.assert_allclose(causal_standardised(x, 2), expected)
    # a later clip changed: the earlier frames' values stay as they were
    changed = causal_standardised(np.array([1.0, 1.0, 3.0, 3.0, 50.0, 50.0]), 2)
    np.testing.assert_allclose(changed[:4], expected[:4])
    # a last, shorter run of frames is one clip more
    np.testing.assert_allclose(causal_standardised(np.array([1.0, 1.0, 3.0]), 2), [1.0, 1.0, 2.5 / np.sqrt(0.625)])
    # every video starts afresh: the same vector gives the same values wherever it comes
    np.testing.assert_allclose(causal_standardised(x[:2], 2), [1.0, 1.0])
    # scored a clip at a time after its earlier clips' values, the video gives the same bits
    np.testing.assert_array_equal(clip_values(x, 2), [1.0, 3.0, -1.0])
    pieces = [causal_standardised(x[start:start + 2], 2, earlier=clip_values(x[:start], 2)) for start in (0, 2, 4)]
    np.testing.assert_array_equal(np.concatenate(pieces), causal_standardised(x, 2))


def test_calibrate_with_clip_frames_standardises_the_high_level_bank_causally():
    labels = [np.array([0, 0, 0, 0, 1, 1], np.int64), np.array([0, 0, 1, 1, 0, 0], np.int64)]
    spatial = [np.array([1.0, 1.0, 2.0, 2.0, 8.0, 8.0]), np.array([2.0, 2.0, 9.0, 9.0, 1.0, 1.0])]
    high = [np.array([4.0, 4.0, 5.0, 5.0, 9.0, 9.0]), np.array([6.0, 6.0, 12.0, 12.0, 5.0, 5.0])]
    scores = make_video_scores({"spatial": spatial, "temporal": spatial, "highlevel": high}, labels, STREAMS)
    plain = calibrate(scores, labels, false_alarm_rate=0.25)
    causal = calibrate(scores, labels, false_alarm_rate=0.25, clip_frames=2)
    assert "causal" not in plain["normalisation"]["highlevel"]
    assert causal["normalisation"]["highlevel"]["causal"] == {"clip_frames": 2, "prior_clips": 1.0}
    assert all("causal" not in causal["normalisation"][bank] for bank in ("spatial", "temporal"))
    scale = {key: value for key, value in causal["normalisation"]["highlevel"].items() if key != "causal"}
    streams = calibrated_streams(scores, {**causal, "weights": FusionWeights.chosen(0.5, 0.5, 0).__dict__})
    expected = np.concatenate([causal_standardised(normalised(h, scale), 2) for h in high])
    np.testing.assert_allclose(streams["highlevel"], expected)
    # the spatial bank is mapped as before
    np.testing.assert_allclose(streams["spatial"], normalised(np.concatenate(spatial), causal["normalisation"]["spatial"]))
    # a video scored a clip at a time, after its earlier clips' values: the whole video's streams
    video = make_video_scores({"spatial": [spatial[0]], "temporal": [spatial[0]], "highlevel": [high[0]]},
                              [labels[0]], STREAMS)
    whole = calibrated_streams(video, causal)
    scale = causal["normalisation"]["highlevel"]
    for start in (0, 2, 4):
        clip = make_video_scores({"spatial": [spatial[0][start:start + 2]], "temporal": [spatial[0][start:start + 2]],
                                  "highlevel": [high[0][start:start + 2]]}, [labels[0][start:start + 2]], STREAMS)
        earlier = {"highlevel": clip_values(normalised(high[0][:start], scale), 2)}
        np.testing.assert_array_equal(calibrated_streams(clip, causal, earlier)["total"],
                                      whole["total"][start:start + 2])
    # the threshold is the quantile of the causal total over the normal frames
    total = calibrated_streams(scores, causal)["total"]
    assert causal["threshold"] == pytest.approx(np.quantile(total[np.concatenate(labels) == 0], 0.75))
    json.dumps(causal)                                                # plain JSON, for the model file


def test_scale_thresholds_and_support_rest_on_the_normal_footage_when_given():
    labels = [np.array([0, 0, 0, 0, 1, 1], np.int64), np.array([0, 0, 1, 1, 0, 0], np.int64)]
    spatial = [np.array([1.0, 1.0, 2.0, 2.0, 8.0, 8.0]), np.array([2.0, 2.0, 9.0, 9.0, 1.0, 1.0])]
    high = [np.array([4.0, 4.0, 5.0, 5.0, 9.0, 9.0]), np.array([6.0, 6.0, 12.0, 12.0, 5.0, 5.0])]
    scores = make_video_scores({"spatial": spatial, "temporal": spatial, "highlevel": high}, labels, STREAMS)
    # the two held-out videos as they are: 4 clips of 2 frames and a last frame alone (5 clips), all normal
    as_they_are = {"spatial": [np.array([1.0, 1.0, 2.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0, 4.0])],
                   "highlevel": [np.array([4.0, 4.0, 5.0, 5.0, 6.0]), np.array([6.0, 6.0, 7.0, 7.0])]}
    as_they_are["temporal"] = as_they_are["spatial"]
    zeros = [np.zeros(5, np.int64), np.zeros(4, np.int64)]
    normal = make_video_scores(as_they_are, zeros, STREAMS)
    calibration = calibrate(scores, labels, false_alarm_rate=0.25, clip_frames=2, normal=normal)
    # the scale of the normal footage: spatial 1 1 2 2 3 2 2 4 4 (offset 1), median log 3, 90th percentile
    # between log 5 (8th of 9 values) and log 5 (9th)
    assert calibration["normalisation"]["spatial"]["low"] == pytest.approx(np.log(3.0))
    assert calibration["normalisation"]["spatial"]["high"] == pytest.approx(np.log(5.0))
    expected = log_normalisation(normal, zeros)
    expected["highlevel"]["causal"] = {"clip_frames": 2, "prior_clips": 1.0}
    assert calibration["normalisation"] == expected
    # the thresholds: quantiles of the normal footage's total (smoothed, then unsmoothed), not the sequences'
    total = calibrated_streams(normal, calibration)["total"]
    assert calibration["threshold"] == pytest.approx(np.quantile(total, 0.75))
    clip_total = calibrated_streams(normal, {**calibration, "weights": {**calibration["weights"], "sigma": 0}})["total"]
    assert calibration["clip_threshold"] == pytest.approx(np.quantile(clip_total, 0.75))
    sequences_total = calibrated_streams(scores, calibration)["total"]
    assert calibration["threshold"] != pytest.approx(np.quantile(sequences_total[np.concatenate(labels) == 0], 0.75))
    # 5 clips of normal footage (3 + 2), not the sequences' 4 normal frames
    assert calibration["support"]["normal_clips"] == 5
    # the weights are still chosen on the sequences: their AUROC is the sequences'
    assert calibration["separation_auroc"] == pytest.approx(
        micro_auroc(sequences_total, np.concatenate(labels)))


def test_the_measured_rate_has_its_exact_interval_counted_in_clips():
    # none of 10 trials: from 0 to the rate that gives no hit in 10 with probability 2.5 %, and mirrored
    assert rate_interval(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert rate_interval(10, 10) == (pytest.approx(0.025 ** (1 / 10)), 1.0)
    low, high = rate_interval(5, 10)
    assert low == pytest.approx(1 - high) and low < 0.5 < high
    # 1 hit of 1: P(X >= 1) = p = 2.5 % at the low end
    assert rate_interval(1, 1) == (pytest.approx(0.025), 1.0)
    # 16 normal frames in clips of 4 are 4 trials; a rate of 25 % is 1 of them
    assert measured_rate_interval(0.25, 16, 4) == {"normal": 4, "unit": "clips", "interval": list(rate_interval(1, 4))}
    assert measured_rate_interval(0.0, 3, 4)["normal"] == 1       # at least one trial


def test_the_calibration_records_its_clip_length():
    scores, labels = calibration_case()
    assert "clip_frames" not in calibrate(scores, labels, 0.25)
    assert calibrate(scores, labels, 0.25, clip_frames=2)["clip_frames"] == 2
