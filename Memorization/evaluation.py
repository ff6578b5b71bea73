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
# File names of a run's saved evaluation, inside its results folder.
SCORES_FILE, RESULTS_FILE = "scores.npz", "results.json"
# The fusion of SPEC 7, defined on the published banks: local = a1 S + a2 T, total = b1 local + b2 H.
# A bank outside it (a new BankSpec) is evaluated on its own.
LOCAL_FUSION = ("spatial", "temporal")
GLOBAL_FUSION = "highlevel"
PUBLISHED_STREAMS = {"spatial": "local", "temporal": "local", "highlevel": "global"}
STREAM_TITLES = {
    "spatial": "spatial",
    "temporal": "temporal",
    "local": "local (spatial+temporal)",
    "highlevel": "global (high-level)",
    "total": "total (local+global)",
}


def title(name):
    return STREAM_TITLES.get(name, name)


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
    """Per-frame scores of the test videos in video order: per bank a vector per video; ``streams``
    says which stream each bank reads ("local" | "global"). ``labels`` are cut from the start of each
    video to the length of its scores, as the published protocol does; ``aligned`` are the labels of
    the frames actually scored (they differ where clips start after the first frame: IITB), None
    when they are the same. Both None where there are no labels."""

    names: list
    banks: dict
    streams: dict
    labels: list = None
    aligned: list = None

    @property
    def aligned_labels(self):
        return self.labels if self.aligned is None else self.aligned

    @property
    def lengths(self):
        return [len(x) for x in next(iter(self.banks.values()))]

    def concat(self, bank):
        return np.concatenate(self.banks[bank])

    def all_labels(self):
        return np.concatenate(self.labels)

    def split(self, x):
        """Cut a vector over all frames back into per-video pieces."""
        return np.split(x, np.cumsum(self.lengths)[:-1])

    @property
    def fusable(self):
        """Whether the published fusion applies: its banks are all there."""
        return all(bank in self.banks for bank in (*LOCAL_FUSION, GLOBAL_FUSION))


def make_video_scores(per_bank, labels, names=None, streams=None, first_frames=None):
    """Check and pack per-video scores ({bank: [vector per video]}); each label vector is cut, from
    its start, to the length of its video's scores (the last ``len mod d`` frames have no score), and
    also aligned with the frames scored: from ``first_frames[v]`` (the first frame with a clip) on."""
    names = [str(i + 1) for i in range(len(labels))] if names is None else [str(x) for x in names]
    streams = streams or PUBLISHED_STREAMS
    n = len(names)
    if n == 0:
        raise VPCError("no test video to evaluate: check the test split and the ground truth")
    counts = {bank: len(vectors) for bank, vectors in per_bank.items()}
    if any(count != n for count in counts.values()) or len(labels) != n:
        found = ", ".join(f"{count} {bank}" for bank, count in counts.items())
        raise VPCError(f"evaluation needs one score vector of each bank and one label vector per video; got "
                       f"{found}, {len(labels)} label vectors, {n} names")
    packed = VideoScores(names, {bank: [] for bank in per_bank}, {bank: streams[bank] for bank in per_bank}, [], [])
    for v, (name, y) in enumerate(zip(names, labels)):
        vectors = {bank: np.asarray(per_bank[bank][v], dtype=np.float64).ravel() for bank in per_bank}
        y = np.asarray(y).ravel()
        lengths = {len(x) for x in vectors.values()}
        if len(lengths) != 1:
            found = ", ".join(f"{bank} {len(x)}" for bank, x in vectors.items())
            raise VPCError(f"video {name}: the banks' scores have different lengths ({found}); "
                           f"they must have the same length")
        length = lengths.pop()
        if len(y) < length:
            raise VPCError(f"video {name}: {len(y)} labels for {length} scored frames; "
                           f"the ground truth must cover every frame of the video")
        if not all(np.isfinite(x).all() for x in vectors.values()):
            raise VPCError(f"video {name}: scores contain NaN or infinity; recompute the scores")
        if not np.isin(y, (0, 1)).all():
            raise VPCError(f"video {name}: labels must be 0 (normal) or 1 (anomalous)")
        first = 0 if first_frames is None else first_frames[v]
        if len(y) < first + length:
            raise VPCError(f"video {name}: {len(y)} labels for {length} scored frames from frame {first}; "
                           f"the ground truth must cover every frame of the video")
        for bank, x in vectors.items():
            packed.banks[bank].append(x)
        packed.labels.append(y[:length].astype(np.int64))
        packed.aligned.append(y[first:first + length].astype(np.int64))
    if all(np.array_equal(a, b) for a, b in zip(packed.aligned, packed.labels)):
        packed.aligned = None
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


