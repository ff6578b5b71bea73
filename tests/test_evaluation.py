import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from extra.errors import VPCError
from extra.evaluation.fusion import (
    WEIGHTS, FusionWeights, complement, fused_per_video, global_stream, minmax, smooth, zscore,
)
from extra.evaluation.harness import evaluate, evaluate_streams
from extra.evaluation.metrics import macro_auroc, micro_auroc
from extra.evaluation.protocol import (
    VIDEOPATCHCORE, BankBest, LocalBest, TotalBest, published_protocol, search_local, search_total,
)
from extra.evaluation.results import format_results, load_results, save_results
from extra.evaluation.scores import make_video_scores
from Memorization.banks.specs import PUBLISHED, stream_titles


STREAMS = {"spatial": "local", "temporal": "local", "highlevel": "global"}


def published(spatial, temporal, highlevel):
    return {"spatial": spatial, "temporal": temporal, "highlevel": highlevel}


def scores_of(spatial, temporal=None, highlevel=None, labels=None):
    """VideoScores from per-video lists; missing streams are constant (uninformative)."""
    const = [np.ones(len(s)) for s in spatial]
    return make_video_scores(published(spatial, temporal or const, highlevel or const), labels, STREAMS)


def test_zscore_and_minmax_hand_values():
    # mean 2, numpy std (ddof 0) sqrt(2/3)
    np.testing.assert_allclose(zscore(np.array([1.0, 2.0, 3.0])),
                               [-1.224744871, 0.0, 1.224744871], rtol=1e-7)
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 6.0])), [0.0, 0.5, 1.0], atol=1e-8)
    # the epsilons keep constant vectors finite
    assert np.array_equal(zscore(np.full(3, 5.0)), np.zeros(3))
    assert np.array_equal(minmax(np.full(3, 5.0)), np.zeros(3))


def test_weight_grid_has_no_float_drift():
    assert WEIGHTS == (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
    assert [complement(w) for w in WEIGHTS] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
                                                0.9, 1.0]


def test_smooth_is_scipy_with_its_defaults_and_sigma_zero_is_identity():
    x = np.array([0.0, 0.0, 5.0, 1.0, 0.0, 2.0])
    assert smooth(x, 0) is x
    np.testing.assert_array_equal(smooth(x, 2),
                                  gaussian_filter1d(x, 2.0, mode="reflect", truncate=4.0))


def test_micro_auroc_hand_case():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ranked right
    assert micro_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    with pytest.raises(VPCError, match="both normal and anomalous"):
        micro_auroc([0.1, 0.2], [0, 0])


def test_labels_are_cut_to_the_scores_from_the_start():
    scores = scores_of([np.zeros(4), np.zeros(2)], labels=[[0, 1, 1, 0, 1, 1], [1, 0, 1]])
    assert [y.tolist() for y in scores.labels] == [[0, 1, 1, 0], [1, 0]]
    with pytest.raises(VPCError, match="video 2: 1 labels for 2 scored frames"):
        scores_of([np.zeros(4), np.zeros(2)], labels=[[0, 1, 1, 0], [1]])


def test_bad_inputs_raise_vpc_errors():
    with pytest.raises(VPCError, match="same length"):
        make_video_scores(published([np.zeros(3)], [np.zeros(2)], [np.zeros(3)]), [[0, 1, 0]], STREAMS)
    with pytest.raises(VPCError, match="one label vector per video"):
        make_video_scores(published([np.zeros(3)], [np.zeros(3)], [np.zeros(3)]), [], STREAMS, names=["01"])
    with pytest.raises(VPCError, match="0 \\(normal\\) or 1"):
        scores_of([np.zeros(3)], labels=[[0, 2, 1]])
    with pytest.raises(VPCError, match="NaN"):
        scores_of([np.array([0.0, np.nan])], labels=[[0, 1]])


def test_macro_auroc_skips_single_class_videos():
    # video 1: AUROC 0.75 (hand case above); video 2: 1.0; video 3 has no anomaly
    result = macro_auroc([np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.2, 0.9]),
                          np.array([0.5, 0.5])], [[0, 0, 1, 1], [0, 1], [0, 0]])
    assert result.auroc == pytest.approx(0.875)
    assert (result.n_videos, result.n_skipped) == (2, 1)
    none = macro_auroc([np.array([0.5, 0.1])], [[1, 1]])
    assert np.isnan(none.auroc) and (none.n_videos, none.n_skipped) == (0, 1)


