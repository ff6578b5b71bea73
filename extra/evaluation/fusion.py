"""VideoPatchCore's fused score, written once (SPEC 7): local = a1 S + a2 T, total = b1 local + b2 H.

S, T and H are the per-frame scores of the spatial, temporal and high-level banks. The same two
sums (``local_score``, ``total_score``) serve every place that fuses, with one of two
normalisations around them:

- **over the scored videos** (``stream_scores``), as the published protocol does: S and T smoothed
  over the concatenation of all videos, H z-scored and smoothed per video, the local score z-scored
  before the total, every stream min-maxed over all frames. The protocol's grid search
  (extra.evaluation.protocol) and the fixed-weights column use it;
- **by a calibration** made on training videos alone (``calibrated_streams``): each bank mapped by
  its normal held-out scores, ``(x - low) / (high - low)``, each stream smoothed per video. The
  label-free column, the choice of its weights (Memorization.calibration), live scoring (sigma 0: no
  future frames) and the objects' region scores (``calibrated_local``) use it; nothing of the scored
  videos enters it. VideoPatchCore's banks (``log_normalisation``) are mapped on a log scale
  (strictly increasing, so each bank ranks frames as its raw scores do), low the median and high the
  90th percentile: their scores are distances to a power n, spread over orders of magnitude, so a
  linear scale lets one bank's outliers outweigh the others in the sum, and a 99th percentile of a
  few hundred held-out frames is one or two frames' score. On the log scale the power cancels out
  and the scale rests on half and a tenth of the frames. Other methods' streams (PSNR, ...) keep the
  linear ``normalisation``: low the minimum, high the 99th percentile.
  The high-level bank, once mapped, is standardised per video by that video's earlier clips alone
  (``causal_standardised``, where the calibration's scale says ``causal``): its level differs from
  video to video far more than the local banks' (the published protocol z-scores it per video, over
  the whole video, which a live threshold cannot), and a running mean and spread of the past clips,
  shrunk toward the calibration's normal range while there are few, need no future frame.

A bank outside the fusion (a new BankSpec) is normalised and evaluated on its own.
"""
from dataclasses import dataclass

import numpy as np

EPS = 1e-8
# The published grid: smoothing widths, and weights from integers, so 0.7 is the double nearest to
# 0.7 (repeated "- 0.1" would drift).
SIGMAS = tuple(range(20))
WEIGHTS = tuple((10 - i) / 10 for i in range(11))
LOCAL_FUSION = ("spatial", "temporal")
GLOBAL_FUSION = "highlevel"
# How reports and figures name the fused streams.
FUSED_TITLES = {"local": "local (spatial+temporal)", "total": "total (local+global)"}
# The calibration's normalisation.
HIGH_PERCENTILE = 99.0
LOG_LOW_PERCENTILE, LOG_HIGH_PERCENTILE = 50.0, 90.0
# The high-level bank's causal per-video standardisation: the clips' worth of prior (level 0, spread 1)
# behind its running mean and spread.
CAUSAL_PRIOR_CLIPS = 1.0


def zscore(x):
    return (x - x.mean()) / (x.std() + EPS)


def minmax(x):
    return (x - x.min()) / (x.max() - x.min() + EPS)


def minmax_unguarded(x):
    """(x - min) / (max - min) over one video, without the guard against a constant video (the published
    code of MNAD and of the dual-memory model has none: it gives NaN there, as theirs does)."""
    x = np.asarray(x, dtype=np.float64)
    return (x - x.min()) / (x.max() - x.min())


def refuse_constant(names, per_stream):
    """One line for a video whose stream is the same on every frame: ``minmax_unguarded`` would divide
    0 by 0 there, as the published code does."""
    from extra.errors import VPCError

    for stream, vectors in per_stream.items():
        for name, x in zip(names, vectors):
            if np.max(x) == np.min(x):
                raise VPCError(f"test video {name}: its {stream} is the same on all {len(x)} frames scored, so the "
                               f"per-video min-max normalisation is undefined")


def smooth(x, sigma):
    """scipy's gaussian_filter1d with its defaults (mode 'reflect', truncate 4.0), as the
    published code calls it; sigma 0 means no filter."""
    if sigma <= 0:
        return x
    from scipy.ndimage import gaussian_filter1d      # scipy is slow to import: commands' --help skip it

    return gaussian_filter1d(x, sigma)


