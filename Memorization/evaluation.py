"""Evaluation of per-frame anomaly scores: the published test-tuned protocol (SPEC 7) and the
numbers a user can trust (weights and smoothing fixed in advance, micro and per-video AUROC).

Everything works on per-frame score vectors (spatial S, temporal T, high-level H) and 0/1 label
vectors, one of each per test video in video order, so a saved result can be re-evaluated
without features or memory banks.
"""
import json
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import auc, roc_curve

from extra.errors import VPCError
from extra.io import atomic_path

EPS = 1e-8
SIGMAS = tuple(range(20))
# From integers, so 0.7 is the double nearest to 0.7 (repeated "- 0.1" would drift).
WEIGHTS = tuple((10 - i) / 10 for i in range(11))
# Per-bank and per-stream scores; the global stream is the high-level bank alone.
# File names of a run's saved evaluation, inside its results folder.
SCORES_FILE, RESULTS_FILE = "scores.npz", "results.json"
STREAMS = ("spatial", "temporal", "local", "highlevel", "total")
STREAM_TITLES = {
    "spatial": "spatial",
    "temporal": "temporal",
    "local": "local (spatial+temporal)",
    "highlevel": "global (high-level)",
    "total": "total (local+global)",
}


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


@dataclass
class VideoScores:
    """Per-frame scores of the test videos in video order; labels already cut to the scores."""

    names: list
    spatial: list
    temporal: list
    highlevel: list
    labels: list

    @property
    def lengths(self):
        return [len(s) for s in self.spatial]

    def concat(self, field):
        return np.concatenate(getattr(self, field))

    def split(self, x):
        """Cut a vector over all frames back into per-video pieces."""
        return np.split(x, np.cumsum(self.lengths)[:-1])


def make_video_scores(spatial, temporal, highlevel, labels, names=None):
    """Check and pack per-video scores; each label vector is cut, from its start, to the
    length of its video's scores (the last ``len mod d`` frames have no score)."""
    n = len(spatial)
    names = [str(i + 1) for i in range(n)] if names is None else [str(x) for x in names]
    if n == 0:
        raise VPCError("no test video to evaluate: check the test split and the ground truth")
    if not len(temporal) == len(highlevel) == len(labels) == len(names) == n:
        raise VPCError(
            f"evaluation needs one score vector of each kind and one label vector per video; got "
            f"{n} spatial, {len(temporal)} temporal, {len(highlevel)} high-level, "
            f"{len(labels)} label vectors, {len(names)} names")
    packed = VideoScores(names, [], [], [], [])
    for name, s, t, h, y in zip(names, spatial, temporal, highlevel, labels):
        s, t, h = (np.asarray(v, dtype=np.float64).ravel() for v in (s, t, h))
        y = np.asarray(y).ravel()
        if not len(s) == len(t) == len(h):
            raise VPCError(f"video {name}: spatial, temporal and high-level scores have "
                           f"{len(s)}, {len(t)}, {len(h)} frames; they must have the same length")
        if len(y) < len(s):
            raise VPCError(f"video {name}: {len(y)} labels for {len(s)} scored frames; "
                           f"the ground truth must cover every frame of the video")
        if not (np.isfinite(s).all() and np.isfinite(t).all() and np.isfinite(h).all()):
            raise VPCError(f"video {name}: scores contain NaN or infinity; recompute the scores")
        y = y[: len(s)]
        if not np.isin(y, (0, 1)).all():
            raise VPCError(f"video {name}: labels must be 0 (normal) or 1 (anomalous)")
        packed.spatial.append(s)
        packed.temporal.append(t)
        packed.highlevel.append(h)
        packed.labels.append(y.astype(np.int64))
    return packed