def padded_macro_auroc(scores_per_video, labels_per_video, high):
    """AI-VAD's per-video convention: every video gets one normal frame scored 0 and one anomalous
    frame scored ``high`` (the stream's maximum) appended, so each has both classes; the mean over
    all videos."""
    return float(np.mean([micro_auroc(np.append(s, (0.0, high)), np.append(y, (0, 1)))
                          for s, y in zip(scores_per_video, labels_per_video)]))


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


def stream_aurocs(stream_vectors, scores, labels):
    """Micro AUROC and both macro conventions of every stream ({name: vector over all frames})."""
    all_labels = np.concatenate(labels)
    results = {}
    for name, x in stream_vectors.items():
        pieces = scores.split(x)
        macro = macro_auroc(pieces, labels)
        results[name] = {
            "micro": micro_auroc(x, all_labels),
            "macro": None if macro.n_videos == 0 else macro.auroc,
            "macro_videos": macro.n_videos,
            "macro_skipped": macro.n_skipped,
            "macro_padded": padded_macro_auroc(pieces, labels, float(np.max(x))),
        }
    return results


def evaluate_streams(scores, weights, labels=None):
    """Micro and macro AUROC of every bank and fused stream at the given weights (labels: the
    published cut unless given)."""
    return stream_aurocs(stream_scores(scores, weights), scores, scores.labels if labels is None else labels)


@dataclass(frozen=True)
class BankBest:
    auroc: float
    sigma: int


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


def search_bank(scores, bank, sigmas=SIGMAS):
    """A bank alone, as the paper's single-bank rows: the best sigma for min-max of ``bank_stream``."""
    labels = scores.all_labels()
    best = None
    for sigma in sigmas:
        value = micro_auroc(minmax(bank_stream(scores, bank, sigma)), labels)
        if best is None or value > best.auroc:
            best = BankBest(value, sigma)
    return best


def search_local(scores, weights=WEIGHTS, sigmas=SIGMAS):
    """Search 1 of the published protocol: best (a1, a2, sigma) for minmax(smooth(a1 S + a2 T)).

    Order sigma outer, a1 inner in the order given; the first best is kept (strictly greater
    wins). Each combination is filtered on its own, as the published code does, so ties are
    decided on the same floating-point values.
    """
    spatial, temporal = (scores.concat(bank) for bank in LOCAL_FUSION)
    labels = scores.all_labels()
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
    spatial, temporal = (scores.concat(bank) for bank in LOCAL_FUSION)
    local_raw = zscore(a1 * spatial + a2 * temporal)
    labels = scores.all_labels()
    best = None
    for sigma in sigmas:
        local = smooth(local_raw, sigma)
        glob = global_stream(scores.banks[GLOBAL_FUSION], sigma)
        for b1 in weights:
            b2 = complement(b1)
            value = micro_auroc(minmax(b1 * local + b2 * glob), labels)
            if best is None or value > best.auroc:
                best = TotalBest(value, b1, b2, sigma)
    return best


def published_protocol(scores):
    """Both searches of SPEC 7, and each bank alone with its sigma searched (the single-stream rows
    of the paper's Tables 2 and 5). Everything here is tuned on the test labels."""
    protocol = {f"{bank}_only": search_bank(scores, bank) for bank in scores.banks}
    if scores.fusable:
        local = search_local(scores)
        total = search_total(scores, local.a1, local.a2)
        protocol.update(local=local, total=total,
                        weights=FusionWeights(local.a1, local.a2, total.b1, total.b2, total.sigma))
    return protocol


