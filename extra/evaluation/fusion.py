"""TODO docstring"""
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

EPS = 1e-8


SIGMAS = tuple(range(20))


# From integers, so 0.7 is the double nearest to 0.7 (repeated "- 0.1" would drift).
WEIGHTS = tuple((10 - i) / 10 for i in range(11))


# The fusion of SPEC 7, defined on the published banks: local = a1 S + a2 T, total = b1 local + b2 H.
# A bank outside it (a new BankSpec) is evaluated on its own.
LOCAL_FUSION = ("spatial", "temporal")


GLOBAL_FUSION = "highlevel"


def zscore(x):
    return (x - x.mean()) / (x.std() + EPS)


def minmax(x):
    return (x - x.min()) / (x.max() - x.min() + EPS)


def smooth(x, sigma):
    """scipy's gaussian_filter1d with its defaults (mode 'reflect', truncate 4.0), as the
    published code calls it; sigma 0 means no filter."""
    return gaussian_filter1d(x, sigma) if sigma > 0 else x


def complement(weight):
    """The second weight of a pair, rounded to one decimal as the published grid does."""
    return round(1 - weight, 1)


def global_stream(highlevel_per_video, sigma):
    """High-level scores z-scored and smoothed per video, then concatenated."""
    return np.concatenate([smooth(zscore(h), sigma) if h.size else h
                           for h in highlevel_per_video])


@dataclass(frozen=True)
class FusionWeights:
    """local = a1 * S + a2 * T; total = b1 * local + b2 * global; one smoothing sigma."""

    a1: float
    a2: float
    b1: float
    b2: float
    sigma: float

    @classmethod
    def chosen(cls, a1, b1, sigma):
        """Weights given by a1 and b1 alone: a2 = 1 - a1 and b2 = 1 - b1 (to one decimal)."""
        return cls(a1=a1, a2=complement(a1), b1=b1, b2=complement(b1), sigma=sigma)


def bank_stream(scores, bank, sigma):
    """One bank's per-frame score over all frames, before min-max: a local-stream bank smoothed over
    the concatenation of all videos, a global-stream bank z-scored and smoothed per video (SPEC 7)."""
    if scores.streams[bank] == "global":
        return global_stream(scores.banks[bank], sigma)
    return smooth(scores.concat(bank), sigma)


def stream_scores(scores, weights):
    """Per-frame score of every bank and fused stream over all frames (min-maxed), processed as in
    SPEC 7: banks first, in their order, with "local" after the local-stream banks, then "total"."""
    sigma = weights.sigma
    results = {}
    local = None
    if scores.fusable:
        spatial, temporal = (scores.concat(bank) for bank in LOCAL_FUSION)
        local = weights.a1 * spatial + weights.a2 * temporal
    for bank in scores.banks:
        results[bank] = minmax(bank_stream(scores, bank, sigma))
        if local is not None and bank == LOCAL_FUSION[-1]:
            results["local"] = minmax(smooth(local, sigma))
    if local is not None:
        glob = global_stream(scores.banks[GLOBAL_FUSION], sigma)
        results["total"] = minmax(weights.b1 * smooth(zscore(local), sigma) + weights.b2 * glob)
    return results


def fused_per_video(scores, weights):
    """The scores of ``stream_scores`` cut back into per-video vectors (for saving and plots)."""
    return {name: scores.split(x) for name, x in stream_scores(scores, weights).items()}


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


def unsmoothed(calibration):
    """The calibration with its smoothing set to none (what clip-by-clip scoring can apply)."""
    return {**calibration, "weights": {**calibration["weights"], "sigma": 0}}