def micro_auroc(scores, labels):
    """AUROC over the frames given (scikit-learn roc_curve + auc)."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        raise VPCError("AUROC needs both normal and anomalous frames; check the ground-truth labels")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(auc(fpr, tpr))


@dataclass(frozen=True)
class MacroAUROC:
    auroc: float        # mean of per-video AUROCs; NaN when no video has both classes
    n_videos: int       # videos used
    n_skipped: int      # videos with a single class (AUROC undefined)


def macro_auroc(scores_per_video, labels_per_video):
    """Mean of the per-video AUROCs over the videos that have both normal and anomalous frames."""
    values = [micro_auroc(s, y) for s, y in zip(scores_per_video, labels_per_video)
              if len(y) and np.min(y) != np.max(y)]
    mean = float(np.mean(values)) if values else float("nan")
    return MacroAUROC(mean, len(values), len(labels_per_video) - len(values))


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


def stream_scores(scores, weights):
    """Per-frame score of every stream over all frames (min-maxed), processed as in SPEC 7:
    local streams are smoothed over the concatenation of all videos, the global one per video."""
    spatial, temporal = scores.concat("spatial"), scores.concat("temporal")
    sigma = weights.sigma
    local = weights.a1 * spatial + weights.a2 * temporal
    glob = global_stream(scores.highlevel, sigma)
    return {
        "spatial": minmax(smooth(spatial, sigma)),
        "temporal": minmax(smooth(temporal, sigma)),
        "local": minmax(smooth(local, sigma)),
        "highlevel": minmax(glob),
        "total": minmax(weights.b1 * smooth(zscore(local), sigma) + weights.b2 * glob),
    }


def fused_per_video(scores, weights):
    """The scores of ``stream_scores`` cut back into per-video vectors (for saving and plots)."""
    return {name: scores.split(x) for name, x in stream_scores(scores, weights).items()}


def evaluate_streams(scores, weights):
    """Micro and macro AUROC of every stream at the given weights."""
    labels = scores.concat("labels")
    results = {}
    for name, x in stream_scores(scores, weights).items():
        macro = macro_auroc(scores.split(x), scores.labels)
        results[name] = {
            "micro": micro_auroc(x, labels),
            "macro": None if macro.n_videos == 0 else macro.auroc,
            "macro_videos": macro.n_videos,
            "macro_skipped": macro.n_skipped,
        }
    return results


@dataclass(frozen=True)
class LocalBest:
    auroc: float
    a1: float
    a2: float
    sigma: int


@dataclass(frozen=True)
class TotalBest:
    auroc: float
    b1: float
    b2: float
    sigma: int


def search_local(scores, weights=WEIGHTS, sigmas=SIGMAS):
    """Search 1 of the published protocol: best (a1, a2, sigma) for minmax(smooth(a1 S + a2 T)).

    Order sigma outer, a1 inner in the order given; the first best is kept (strictly greater
    wins). Each combination is filtered on its own, as the published code does, so ties are
    decided on the same floating-point values.
    """
    spatial, temporal = scores.concat("spatial"), scores.concat("temporal")
    labels = scores.concat("labels")
    best = None
    for sigma in sigmas:
        for a1 in weights:
            a2 = complement(a1)
            value = micro_auroc(minmax(smooth(a1 * spatial + a2 * temporal, sigma)), labels)
            if best is None or value > best.auroc:
                best = LocalBest(value, a1, a2, sigma)
    return best


def search_total(scores, a1, a2, weights=WEIGHTS, sigmas=SIGMAS):
    """Search 2: best (b1, b2, sigma) for minmax(b1 * local + b2 * global), local being
    a1 S + a2 T z-scored over all frames then smoothed over the concatenation."""
    local_raw = zscore(a1 * scores.concat("spatial") + a2 * scores.concat("temporal"))
    labels = scores.concat("labels")
    best = None
    for sigma in sigmas:
        local = smooth(local_raw, sigma)
        glob = global_stream(scores.highlevel, sigma)
        for b1 in weights:
            b2 = complement(b1)
            value = micro_auroc(minmax(b1 * local + b2 * glob), labels)
            if best is None or value > best.auroc:
                best = TotalBest(value, b1, b2, sigma)
    return best


def published_protocol(scores):
    """Both searches of SPEC 7, plus the single-stream rows of the paper's Tables 2 and 5
    (sigma searched, weight fixed at 1.0 / 0.0). Everything here is tuned on the test labels."""
    local = search_local(scores)
    total = search_total(scores, local.a1, local.a2)
    return {
        "local": local,
        "spatial_only": search_local(scores, weights=(1.0,)),
        "temporal_only": search_local(scores, weights=(0.0,)),
        "global_only": search_total(scores, local.a1, local.a2, weights=(0.0,)),
        "total": total,
        "weights": FusionWeights(local.a1, local.a2, total.b1, total.b2, total.sigma),
    }


def evaluate(scores, fixed_weights):
    """All results as a JSON-ready dict: the published protocol (test-tuned) and every stream
    at the protocol's weights and at ``fixed_weights`` (chosen in advance)."""
    protocol = published_protocol(scores)
    labels = scores.concat("labels")
    return {
        "n_videos": len(scores.names),
        "n_frames": int(labels.size),
        "n_anomalous_frames": int(labels.sum()),
        "protocol": {
            **{key: asdict(value) for key, value in protocol.items()},
            "streams": evaluate_streams(scores, protocol["weights"]),
        },
        "fixed": {
            "weights": asdict(fixed_weights),
            "streams": evaluate_streams(scores, fixed_weights),
        },
    }


