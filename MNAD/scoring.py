"""MNAD's frame scores and their evaluation (MNAD/SPEC.md, testing), as small functions on vectors.

Each test frame gets a PSNR of its prediction (or reconstruction) and a feature compactness distance;
each is min-max normalised per video, and a frame's normality is ``alpha * PSNR' + (1 - alpha) *
(1 - distance')``, as the official evaluation computes it (its AUROC is taken against the inverted
labels). Here every stream is turned into an anomaly score (1 - normality, 1 - PSNR', distance'), so
the shared harness (extra.evaluation) reads it as it reads VideoPatchCore's.

The label-free form (``calibrate``, ``calibrated_streams``) needs no statistic of the scored video: each
stream is oriented (higher = more anomalous: -PSNR, distance), scaled by the minimum and 99th
percentile of normal calibration frames, and fused as ``alpha psnr_n + (1 - alpha) distance_n`` with
alpha chosen on pseudo-anomalies; the alarm threshold is a quantile of the normal calibration frames.
"""
import math
from dataclasses import dataclass

import numpy as np

from extra.errors import VPCError
from extra.evaluation.alarms import alarm_threshold
from extra.evaluation.fusion import WEIGHTS, minmax_unguarded, normalisation, normalised, oriented
from extra.evaluation.harness import MethodEvaluation
from extra.evaluation.metrics import micro_auroc

STREAMS = {"psnr": "frame", "distance": "frame"}     # MNAD's two per-frame scores, as VideoScores names them
ORIENTATION = {"psnr": -1.0, "distance": 1.0}        # times the raw score: higher is more anomalous
TITLES = {"psnr": "PSNR (1 - PSNR', per video)", "distance": "feature distance (per video)",
          "total": "total (alpha (1 - PSNR') + (1 - alpha) distance')"}


def psnr(mse):
    """Peak signal-to-noise ratio of a mean squared error on images in [0, 1]."""
    return 10 * math.log10(1 / mse)


def normality(psnr_of_video, distance_of_video, alpha):
    """The official per-frame normality of one video: alpha PSNR' + (1 - alpha) (1 - distance')."""
    return alpha * minmax_unguarded(psnr_of_video) + (1 - alpha) * (1.0 - minmax_unguarded(distance_of_video))


@dataclass(frozen=True)
class MNADWeights:
    """The one weight of MNAD's score: alpha, of the PSNR."""

    alpha: float


def cut_labels(labels, t_length, first_frame=0):
    """The labels of the frames a video's windows score: a window predicts its last frame, so the first
    t_length - 1 frames of a video (from its first usable frame) have no score."""
    return np.asarray(labels)[first_frame + t_length - 1:]


def mnad_streams(scores, weights):
    """Anomaly score of each stream over all frames (VideoScores of "psnr" and "distance"): 1 - PSNR' and
    distance', each normalised per video, and the total, 1 - normality."""
    psnr_norm = [minmax_unguarded(x) for x in scores.banks["psnr"]]
    distance_norm = [minmax_unguarded(x) for x in scores.banks["distance"]]
    total = [1.0 - normality(p, d, weights.alpha) for p, d in zip(scores.banks["psnr"], scores.banks["distance"])]
    return {"psnr": np.concatenate([1.0 - x for x in psnr_norm]), "distance": np.concatenate(distance_norm),
            "total": np.concatenate(total)}


def mnad_evaluation(alpha):
    """What the harness needs of MNAD: its streams, its label-free calibration's streams, and its
    published protocol, which tunes nothing on the test labels (alpha is fixed in advance, each video
    normalised by its own minimum and maximum)."""

    def protocol(scores):
        weights = MNADWeights(alpha)
        return {"total": {"auroc": micro_auroc(mnad_streams(scores, weights)["total"], scores.all_labels()),
                          "alpha": alpha},
                "weights": weights}

    return MethodEvaluation("MNAD", streams=mnad_streams, calibrated=calibrated_streams, protocol=protocol,
                            weights=lambda fields: MNADWeights(**fields),
                            protocol_note="alpha fixed in advance, PSNR and distance min-maxed per test video")


def weighted(alpha, psnr_score, distance_score):
    """The label-free fused score: alpha psnr_score + (1 - alpha) distance_score, both oriented."""
    return alpha * np.asarray(psnr_score) + (1 - alpha) * np.asarray(distance_score)


def calibrated_streams(scores, calibration):
    """Each stream oriented and scaled by the calibration, and their fused total, over all frames: no
    statistic of the scored videos used, so a frame's score is known as soon as it is scored."""
    scales, alpha = calibration["normalisation"], calibration["weights"]["alpha"]
    banks = {name: np.concatenate([normalised(x, scales[name]) for x in vectors])
             for name, vectors in oriented(scores, ORIENTATION).banks.items()}
    return {**banks, "total": weighted(alpha, banks["psnr"], banks["distance"])}


def choose_alpha(scores, labels, scales):
    """The alpha of the published grid (1.0 down to 0.0) whose fused score best separates the
    pseudo-anomalous frames of the calibration sequences (micro AUROC; the first best kept)."""
    y, best = np.concatenate(labels), None
    banks = {name: np.concatenate([normalised(x, scales[name]) for x in vectors])
             for name, vectors in oriented(scores, ORIENTATION).banks.items()}
    for alpha in WEIGHTS:
        value = micro_auroc(weighted(alpha, banks["psnr"], banks["distance"]), y)
        if best is None or value > best[0]:
            best = (value, alpha)
    return best[1]


def calibrate(scores, labels, false_alarm_rate, details=None):
    """MNAD's label-free calibration (a JSON-ready dict) from calibration VideoScores (held-out training
    footage with pseudo-anomalous stretches) and their 0/1 labels: normalisation, alpha, and the alarm
    threshold at ``false_alarm_rate`` of the normal calibration frames."""
    y = np.concatenate(labels)
    if not (y == 0).any() or not (y == 1).any():
        raise VPCError("the label-free calibration needs held-out footage with both normal and pseudo-anomalous "
                       "frames: hold out longer videos")
    scales = normalisation(oriented(scores, ORIENTATION), labels)
    alpha = choose_alpha(scores, labels, scales)
    calibration = {"weights": {"alpha": alpha}, "normalisation": scales, "false_alarm_rate": false_alarm_rate,
                   **(details or {})}
    total = calibrated_streams(scores, calibration)["total"]
    calibration["threshold"] = alarm_threshold(total, labels, false_alarm_rate)
    calibration["clip_threshold"] = calibration["threshold"]      # frame by frame already: nothing to smooth
    calibration["separation_auroc"] = micro_auroc(total, y)
    return calibration