def test_local_search_first_best_is_kept_when_spatial_separates():
    labels = [[0, 0, 1, 1], [1, 0, 0, 0]]
    spatial = [np.array(y, float) for y in labels]
    temporal = [1.0 - s for s in spatial]          # anti-informative
    scores = scores_of(spatial, temporal, labels=labels)
    # a1 = 0.9 also separates perfectly (0.9 vs 0.1): the tie goes to the earlier a1 = 1.0
    assert micro_auroc(minmax(0.9 * scores.concat("spatial") + 0.1 * scores.concat("temporal")),
                       scores.all_labels()) == 1.0
    assert search_local(scores) == LocalBest(1.0, 1.0, 0.0, 0)


def test_local_search_finds_temporal_when_it_is_the_informative_one():
    labels = [[0, 0, 1, 1], [1, 0, 0, 0]]
    temporal = [np.array(y, float) for y in labels]
    spatial = [100.0 * (1.0 - t) for t in temporal]  # any spatial weight ranks normals first
    scores = scores_of(spatial, temporal, labels=labels)
    assert search_local(scores, weights=(0.1,), sigmas=(0,)).auroc == 0.0
    assert search_local(scores) == LocalBest(1.0, 0.0, 1.0, 0)


def two_videos_with_a_boundary_effect():
    """A false alarm at the end of video 1 next to the anomaly opening video 2: smoothing over
    the concatenation carries it onto the anomaly, smoothing per video does not."""
    first = np.array([0, 0, 0, 0, 0, 0, 9.0])
    second = np.array([0, 0, 0, 1, 1, 1, 0.0])
    labels = [[0] * 7, [1, 0, 0, 0, 0, 0, 0]]
    return [first, second], labels


def test_local_smoothing_runs_over_the_concatenation():
    spatial, labels = two_videos_with_a_boundary_effect()
    scores = scores_of(spatial, labels=labels)
    # smoothed over all 14 frames, the anomaly (frame 7, 1.685) is below only frame 6 (1.833):
    # 12 of 13 normal frames are ranked below it
    assert search_local(scores, weights=(1.0,), sigmas=(2,)).auroc == pytest.approx(12 / 13)
    per_video = np.concatenate([gaussian_filter1d(s, 2) for s in spatial])
    assert micro_auroc(per_video, scores.all_labels()) == pytest.approx(2 / 13)


def test_global_stream_is_zscored_and_smoothed_per_video():
    highlevel, labels = two_videos_with_a_boundary_effect()
    scores = scores_of([np.zeros(7), np.zeros(7)], highlevel=highlevel, labels=labels)
    per_video = np.concatenate([gaussian_filter1d(zscore(h), 2) for h in highlevel])
    np.testing.assert_array_equal(global_stream(scores.banks["highlevel"], 2), per_video)
    over_all = gaussian_filter1d(np.concatenate([zscore(h) for h in highlevel]), 2)
    y = scores.all_labels()
    assert micro_auroc(over_all, y) != micro_auroc(per_video, y)
    # b1 = 0: the total score is the global stream alone
    assert search_total(scores, 1.0, 0.0, weights=(0.0,), sigmas=(2,)).auroc == \
        pytest.approx(micro_auroc(per_video, y))


def test_total_search_tie_rule_and_sigma_order():
    labels = [[0, 0, 1, 1], [0, 0, 1, 1]]
    highlevel = [np.array(y, float) for y in labels]
    scores = scores_of([np.ones(4), np.ones(4)], highlevel=highlevel, labels=labels)
    # b1 = 1.0: the (constant) local stream alone, all scores 0, AUROC 0.5;
    # b1 = 0.9 is the first to separate perfectly, before 0.8 .. 0.0 and before any sigma > 0
    assert search_total(scores, 1.0, 0.0, sigmas=(0,), weights=(1.0,)).auroc == 0.5
    assert search_total(scores, 1.0, 0.0) == TotalBest(1.0, 0.9, 0.1, 0)


def test_total_search_zscores_the_local_stream_before_fusing():
    labels = [[0, 0, 1, 1], [0, 1, 1, 0]]
    spatial = [np.array([0, 30, 10, 20.0]), np.array([0, 0, 30, 0.0])]
    highlevel = [np.array([0, 0, 1, 1.0]), np.array([1, 0, 1, 0.0])]   # per-video z: +-1
    scores = make_video_scores(published(spatial, [np.zeros(4)] * 2, highlevel), labels, STREAMS)
    # z(local) = -0.887, 1.478, -0.099, 0.690 | -0.887, -0.887, 1.478, -0.887; halves summed:
    # negatives -1.887, 0.478, 0.113, -1.887; positives 0.901, 1.690 (4 wins each),
    # -1.887 (two ties), 2.478 (4 wins) -> 13/16. Without the z-score it would be 11/16.
    assert search_total(scores, 1.0, 0.0, weights=(0.5,), sigmas=(0,)).auroc == \
        pytest.approx(13 / 16)