LABEL_NOTES = {"published": "cut from the start of each video, as the published code does",
               "aligned": "the frames actually scored"}


def evaluate(scores, fixed_weights, calibration=None):
    """All results as a JSON-ready dict: the published protocol (test-tuned, published labels);
    every stream at the protocol's weights, at ``fixed_weights`` (chosen in advance) and, given a
    label-free ``calibration`` (Memorization.calibration), with its weights, normalisation and alarm
    threshold (these two with labels aligned to the scored frames)."""
    protocol = published_protocol(scores)
    labels = scores.all_labels()
    aligned = scores.aligned_labels
    results = {
        "n_videos": len(scores.names),
        "n_frames": int(labels.size),
        "n_anomalous_frames": int(labels.sum()),
        "labels": {"protocol": LABEL_NOTES["published"],
                   "fixed": LABEL_NOTES["published" if scores.aligned is None else "aligned"]},
        "protocol": {
            **{key: asdict(value) for key, value in protocol.items()},
            "streams": evaluate_streams(scores, protocol.get("weights", fixed_weights)),
        },
        "fixed": {
            "weights": asdict(fixed_weights),
            "streams": evaluate_streams(scores, fixed_weights, aligned),
        },
    }
    if calibration is not None:
        from Memorization.calibration import label_free_results   # the calibration imports this module

        results["label_free"] = label_free_results(scores, calibration)
    return results


@dataclass
class SavedEvaluation:
    scores: VideoScores
    fused: dict          # stream name -> list of per-video vectors (may be empty)
    results: dict
    metadata: dict


def save_results(path_npz, path_json, scores, results, metadata=None, fused=None):
    """Write per-frame scores (npz: names, lengths, the banks' names and streams, each bank's
    concatenated scores under its name, labels, aligned labels where they differ, and any ``fused``
    per-video vectors as ``fused_<name>``) and results + caller metadata (json)."""
    arrays = {bank: scores.concat(bank) for bank in scores.banks}
    if scores.aligned is not None:
        arrays["aligned_labels"] = np.concatenate(scores.aligned)
    arrays.update({f"fused_{name}": np.concatenate(x) for name, x in (fused or {}).items()})
    with atomic_path(path_npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, names=np.array(scores.names, dtype=str), lengths=np.array(scores.lengths, dtype=np.int64),
                 banks=np.array(list(scores.banks), dtype=str),
                 bank_streams=np.array([scores.streams[bank] for bank in scores.banks], dtype=str),
                 labels=scores.all_labels(), **arrays)
    document = {"metadata": metadata or {}, "results": results}
    with atomic_path(path_json) as tmp, open(tmp, "w") as f:
        json.dump(document, f, indent=2, allow_nan=False)


