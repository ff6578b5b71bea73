"""MNAD's frame scores and their evaluation (MNAD/SPEC.md, testing), as small functions on vectors.

Each test frame gets a PSNR of its prediction (or reconstruction) and a feature compactness distance;
each is min-max normalised per video, and a frame's normality is ``alpha * PSNR' + (1 - alpha) *
(1 - distance')``, as the official evaluation computes it (its AUROC is taken against the inverted
labels). Here every stream is turned into an anomaly score (1 - normality, 1 - PSNR', distance'), so
the shared harness (extra.evaluation) reads it as it reads VideoPatchCore's.
"""
import math
from dataclasses import dataclass

import numpy as np

from extra.evaluation.harness import MethodEvaluation
from extra.evaluation.metrics import micro_auroc

STREAMS = {"psnr": "frame", "distance": "frame"}     # MNAD's two per-frame scores, as VideoScores names them
TITLES = {"psnr": "PSNR (1 - PSNR', per video)", "distance": "feature distance (per video)",
          "total": "total (alpha (1 - PSNR') + (1 - alpha) distance')"}


def psnr(mse):
    """Peak signal-to-noise ratio of a mean squared error on images in [0, 1]."""
    return 10 * math.log10(1 / mse)


def minmax(x):
    """(x - min) / (max - min) over one video, without the guard against a constant video the official
    code does not have (it gives NaN there, as the official code does)."""
    x = np.asarray(x, dtype=np.float64)
    return (x - x.min()) / (x.max() - x.min())


def normality(psnr_of_video, distance_of_video, alpha):
    """The official per-frame normality of one video: alpha PSNR' + (1 - alpha) (1 - distance')."""
    return alpha * minmax(psnr_of_video) + (1 - alpha) * (1.0 - minmax(distance_of_video))


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
    psnr_norm = [minmax(x) for x in scores.banks["psnr"]]
    distance_norm = [minmax(x) for x in scores.banks["distance"]]
    total = [1.0 - normality(p, d, weights.alpha) for p, d in zip(scores.banks["psnr"], scores.banks["distance"])]
    return {"psnr": np.concatenate([1.0 - x for x in psnr_norm]), "distance": np.concatenate(distance_norm),
            "total": np.concatenate(total)}


def mnad_evaluation(alpha):
    """What the harness needs of MNAD: its streams, and its published protocol, which tunes nothing on
    the test labels (alpha is fixed in advance, each video normalised by its own minimum and maximum)."""

    def protocol(scores):
        weights = MNADWeights(alpha)
        return {"total": {"auroc": micro_auroc(mnad_streams(scores, weights)["total"], scores.all_labels()),
                          "alpha": alpha},
                "weights": weights}

    return MethodEvaluation("MNAD", streams=mnad_streams, calibrated=None, protocol=protocol,
                            weights=lambda fields: MNADWeights(**fields),
                            protocol_note="alpha fixed in advance, PSNR and distance min-maxed per test video")