def test_protocol_fuses_with_the_best_local_weights():
    labels = [[0, 0, 1, 1], [1, 0, 0, 0]]
    temporal = [np.array(y, float) for y in labels]
    spatial = [100.0 * (1.0 - t) for t in temporal]
    highlevel = [1.0 - t for t in temporal]          # anti-informative global stream
    scores = scores_of(spatial, temporal, highlevel, labels)
    protocol = published_protocol(scores)
    # b1 = 1.0 reaches 1.0 only because local uses the found a1 = 0.0 (with a1 = 1.0 it is 0)
    assert protocol["total"] == TotalBest(1.0, 1.0, 0.0, 0)
    assert protocol["weights"] == FusionWeights(0.0, 1.0, 1.0, 0.0, 0)
    assert protocol["temporal_only"] == BankBest(1.0, 0)
    # single-bank rows only search sigma (smoothing lifts the anti-informative streams off 0 but
    # not to the fused score); they equal the fusion searches at the weight 1.0 / 0.0, as the
    # published code computed them
    spatial_only, global_only = protocol["spatial_only"], protocol["highlevel_only"]
    assert spatial_only.auroc < 0.5 and global_only.auroc < 1.0
    assert spatial_only.auroc == search_local(scores, weights=(1.0,)).auroc
    assert protocol["temporal_only"].auroc == search_local(scores, weights=(0.0,)).auroc
    assert global_only.auroc == search_total(scores, 0.0, 1.0, weights=(0.0,)).auroc


def macro_case():
    spatial = [np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.2, 0.9]), np.array([0.5, 0.5])]
    labels = [[0, 0, 1, 1, 1], [0, 1], [0, 0]]
    highlevel = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 1.0]), np.array([0.0, 1.0])]
    return scores_of(spatial, [1 - s for s in spatial], highlevel, labels)


def test_fixed_weights_micro_and_macro():
    scores = macro_case()
    streams = evaluate_streams(scores, VIDEOPATCHCORE, FusionWeights(1.0, 0.0, 1.0, 0.0, 0))
    # spatial over all 8 frames: positives 0.35, 0.8, 0.9 beat 2, 5, 5 of 5 negatives -> 12/15
    assert streams["spatial"]["micro"] == pytest.approx(0.8)
    assert streams["spatial"]["macro"] == pytest.approx(0.875)
    assert (streams["spatial"]["macro_videos"], streams["spatial"]["macro_skipped"]) == (2, 1)
    assert streams["total"]["micro"] == pytest.approx(0.8)      # b1 = 1, a1 = 1: spatial only
    assert streams["temporal"]["micro"] == pytest.approx(0.2)   # temporal = 1 - spatial
    # global: per-video z-scores of [1, 2, 3, 4] / [2, 1] / [0, 1]
    assert streams["highlevel"]["macro"] == pytest.approx((1.0 + 0.0) / 2)


def test_fused_per_video_splits_the_total_score():
    scores = macro_case()
    weights = FusionWeights(0.5, 0.5, 0.3, 0.7, 1)
    fused = fused_per_video(scores, weights)
    assert [len(v) for v in fused["total"]] == [4, 2, 2]
    local = zscore(0.5 * scores.concat("spatial") + 0.5 * scores.concat("temporal"))
    expected = minmax(0.3 * gaussian_filter1d(local, 1)
                      + 0.7 * global_stream(scores.banks["highlevel"], 1))
    np.testing.assert_allclose(np.concatenate(fused["total"]), expected, rtol=0, atol=1e-15)


