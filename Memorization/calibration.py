"""Label-free calibration: how a fused score is made and thresholded without any test label.

The published protocol (Memorization.evaluation) normalises each stream over the whole test set and
picks the fusion weights and the smoothing on the test labels. Here everything comes from training
videos (Memorization.pseudo makes the data: held-out training videos scored by memory banks built
without them, with pseudo-anomalous clips spliced in):

- **per-bank normalisation**: x_n = (x - low) / (high - low), low the bank's minimum and high its
  99th percentile over normal held-out frames, so a score means the same in every video and needs
  no test-set statistic;
- **fused score**: local = a1 S_n + a2 T_n and global = H_n, each smoothed per video with a Gaussian
  of width sigma; total = b1 local + b2 global;
- **weights and smoothing**: chosen on the calibration sequences over the published grid (sigma
  0..19, weights 1.0 down to 0.0), first a1 on the local score, then b1 and sigma on the total, the
  first best kept, as the published search does it on the test set;
- **alarm threshold**: the (1 - false-alarm rate) quantile of the total over normal held-out frames;
  ``clip_threshold`` is the same for the unsmoothed total, which scoring clip by clip uses.

A calibration is plain JSON: it travels in the model file and beside the memory banks.
"""
import numpy as np

from extra.errors import VPCError
from Memorization.evaluation import (
    GLOBAL_FUSION, LOCAL_FUSION, SIGMAS, WEIGHTS, FusionWeights, complement, micro_auroc, smooth, stream_aurocs,
)

HIGH_PERCENTILE = 99.0
DEFAULT_FALSE_ALARM_RATE = 0.01


def normalisation(scores, labels):
    """{bank: {"low", "high"}} from the normal frames (label 0) of the calibration VideoScores."""
    normal = np.concatenate(labels) == 0
    result = {}
    for bank in scores.banks:
        values = scores.concat(bank)[normal]
        low, high = float(values.min()), float(np.percentile(values, HIGH_PERCENTILE))
        result[bank] = {"low": low, "high": high if high > low else low + 1.0}
    return result


def normalised(x, scale):
    return (np.asarray(x, dtype=np.float64) - scale["low"]) / (scale["high"] - scale["low"])


def calibrated_local(spatial, temporal, calibration):
    """a1 S_n + a2 T_n, unsmoothed, of any spatial and temporal scores (frames, or objects)."""
    weights, scales = calibration["weights"], calibration["normalisation"]
    return (weights["a1"] * normalised(spatial, scales[LOCAL_FUSION[0]])
            + weights["a2"] * normalised(temporal, scales[LOCAL_FUSION[1]]))


def per_video(vectors, sigma):
    """Each video's vector smoothed on its own, then all concatenated."""
    return np.concatenate([smooth(v, sigma) for v in vectors])


def calibrated_streams(scores, calibration):
    """Per-frame score of every bank and fused stream over all frames, as the calibration defines
    them: normalised per bank, smoothed per video, no statistic of the scored videos used."""
    weights, scales = FusionWeights(**calibration["weights"]), calibration["normalisation"]
    banks = {bank: [normalised(v, scales[bank]) for v in vectors] for bank, vectors in scores.banks.items()}
    streams = {bank: per_video(vectors, weights.sigma) for bank, vectors in banks.items()}
    if all(bank in banks for bank in (*LOCAL_FUSION, GLOBAL_FUSION)):
        spatial, temporal = (banks[bank] for bank in LOCAL_FUSION)
        local = per_video([weights.a1 * s + weights.a2 * t for s, t in zip(spatial, temporal)], weights.sigma)
        streams["local"] = local
        streams["total"] = weights.b1 * local + weights.b2 * streams[GLOBAL_FUSION]
    return streams


def choose_weights(scores, labels, scales):
    """(a1, b1, sigma) that best separate the pseudo-anomalous frames of the calibration sequences,
    on the published grid and in its order (first best kept). Returns FusionWeights."""
    y = np.concatenate(labels)
    spatial, temporal, glob = ([normalised(v, scales[bank]) for v in scores.banks[bank]]
                               for bank in (*LOCAL_FUSION, GLOBAL_FUSION))
    best_local = None
    for sigma in SIGMAS:
        for a1 in WEIGHTS:
            a2 = complement(a1)
            value = micro_auroc(per_video([a1 * s + a2 * t for s, t in zip(spatial, temporal)], sigma), y)
            if best_local is None or value > best_local[0]:
                best_local = (value, a1, a2)
    _, a1, a2 = best_local
    best = None
    for sigma in SIGMAS:
        local = per_video([a1 * s + a2 * t for s, t in zip(spatial, temporal)], sigma)
        smoothed_global = per_video(glob, sigma)
        for b1 in WEIGHTS:
            value = micro_auroc(b1 * local + complement(b1) * smoothed_global, y)
            if best is None or value > best[0]:
                best = (value, b1, sigma)
    _, b1, sigma = best
    return FusionWeights(a1, a2, b1, complement(b1), sigma)


def calibrate(scores, labels, false_alarm_rate=DEFAULT_FALSE_ALARM_RATE, details=None):
    """The calibration (JSON-ready dict) from calibration VideoScores and their pseudo labels
    (one 0/1 vector per sequence). ``details`` (recipes, counts, fallbacks) is stored alongside."""
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false-alarm rate must lie between 0 and 1, got {false_alarm_rate}")
    if not (np.concatenate(labels) == 0).any():
        raise VPCError("the label-free calibration needs training videos of at least two clips (it replaces a "
                       "quarter of each held-out video's clips and compares them with the rest): use longer videos "
                       "or pass --label_free=False")
    scales = normalisation(scores, labels)
    weights = choose_weights(scores, labels, scales)
    calibration = {"weights": weights.__dict__.copy(), "normalisation": scales,
                   "false_alarm_rate": false_alarm_rate, **(details or {})}
    normal = np.concatenate(labels) == 0
    total = calibrated_streams(scores, calibration)["total"]
    calibration["threshold"] = float(np.quantile(total[normal], 1 - false_alarm_rate))
    calibration["separation_auroc"] = micro_auroc(total, np.concatenate(labels))
    # Clip by clip (live) there are no future frames to smooth with: the same fusion unsmoothed, and
    # its own threshold at the same false-alarm rate.
    total = calibrated_streams(scores, unsmoothed(calibration))["total"]
    calibration["clip_threshold"] = float(np.quantile(total[normal], 1 - false_alarm_rate))
    return calibration


def unsmoothed(calibration):
    """The calibration with its smoothing set to none (what clip-by-clip scoring can apply)."""
    return {**calibration, "weights": {**calibration["weights"], "sigma": 0}}


def label_free_results(scores, calibration):
    """The label-free column: AUROCs of the calibrated streams, and what the alarm threshold does on
    the scored videos (labels aligned with the scored frames). JSON-ready."""
    labels = scores.aligned_labels
    streams = calibrated_streams(scores, calibration)
    results = {"weights": calibration["weights"], "threshold": calibration["threshold"],
               "target_false_alarm_rate": calibration["false_alarm_rate"],
               "streams": stream_aurocs(streams, scores, labels), "calibration": calibration}
    if "total" in streams:
        y, alarms = np.concatenate(labels), streams["total"] > calibration["threshold"]
        results["alarms"] = {"false_alarm_rate": float(alarms[y == 0].mean()) if (y == 0).any() else None,
                             "detection_rate": float(alarms[y == 1].mean()) if (y == 1).any() else None}
    return results
