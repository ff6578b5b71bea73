"""Label-free calibration, last step: the fusion weights, smoothing and alarm thresholds chosen on
calibration sequences (held-out training videos with pseudo-anomalies spliced in, made by
Memorization.calibration.heldout), without any test label.

- **per-bank normalisation** (extra.evaluation.fusion.log_normalisation): the log of a bank's score,
  by the median and 90th percentile of normal held-out frames (the held-out videos as they are, when
  given: every clip once), so a score means the same in every video and needs no test statistic;
- **weights and smoothing**: the prior, NEUTRAL (equal weights on the normalised banks, no
  smoothing: the fixed column's defaults), is kept unless the pseudo-anomalies clearly say
  otherwise: the best (a1, b1, sigma) of the published grid (a1 on the local score, then b1 and
  sigma on the total, the first best kept, as the published search does it on the test set)
  replaces it only when it separates the pseudo-anomalous frames better by more than two standard
  errors of its AUROC (Hanley and McNeil 1982, counted in clips, not frames: a clip's frames share
  one score), and no worse for any kind of pseudo-anomaly.
  Pseudo-anomalies are not real anomalies: a grid maximum a little above the prior is as likely to be
  their quirk as a better fusion, and one kind that a single bank sees (shuffled object crops, which
  the spatial bank alone notices) must not buy a fusion that misses the others;
- **alarm threshold**: the (1 - false-alarm rate) quantile of the total over normal held-out frames;
  ``clip_threshold`` is the same for the unsmoothed total, which scoring clip by clip uses;
- **support**: how many normal held-out clips the threshold rests on; with fewer than
  MIN_UNITS_ABOVE of them expected above it (extra.evaluation.alarms), the rate cannot be set (or
  measured) reliably, and the calibration says so.

A calibration is plain JSON: it travels in the model file and beside the memory banks.
"""
import math

import numpy as np

from extra.errors import VPCError
from extra.evaluation.alarms import DEFAULT_FALSE_ALARM_RATE, alarm_threshold, false_alarm_support
from extra.evaluation.fusion import (
    CAUSAL_PRIOR_CLIPS, GLOBAL_FUSION, SIGMAS, WEIGHTS, FusionWeights, calibrated_local_stream, calibrated_streams,
    complement, log_normalisation, normalised_banks, per_video, total_score, unsmoothed,
)
from extra.evaluation.metrics import micro_auroc

# Raised whenever the calibration's recipe changes (2: log scale, neutral prior, causal high-level bank; 3: scale
# and thresholds on the held-out videos as they are):
# a calibration saved beside the banks by another version is made again, not reused.
CALIBRATION_VERSION = 3
NEUTRAL = FusionWeights.chosen(0.5, 0.5, 0)
STANDARD_ERRORS = 2.0       # how far the grid's best must beat the prior to replace it


def grid_weights(scores, labels, scales):
    """FusionWeights: the (a1, b1, sigma) that best separate the pseudo-anomalous frames of the
    calibration sequences, on the published grid and in its order (first best kept)."""
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


def auroc_standard_error(auroc, n_anomalous, n_normal):
    """Hanley and McNeil's (1982) standard error of an AUROC from n_anomalous and n_normal independent
    scores."""
    q1, q2 = auroc / (2 - auroc), 2 * auroc ** 2 / (1 + auroc)
    variance = (auroc * (1 - auroc) + (n_anomalous - 1) * (q1 - auroc ** 2)
                + (n_normal - 1) * (q2 - auroc ** 2)) / (n_anomalous * n_normal)
    return math.sqrt(max(variance, 0.0))


def separation(scores, labels, scales, weights, kinds):
    """(AUROC, {kind: AUROC}) of the calibrated total at ``weights`` on the calibration sequences, over
    all of them and over those of each kind (``kinds``: one name per sequence)."""
    total = calibrated_streams(scores, {"weights": weights.__dict__, "normalisation": scales})["total"]
    parts = np.split(total, np.cumsum(scores.lengths)[:-1])
    per_kind = {kind: micro_auroc(np.concatenate([x for x, k in zip(parts, kinds) if k == kind]),
                                  np.concatenate([y for y, k in zip(labels, kinds) if k == kind]))
                for kind in dict.fromkeys(kinds)}
    return micro_auroc(total, np.concatenate(labels)), per_kind