def test_save_load_round_trip_and_report(tmp_path):
    scores = macro_case()
    weights = FusionWeights(0.5, 0.5, 0.5, 0.5, 2)
    results = evaluate(scores, VIDEOPATCHCORE, weights)
    metadata = {"dataset": "avenue", "random_weights": True}
    fused = fused_per_video(scores, weights)
    npz, js = tmp_path / "out" / "scores.npz", tmp_path / "out" / "results.json"
    save_results(npz, js, scores, results, metadata, fused={"total": fused["total"]})
    assert sorted(p.name for p in npz.parent.iterdir()) == ["results.json", "scores.npz"]
    saved = load_results(npz, js)
    assert saved.scores.names == ["1", "2", "3"]
    for bank in ("spatial", "temporal", "highlevel"):
        for a, b in zip(saved.scores.banks[bank], scores.banks[bank]):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(saved.scores.labels, scores.labels):
        np.testing.assert_array_equal(a, b)
    assert saved.scores.streams == {"spatial": "local", "temporal": "local", "highlevel": "global"}
    for a, b in zip(saved.fused["total"], fused["total"]):
        np.testing.assert_array_equal(a, b)
    assert saved.metadata == metadata
    assert saved.results == json.loads(json.dumps(results))
    # re-evaluating the loaded scores gives the same numbers
    assert evaluate(saved.scores, VIDEOPATCHCORE, weights) == results

    report = format_results(saved.results, saved.metadata, stream_titles(PUBLISHED))
    assert report.startswith("> **WARNING: made with random")
    assert "| total (local+global) |" in report
    assert f"{100 * results['fixed']['streams']['spatial']['micro']:.2f}" in report
    assert "skips 1 single-class video(s) of 3" in report
    assert "WARNING" not in format_results(results, {"dataset": "avenue"})
    regions = {"rbdc": 0.5, "tbdc": 0.75, "tracks": 2, "regions": 9, "detections": 30, "frames": 40,
               "object_score": "a1 S + a2 T, raw, fixed weights"}
    assert "frames); area convention not recorded." in format_results({**results, "regions": regions})
    report = format_results({**results, "regions": {**regions, "convention": "georgescu"}})
    assert ("RBDC 50.00%, TBDC 75.00% (2 tracks, 9 regions, 30 detections over 40 frames); area convention "
            "georgescu: one threshold per detection, flat to 1 false positive per frame") in report


def test_load_results_missing_file(tmp_path):
    with pytest.raises(VPCError, match="not found"):
        load_results(tmp_path / "scores.npz", tmp_path / "results.json")


def test_weights_chosen_from_a1_and_b1_have_exact_complements():
    assert FusionWeights.chosen(0.7, 0.9, 2) == FusionWeights(0.7, 0.3, 0.9, 0.1, 2)   # 1 - 0.7 is 0.30000000000000004


def test_both_macro_conventions_by_hand():
    from extra.evaluation.metrics import padded_macro_auroc

    scores = [np.array([0.5, 0.2]), np.array([0.3, 0.4]), np.array([0.9, 0.1, 1.0])]
    labels = [np.array([1, 0]), np.array([0, 0]), np.array([0, 1, 0])]
    # with both classes only: video 1 AUROC 1, video 3 AUROC 0 (its anomaly scores lowest), video 2 skipped
    macro = macro_auroc(scores, labels)
    assert (macro.auroc, macro.n_videos, macro.n_skipped) == (0.5, 2, 1)
    # padded as AI-VAD, with (0, normal) and (sys.float_info.max, anomalous): video 1 stays 1; video 2
    # becomes 1 (the pad beats all); video 3, whose top frame (1.0) is normal: positives 0.1 and the pad
    # against 0.9, 1.0 and the pad 0: 0.1 beats only 0, the pad beats all three: (1 + 3) / 6 = 2/3.
    # A pad at the stream's maximum, 1.0, would tie the normal 1.0: (1 + 2.5) / 6, and 0.8611 overall.
    assert padded_macro_auroc(scores, labels) == pytest.approx((1 + 1 + 4 / 6) / 3, abs=1e-12)
    assert padded_macro_auroc(scores[2:], labels[2:]) == pytest.approx(2 / 3, abs=1e-12)


def test_labels_aligned_with_the_scored_frames_beside_the_published_cut():
    # IITB: the first frame has no clip, so 4 scored frames stand for frames 1..4 of 5
    scores = make_video_scores(published([np.array([0.1, 0.2, 0.9, 0.8])], [np.zeros(4)], [np.zeros(4)]),
                               [np.array([1, 0, 0, 1, 1])], STREAMS, first_frames=[1])
    assert scores.labels[0].tolist() == [1, 0, 0, 1]              # published: cut from the start
    assert scores.aligned_labels[0].tolist() == [0, 0, 1, 1]      # the frames actually scored
    results = evaluate(scores, VIDEOPATCHCORE, FusionWeights(1.0, 0.0, 1.0, 0.0, 0))
    assert results["labels"] == {"protocol": "cut from the start of each video, as the published code does",
                                 "fixed": "the frames actually scored"}
    assert results["fixed"]["streams"]["spatial"]["micro"] == 1.0          # aligned: 0.9, 0.8 are the anomalies
    # cut: 0.1 and 0.8 are the anomalies, against 0.2 and 0.9: only 0.8 > 0.2 of 4 pairs
    assert results["protocol"]["streams"]["spatial"]["micro"] == 0.25
    assert "labels the frames actually scored" in format_results(results)
    same = make_video_scores(published([np.zeros(4)], [np.zeros(4)], [np.zeros(4)]), [np.array([0, 1, 0, 1, 1])],
                             STREAMS)
    assert same.aligned is None and same.aligned_labels is same.labels