@dataclass
class SavedEvaluation:
    scores: VideoScores
    fused: dict          # stream name -> list of per-video vectors (may be empty)
    results: dict
    metadata: dict


_SCORE_FIELDS = ("spatial", "temporal", "highlevel", "labels")


def save_results(path_npz, path_json, scores, results, metadata=None, fused=None):
    """Write per-frame scores (npz: names, lengths, the concatenated S, T, H, labels and any
    ``fused`` per-video vectors as ``fused_<name>``) and results + caller metadata (json)."""
    arrays = {field: scores.concat(field) for field in _SCORE_FIELDS}
    arrays.update({f"fused_{name}": np.concatenate(x) for name, x in (fused or {}).items()})
    with atomic_path(path_npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, names=np.array(scores.names, dtype=str),
                 lengths=np.array(scores.lengths, dtype=np.int64), **arrays)
    document = {"metadata": metadata or {}, "results": results}
    with atomic_path(path_json) as tmp, open(tmp, "w") as f:
        json.dump(document, f, indent=2, allow_nan=False)


def load_results(path_npz, path_json):
    """Read back what ``save_results`` wrote."""
    for path in (path_npz, path_json):
        if not Path(path).is_file():
            raise VPCError(f"{path} not found: run the Memorization stage first to write it")
    with np.load(path_npz) as data:
        if not {"names", "lengths", *_SCORE_FIELDS} <= set(data.files):
            raise VPCError(f"{path_npz} is not a saved evaluation: rerun the Memorization stage")
        split_at = np.cumsum(data["lengths"])[:-1]
        per_video = {key: np.split(data[key], split_at) for key in data.files
                     if key not in ("names", "lengths")}
        names = [str(x) for x in data["names"]]
    scores = VideoScores(names, *(per_video.pop(field) for field in _SCORE_FIELDS))
    fused = {key[len("fused_"):]: value for key, value in per_video.items()}
    with open(path_json) as f:
        document = json.load(f)
    return SavedEvaluation(scores, fused, document["results"], document["metadata"])


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.2f}"


def _weights_text(w):
    return f"a1={w['a1']}, a2={w['a2']}, b1={w['b1']}, b2={w['b2']}, sigma={w['sigma']}"


def format_results(results, metadata=None):
    """A short markdown report of ``evaluate``'s results."""
    metadata = metadata or {}
    protocol, fixed = results["protocol"], results["fixed"]
    lines = []
    if metadata.get("random_weights"):
        lines += ["> **WARNING: made with random (not pretrained) weights; "
                  "these numbers say nothing about the method.**", ""]
    if metadata:
        settings = ", ".join(f"{key}={value}" for key, value in metadata.items())
        lines += textwrap.wrap(f"settings: {settings}", width=100, break_on_hyphens=False) + [""]
    lines += [f"- test videos: {results['n_videos']}, frames: {results['n_frames']}, "
              f"anomalous frames: {results['n_anomalous_frames']}", ""]
    lines += ["Published protocol (weights and sigma tuned on the test labels, as the paper's "
              "tables were made; micro AUROC %):", "",
              "| score | AUROC | chosen |", "|---|---|---|"]
    rows = (("spatial (a1=1.0)", "spatial_only", ("sigma",)),
            ("temporal (a1=0.0)", "temporal_only", ("sigma",)),
            ("local (spatial+temporal)", "local", ("a1", "a2", "sigma")),
            ("global (b1=0.0)", "global_only", ("sigma",)),
            ("total (local+global)", "total", ("b1", "b2", "sigma")))
    for title, key, shown in rows:
        chosen = ", ".join(f"{name}={protocol[key][name]}" for name in shown)
        lines.append(f"| {title} | {_pct(protocol[key]['auroc'])} | {chosen} |")
    lines += ["", "Per stream (AUROC %; macro = mean over videos with both classes):",
              f"protocol weights: {_weights_text(protocol['weights'])}; "
              f"fixed weights (chosen in advance): {_weights_text(fixed['weights'])}", "",
              "| stream | protocol micro | protocol macro | fixed micro | fixed macro |",
              "|---|---|---|---|---|"]
    for name in STREAMS:
        p, q = protocol["streams"][name], fixed["streams"][name]
        lines.append(f"| {STREAM_TITLES[name]} | {_pct(p['micro'])} | {_pct(p['macro'])} "
                     f"| {_pct(q['micro'])} | {_pct(q['macro'])} |")
    skipped = fixed["streams"]["total"]["macro_skipped"]
    if skipped:
        lines += ["", f"macro AUROC skips {skipped} single-class video(s) "
                      f"of {results['n_videos']}."]
    return "\n".join(lines) + "\n"
