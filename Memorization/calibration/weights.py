"""TODO docstring"""
import numpy as np

from extra.errors import VPCError
from extra.evaluation.fusion import (
    DEFAULT_FALSE_ALARM_RATE,
    GLOBAL_FUSION,
    LOCAL_FUSION,
    SIGMAS,
    WEIGHTS,
    FusionWeights,
    calibrated_streams,
    complement,
    normalisation,
    normalised,
    per_video,
    unsmoothed,
)
from extra.evaluation.metrics import micro_auroc


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
