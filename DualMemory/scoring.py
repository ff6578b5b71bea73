"""The dual-memory model's frame scores and their evaluation (DualMemory/SPEC.md, section 7), as small
functions on vectors.

Each test clip scores its 9th frame with the PSNR of its reconstruction; per video the PSNR is min-max
normalised over the video's own frames and the anomaly score is 1 - PSNR', as the official evaluation
computes it (its AUROC is taken against the inverted labels). The label-free form needs no statistic of
the scored video: the PSNR negated, scaled by the minimum and 99th percentile of normal calibration
frames, with an alarm threshold at a quantile of them.
"""
from dataclasses import dataclass

import numpy as np

from extra.errors import VPCError
from extra.evaluation.alarms import alarm_threshold
from extra.evaluation.fusion import minmax_unguarded, normalisation, normalised, oriented
from extra.evaluation.harness import MethodEvaluation
from extra.evaluation.metrics import micro_auroc
from DualMemory.options import SCORED_FRAME

STREAMS = {"psnr": "frame"}         # the model's one per-frame score, as VideoScores names it
ORIENTATION = {"psnr": -1.0}        # times the raw score: higher is more anomalous
TITLES = {"psnr": "PSNR", "total": "total (1 - PSNR')"}


@dataclass(frozen=True)
class DualWeights:
    """The dual-memory score fuses nothing: one stream, normalised per video as published."""

    normalisation: str = "per-video min-max"


def cut_labels(labels, first_frame=0, n_scored=None):
    """The labels of the frames a video's clips score: the 9th frame of each clip, so frames 8 .. n - 8
    of the video (from its first usable frame)."""
    labels = np.asarray(labels)[first_frame + SCORED_FRAME:]
    return labels if n_scored is None else labels[:n_scored]


def dual_streams(scores, weights=None):
    """The anomaly score over all frames: 1 - PSNR', normalised per video (the total is the same stream)."""
    total = np.concatenate([1.0 - minmax_unguarded(x) for x in scores.banks["psnr"]])
    return {"psnr": total, "total": total}


def calibrated_streams(scores, calibration):
    """The PSNR oriented and scaled by the calibration, over all frames (the total is the same stream)."""
    scale = calibration["normalisation"]["psnr"]
    total = np.concatenate([normalised(x, scale) for x in oriented(scores, ORIENTATION).banks["psnr"]])
    return {"psnr": total, "total": total}


def calibrate(scores, labels, false_alarm_rate, details=None):
    """The label-free calibration (JSON-ready) from calibration VideoScores (held-out training footage with
    pseudo-anomalous stretches) and their 0/1 labels: the PSNR's scale and the alarm threshold at
    ``false_alarm_rate`` of the normal calibration frames."""
    y = np.concatenate(labels)
    if not (y == 0).any() or not (y == 1).any():
        raise VPCError("the label-free calibration needs held-out footage with both normal and pseudo-anomalous "
                       "frames: hold out longer videos")
    calibration = {"weights": {"normalisation": "held-out training footage"},
                   "normalisation": normalisation(oriented(scores, ORIENTATION), labels),
                   "false_alarm_rate": false_alarm_rate, **(details or {})}
    total = calibrated_streams(scores, calibration)["total"]
    calibration["threshold"] = alarm_threshold(total, labels, false_alarm_rate)
    calibration["clip_threshold"] = calibration["threshold"]      # frame by frame already: nothing to smooth
    calibration["separation_auroc"] = micro_auroc(total, y)
    return calibration


def dual_evaluation():
    """What the harness needs of the dual-memory model: its stream, its calibrated stream, and its published
    protocol, which tunes nothing on the test labels."""

    def protocol(scores):
        return {"total": {"auroc": micro_auroc(dual_streams(scores)["total"], scores.all_labels())}}

    return MethodEvaluation("dual-memory", streams=dual_streams, calibrated=calibrated_streams, protocol=protocol,
                            weights=lambda fields: DualWeights(**fields),
                            protocol_note="PSNR min-maxed per test video, nothing tuned")
