"""Label-free calibration, last step: the fusion weights, smoothing and alarm thresholds chosen on
calibration sequences (held-out training videos with pseudo-anomalies spliced in, made by
Memorization.calibration.heldout), without any test label.

- **per-bank normalisation** (extra.evaluation.fusion.normalisation): min and 99th percentile of
  normal held-out frames, so a score means the same in every video and needs no test statistic;
- **weights and smoothing**: on the published grid (sigma 0..19, weights 1.0 down to 0.0), first a1
  on the local score, then b1 and sigma on the total, the first best kept, as the published search
  does it on the test set;
- **alarm threshold**: the (1 - false-alarm rate) quantile of the total over normal held-out frames;
  ``clip_threshold`` is the same for the unsmoothed total, which scoring clip by clip uses.

A calibration is plain JSON: it travels in the model file and beside the memory banks.
"""
import numpy as np

from extra.errors import VPCError
from extra.evaluation.fusion import (
    DEFAULT_FALSE_ALARM_RATE, GLOBAL_FUSION, SIGMAS, WEIGHTS, FusionWeights, calibrated_local_stream,
    calibrated_streams, complement, normalisation, normalised_banks, per_video, total_score, unsmoothed,
)
from extra.evaluation.metrics import micro_auroc


def choose_weights(scores, labels, scales):
    """(a1, b1, sigma) that best separate the pseudo-anomalous frames of the calibration sequences,
    on the published grid and in its order (first best kept). Returns FusionWeights."""
    y = np.concatenate(labels)
    banks = normalised_banks(scores, scales)
    best_local = None
    for sigma in SIGMAS:
        for a1 in WEIGHTS:
            value = micro_auroc(calibrated_local_stream(banks, a1, complement(a1), sigma), y)
            if best_local is None or value > best_local[0]:
                best_local = (value, a1)
    a1 = best_local[1]
    best = None
    for sigma in SIGMAS:
        local = calibrated_local_stream(banks, a1, complement(a1), sigma)
        smoothed_global = per_video(banks[GLOBAL_FUSION], sigma)
        for b1 in WEIGHTS:
            value = micro_auroc(total_score(b1, complement(b1), local, smoothed_global), y)
            if best is None or value > best[0]:
                best = (value, b1, sigma)
    _, b1, sigma = best
    return FusionWeights.chosen(a1, b1, sigma)


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