def per_video(vectors, sigma):
    """Each video's vector smoothed on its own, then all concatenated."""
    return np.concatenate([smooth(v, sigma) for v in vectors])


def complement(weight):
    """The second weight of a pair, rounded to one decimal as the published grid does."""
    return round(1 - weight, 1)


def local_score(a1, a2, spatial, temporal):
    """a1 S + a2 T."""
    return a1 * spatial + a2 * temporal


def total_score(b1, b2, local, glob):
    """b1 local + b2 global."""
    return b1 * local + b2 * glob


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


def fusable(banks):
    """Whether the fusion applies to these banks (names): the three it reads are all there."""
    return all(bank in banks for bank in (*LOCAL_FUSION, GLOBAL_FUSION))


# --- normalised over the scored videos (the published protocol) ---------------------------------------

def global_stream(highlevel_per_video, sigma):
    """High-level scores z-scored and smoothed per video, then concatenated."""
    return np.concatenate([smooth(zscore(h), sigma) if h.size else h
                           for h in highlevel_per_video])


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
    if fusable(scores.banks):
        local = local_score(weights.a1, weights.a2, *(scores.concat(bank) for bank in LOCAL_FUSION))
    for bank in scores.banks:
        results[bank] = minmax(bank_stream(scores, bank, sigma))
        if local is not None and bank == LOCAL_FUSION[-1]:
            results["local"] = minmax(smooth(local, sigma))
    if local is not None:
        glob = global_stream(scores.banks[GLOBAL_FUSION], sigma)
        results["total"] = minmax(total_score(weights.b1, weights.b2, smooth(zscore(local), sigma), glob))
    return results


def fused_per_video(scores, weights):
    """The scores of ``stream_scores`` cut back into per-video vectors (for saving and plots)."""
    return {name: scores.split(x) for name, x in stream_scores(scores, weights).items()}


# --- normalised by a calibration (label-free) ---------------------------------------------------------

def normalisation(scores, labels):
    """{bank: {"low", "high"}} from the normal frames (label 0) of the calibration VideoScores."""
    normal = np.concatenate(labels) == 0
    result = {}
    for bank in scores.banks:
        values = scores.concat(bank)[normal]
        low, high = float(values.min()), float(np.percentile(values, HIGH_PERCENTILE))
        result[bank] = {"low": low, "high": high if high > low else low + 1.0}
    return result


def log_normalisation(scores, labels):
    """{bank: {"low", "high", "offset", "log": True}} of the normal frames (label 0) of calibration
    VideoScores whose scores are >= 0 (distances to a power): a score x is mapped by log(x + offset),
    ``offset`` the smallest positive normal score (a clip without objects scores 0, whose log is
    undefined), then by low, the median, and high, the 90th percentile, of the normal frames' values.
    The map is strictly increasing: every bank ranks its frames as its raw scores do."""
    normal = np.concatenate(labels) == 0
    result = {}
    for bank in scores.banks:
        values = scores.concat(bank)[normal]
        positive = values[values > 0]
        offset = float(positive.min()) if positive.size else 1.0
        logs = np.log(values + offset)
        low, high = float(np.percentile(logs, LOG_LOW_PERCENTILE)), float(np.percentile(logs, LOG_HIGH_PERCENTILE))
        result[bank] = {"low": low, "high": high if high > low else low + 1.0, "offset": offset, "log": True}
    return result


def oriented(scores, signs):
    """VideoScores with each stream times its sign in ``signs`` (+1 or -1), so that higher means more
    anomalous (a PSNR is negated)."""
    from dataclasses import replace

    return replace(scores, banks={name: [signs[name] * x for x in vectors] for name, vectors in scores.banks.items()})


def normalised(x, scale):
    """``x`` mapped by a bank's scale: ``(x - low) / (high - low)``, of log(x + offset) for a log scale."""
    x = np.asarray(x, dtype=np.float64)
    if scale.get("log"):
        x = np.log(x + scale["offset"])
    return (x - scale["low"]) / (scale["high"] - scale["low"])


def causal_step(value, earlier, prior_clips=CAUSAL_PRIOR_CLIPS):
    """One clip's normalised ``value`` standardised by the same video's ``earlier`` clips only:
    ``(value - m) / s``, m their mean and s^2 their variance about m, each shrunk toward the calibration's
    normal level (0) and spread (1) by ``prior_clips`` clips' worth of prior. Without earlier clips m = 0 and
    s = 1: the first clip keeps its calibrated value."""
    earlier = np.asarray(earlier, dtype=np.float64)
    mean = earlier.sum() / (earlier.size + prior_clips)
    variance = (prior_clips + ((earlier - mean) ** 2).sum()) / (earlier.size + prior_clips)
    return (value - mean) / np.sqrt(variance)