def choose_weights(scores, labels, scales, prior, units, kinds):
    """(FusionWeights, a JSON-ready record of the choice): the grid's best when its AUROC beats the
    prior's by more than STANDARD_ERRORS standard errors (``units``: the independent anomalous and
    normal clips behind the frames) and is no lower on any kind of pseudo-anomaly (``kinds``: the kind
    of each sequence), else the prior."""
    best = grid_weights(scores, labels, scales)
    best_auroc, best_kinds = separation(scores, labels, scales, best, kinds)
    prior_auroc, prior_kinds = separation(scores, labels, scales, prior, kinds)
    margin = STANDARD_ERRORS * auroc_standard_error(best_auroc, *units)
    worse = [kind for kind in best_kinds if best_kinds[kind] < prior_kinds[kind]]
    steered = best_auroc - prior_auroc > margin and not worse
    record = {"prior": prior.__dict__.copy(), "prior_auroc": prior_auroc, "grid_best": best.__dict__.copy(),
              "grid_best_auroc": best_auroc, "margin": margin, "grid_best_worse_on": worse,
              "kept": "grid_best" if steered else "prior"}
    return (best if steered else prior), record


def calibrate(scores, labels, false_alarm_rate=DEFAULT_FALSE_ALARM_RATE, details=None, prior=NEUTRAL, units=None,
              kinds=None, clip_frames=None, normal=None):
    """The calibration (JSON-ready dict) from calibration VideoScores and their pseudo labels
    (one 0/1 vector per sequence). ``prior``: the weights kept unless the pseudo-anomalies clearly
    separate better with others; ``units``: (anomalous, normal) independent clips behind the frames
    (default: one per frame); ``kinds``: each sequence's kind of pseudo-anomaly (default: one kind).
    ``details`` (recipes, counts, fallbacks) is stored alongside. ``clip_frames`` (the frames of a clip):
    the high-level bank is then standardised per video by its earlier clips (fusion.causal_standardised),
    here as on every video scored, live included; None keeps it as the log scale maps it.
    ``normal``: VideoScores of normal footage alone (the held-out videos without pseudo-anomalies), on
    which the normalisation, the thresholds and the support then rest (its clips of ``clip_frames``
    frames counted); default: the normal frames of the sequences."""
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false-alarm rate must lie between 0 and 1, got {false_alarm_rate}")
    y = np.concatenate(labels)
    if not (y == 0).any():
        raise VPCError("the label-free calibration needs training videos of at least two clips (it replaces a "
                       "quarter of each held-out video's clips and compares them with the rest): use longer videos "
                       "or pass --label_free=False")
    units = (int((y == 1).sum()), int((y == 0).sum())) if units is None else units
    if normal is None:
        normal, normal_labels, normal_clips = scores, labels, units[1]
    else:
        normal_labels = [np.zeros(n, np.int64) for n in normal.lengths]
        normal_clips = sum(math.ceil(n / (clip_frames or 1)) for n in normal.lengths)
    scales = log_normalisation(normal, normal_labels)
    if clip_frames is not None and GLOBAL_FUSION in scales:
        scales[GLOBAL_FUSION]["causal"] = {"clip_frames": int(clip_frames), "prior_clips": CAUSAL_PRIOR_CLIPS}
    weights, choice = choose_weights(scores, labels, scales, prior, (max(units[0], 1), max(units[1], 1)),
                                     [None] * len(labels) if kinds is None else kinds)
    calibration = {"weights": weights.__dict__.copy(), "normalisation": scales, "weights_choice": choice,
                   "false_alarm_rate": false_alarm_rate, **(details or {})}
    if clip_frames is not None:
        calibration["clip_frames"] = int(clip_frames)
    calibration["separation_auroc"] = micro_auroc(calibrated_streams(scores, calibration)["total"], y)
    total = calibrated_streams(normal, calibration)["total"]
    calibration["threshold"] = alarm_threshold(total, normal_labels, false_alarm_rate)
    # Clip by clip (live) there are no future frames to smooth with: the same fusion unsmoothed, and
    # its own threshold at the same false-alarm rate.
    total = calibrated_streams(normal, unsmoothed(calibration))["total"]
    calibration["clip_threshold"] = alarm_threshold(total, normal_labels, false_alarm_rate)
    calibration["support"] = false_alarm_support(normal_clips, false_alarm_rate)
    return calibration