def load_results(path_npz, path_json):
    """Read back what ``save_results`` wrote (files without bank names hold the published three)."""
    for path in (path_npz, path_json):
        if not Path(path).is_file():
            raise VPCError(f"{path} not found: run the Memorization stage first to write it")
    remedy = "delete it and rerun the Memorization stage"
    try:
        with np.load(path_npz, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception:       # a zip or array that cannot be read is damage, whatever the exception
        raise VPCError(f"{path_npz} is damaged (not a readable .npz file); {remedy}") from None
    banks = [str(b) for b in arrays.pop("banks", PUBLISHED_STREAMS)]
    streams = dict(zip(banks, (str(s) for s in arrays.pop("bank_streams", PUBLISHED_STREAMS.values()))))
    if not {"names", "lengths", "labels", *banks} <= set(arrays):
        raise VPCError(f"{path_npz} is not a saved evaluation; {remedy}")
    lengths = arrays.pop("lengths")
    if any(len(arrays[key]) != lengths.sum() for key in arrays if key != "names"):
        raise VPCError(f"{path_npz} is damaged (its vectors do not cover the frames it lists); {remedy}")
    split_at = np.cumsum(lengths)[:-1]
    names = [str(x) for x in arrays.pop("names")]
    per_video = {key: np.split(value, split_at) for key, value in arrays.items()}
    scores = VideoScores(names, {bank: per_video.pop(bank) for bank in banks}, streams, per_video.pop("labels"),
                         per_video.pop("aligned_labels", None))
    fused = {key[len("fused_"):]: value for key, value in per_video.items()}
    try:
        with open(path_json) as f:
            document = json.load(f)
        return SavedEvaluation(scores, fused, document["results"], document["metadata"])
    except (ValueError, KeyError, TypeError):
        raise VPCError(f"{path_json} is damaged (not the JSON results of a run); {remedy}") from None


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
    rows = [(f"{title(key[:-len('_only')])} alone", key, ("sigma",)) for key in protocol if key.endswith("_only")]
    if "total" in protocol:
        rows[len(LOCAL_FUSION):len(LOCAL_FUSION)] = [("local (spatial+temporal)", "local", ("a1", "a2", "sigma"))]
        rows.append(("total (local+global)", "total", ("b1", "b2", "sigma")))
    for row_title, key, shown in rows:
        chosen = ", ".join(f"{name}={protocol[key][name]}" for name in shown)
        lines.append(f"| {row_title} | {_pct(protocol[key]['auroc'])} | {chosen} |")
    protocol_weights = _weights_text(protocol["weights"]) if "weights" in protocol else "none (no fusion)"
    columns = {"protocol": protocol, "fixed": fixed}
    if "label_free" in results:
        columns["label-free"] = results["label_free"]
    lines += ["", "Per stream (AUROC %; macro = mean over videos with both classes, padded = every video "
                  "padded with a normal frame at 0 and an anomalous one at the maximum, as AI-VAD):",
              f"- protocol: weights {protocol_weights} chosen on the test labels; labels "
              f"{results['labels']['protocol']}",
              f"- fixed: weights {_weights_text(fixed['weights'])} chosen in advance; labels "
              f"{results['labels']['fixed']}"]
    if "label_free" in results:
        free = results["label_free"]
        lines.append(f"- label-free: weights {_weights_text(free['weights'])}, per-bank normalisation and alarm "
                     f"threshold chosen on training videos only; labels {results['labels']['fixed']}")
    header = " | ".join(f"{name} {kind}" for name in columns for kind in ("micro", "macro", "padded"))
    lines += ["", f"| stream | {header} |", "|---|" + "---|" * (3 * len(columns))]
    for name in fixed["streams"]:
        cells = [_pct(column["streams"][name][kind]) for column in columns.values()
                 for kind in ("micro", "macro", "macro_padded")]
        lines.append(f"| {title(name)} | " + " | ".join(cells) + " |")
    alarms = results.get("label_free", {}).get("alarms")
    if alarms:
        lines += ["", f"Label-free alarms (total > {results['label_free']['threshold']:.4g}, set for "
                      f"{100 * results['label_free']['target_false_alarm_rate']:g}% false alarms on normal "
                      f"training frames): {_pct(alarms['false_alarm_rate'])}% of normal test frames, "
                      f"{_pct(alarms['detection_rate'])}% of anomalous test frames."]
    regions = results.get("regions")
    if regions:
        lines += ["", f"Region metrics (RBDC / TBDC, Ramachandra and Jones 2020; every object a region on each "
                      f"frame of its clip, scored {regions['object_score']}): RBDC {_pct(regions['rbdc'])}%, "
                      f"TBDC {_pct(regions['tbdc'])}% ({regions['tracks']} tracks, {regions['regions']} regions, "
                      f"{regions['detections']} detections over {regions['frames']} frames)."]
    skipped = max(stream["macro_skipped"] for stream in fixed["streams"].values())
    if skipped:
        lines += ["", f"macro AUROC skips {skipped} single-class video(s) "
                      f"of {results['n_videos']}."]
    return "\n".join(lines) + "\n"