def causal_standardised(x, clip_frames, prior_clips=CAUSAL_PRIOR_CLIPS, earlier=()):
    """One video's normalised per-frame scores, clip by clip (``clip_frames`` frames share a score; a last,
    shorter run of frames counts as one clip), each clip ``causal_step`` of the video's earlier clips: no
    statistic of later frames enters, so live scoring computes the same as the video comes. ``earlier``: the
    clip values (``clip_values``) of the video before ``x``, when ``x`` continues it."""
    x = np.asarray(x, dtype=np.float64)
    starts = range(0, x.size, clip_frames)
    clips = np.concatenate([np.asarray(earlier, dtype=np.float64), clip_values(x, clip_frames)])
    out = np.empty_like(x)
    for c, start in enumerate(starts):
        out[start:start + clip_frames] = causal_step(x[start:start + clip_frames], clips[:len(earlier) + c],
                                                     prior_clips)
    return out


def clip_values(x, clip_frames):
    """The mean of each clip of ``clip_frames`` frames of ``x`` (a last, shorter run is one clip)."""
    return np.array([x[start:start + clip_frames].mean() for start in range(0, len(x), clip_frames)])


def normalised_banks(scores, scales, earlier=None):
    """{bank: [normalised vector per video]} of VideoScores; a bank whose scale says ``causal``
    ({"clip_frames", "prior_clips"}) is then standardised per video by its earlier clips
    (``causal_standardised``), after the clip values ``earlier[bank]`` where given (a video scored as it
    comes, one piece at a time)."""
    banks = {}
    for bank, vectors in scores.banks.items():
        causal = scales[bank].get("causal")
        banks[bank] = [normalised(v, scales[bank]) if causal is None else
                       causal_standardised(normalised(v, scales[bank]), causal["clip_frames"], causal["prior_clips"],
                                           (earlier or {}).get(bank, ()))
                       for v in vectors]
    return banks


def calibrated_local(spatial, temporal, calibration):
    """a1 S_n + a2 T_n, unsmoothed, of any spatial and temporal scores (frames, or objects)."""
    weights, scales = calibration["weights"], calibration["normalisation"]
    return local_score(weights["a1"], weights["a2"], normalised(spatial, scales[LOCAL_FUSION[0]]),
                       normalised(temporal, scales[LOCAL_FUSION[1]]))


def objects_fused(objects_local, clip_global, calibration):
    """Per object, its clip's unsmoothed fused score were it the clip's worst object: b1 times its
    ``calibrated_local`` score plus b2 times the clip's calibrated global score. The object of the highest
    is the one responsible for the clip's score."""
    weights = calibration["weights"]
    return weights["b1"] * np.asarray(objects_local, dtype=np.float64) + weights["b2"] * clip_global


def calibrated_local_stream(banks, a1, a2, sigma):
    """a1 S_n + a2 T_n over all frames from normalised per-video bank vectors, smoothed per video."""
    spatial, temporal = (banks[bank] for bank in LOCAL_FUSION)
    return per_video([local_score(a1, a2, s, t) for s, t in zip(spatial, temporal)], sigma)


def calibrated_streams(scores, calibration, earlier=None):
    """Per-frame score of every bank and fused stream over all frames, as the calibration defines
    them: normalised per bank, smoothed per video, no statistic of the scored videos used but, for a
    causally standardised bank, each video's earlier clips (``earlier``: see ``normalised_banks``)."""
    weights = FusionWeights(**calibration["weights"])
    banks = normalised_banks(scores, calibration["normalisation"], earlier)
    streams = {bank: per_video(vectors, weights.sigma) for bank, vectors in banks.items()}
    if fusable(banks):
        local = calibrated_local_stream(banks, weights.a1, weights.a2, weights.sigma)
        streams["local"] = local
        streams["total"] = total_score(weights.b1, weights.b2, local, streams[GLOBAL_FUSION])
    return streams


def unsmoothed(calibration):
    """The calibration with its smoothing set to none (what clip-by-clip scoring can apply)."""
    return {**calibration, "weights": {**calibration["weights"], "sigma": 0}}
