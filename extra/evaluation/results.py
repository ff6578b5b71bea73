"""A run's saved evaluation: per-frame scores (``scores.npz``) and results with the settings they
were made with (``results.json``), read back without features or models, and the markdown report.
"""
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extra.errors import VPCError
from extra.evaluation.regions import CONVENTIONS
from extra.evaluation.scores import VideoScores
from extra.io import atomic_path

# The banks of a scores file written before files named their banks: VideoPatchCore's three.
UNNAMED_BANKS = {"spatial": "local", "temporal": "local", "highlevel": "global"}

# File names of a run's saved evaluation, inside its results folder.
SCORES_FILE, RESULTS_FILE = "scores.npz", "results.json"


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
    banks = [str(b) for b in arrays.pop("banks", UNNAMED_BANKS)]
    streams = dict(zip(banks, (str(s) for s in arrays.pop("bank_streams", UNNAMED_BANKS.values()))))
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
    if set(w) != {"a1", "a2", "b1", "b2", "sigma"}:      # another method's weights: each as it is named
        return ", ".join(f"{key}={value}" for key, value in w.items())
    return f"a1={w['a1']}, a2={w['a2']}, b1={w['b1']}, b2={w['b2']}, sigma={w['sigma']}"


def _convention_text(name):
    if name is None:    # results saved before the convention was recorded
        return "not recorded"
    return f"{name}: {CONVENTIONS[name]}" if name in CONVENTIONS else name


def _choice_text(free):
    choice = free.get("calibration", {}).get("weights_choice")
    if not choice:          # another method's calibration, or one made before the choice was recorded
        return ""
    how = "the pseudo-anomalies' best" if choice["kept"] == "grid_best" else "the neutral prior kept"
    worse = f"; the grid's best is worse on {', '.join(choice['grid_best_worse_on'])}" \
        if choice["grid_best_worse_on"] else ""
    return (f" ({how}: pseudo-anomaly AUROC {choice['grid_best_auroc']:.3f} at the grid's best, "
            f"{choice['prior_auroc']:.3f} at the prior, margin {choice['margin']:.3f}{worse})")


def alarms_text(free):
    """The label-free alarms in words: the measured false-alarm rate beside the target, the clip-by-clip
    (live) ones where they differ, and what the held-out footage cannot support."""
    alarms, target = free["alarms"], free["target_false_alarm_rate"]
    measured, spread = alarms["false_alarm_rate"], free.get("measured_false_alarm")
    ratio = ""
    if measured is not None:
        interval = "" if spread is None else (f"; 95% interval {100 * spread['interval'][0]:.2g}-"
                                              f"{100 * spread['interval'][1]:.2g}% over {spread['normal']} "
                                              f"normal test {spread['unit']}")
        ratio = f" ({measured / target:.2g} x the target{interval})"
    text = (f"Label-free alarms (total > {free['threshold']:.4g}, set for {100 * target:g}% false alarms on normal "
            f"held-out training frames): {_pct(measured)}% of normal test frames{ratio}, "
            f"{_pct(alarms['detection_rate'])}% of anomalous test frames.")
    live = free.get("clip_alarms")
    if live:
        text += (f" Clip by clip (unsmoothed, as live scoring alarms): {_pct(live['false_alarm_rate'])}% of normal, "
                 f"{_pct(live['detection_rate'])}% of anomalous test frames.")
    note = free.get("calibration", {}).get("support", {}).get("note")
    return text + (f" Note: {note}." if note else "")


def format_results(results, metadata=None, titles=None, protocol_note=None):
    """A short markdown report of ``evaluate``'s results; ``titles``: how to name each stream (its name
    by default); ``protocol_note``: what the method's published protocol does (its MethodEvaluation's
    ``protocol_note``; default: VideoPatchCore's wording, weights and sigma tuned on the test labels)."""
    metadata = metadata or {}

    def title(name):
        return (titles or {}).get(name, name)

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
    heading = protocol_note or "weights and sigma tuned on the test labels, as the paper's tables were made"
    lines += [f"Published protocol ({heading}; micro AUROC %):", "",
              "| score | AUROC | chosen |", "|---|---|---|"]
    for name in fixed["streams"]:        # the streams' order: banks, each fused stream after its inputs
        key = f"{name}_only" if f"{name}_only" in protocol else name
        if key in protocol:
            row_title = f"{title(name)} alone" if key.endswith("_only") else title(name)
            chosen = ", ".join(f"{field}={value}" for field, value in protocol[key].items() if field != "auroc")
            lines.append(f"| {row_title} | {_pct(protocol[key]['auroc'])} | {chosen} |")
    protocol_weights = _weights_text(protocol["weights"]) if "weights" in protocol else "none (no fusion)"
    choice = "chosen on the test labels" if protocol_note is None else f"({protocol_note})"
    columns = {"protocol": protocol, "fixed": fixed}
    if "label_free" in results:
        columns["label-free"] = results["label_free"]
    lines += ["", "Per stream (AUROC %; macro = mean over videos with both classes, padded = every video "
                  "padded with a normal frame at 0 and an anomalous one at the largest float, as AI-VAD):",
              f"- protocol: weights {protocol_weights} {choice}; labels {results['labels']['protocol']}",
              f"- fixed: weights {_weights_text(fixed['weights'])} chosen in advance; labels "
              f"{results['labels']['fixed']}"]
    if "label_free" in results:
        free = results["label_free"]
        held_out = free.get("calibration", {}).get("held_out")
        held_out = f" (held out: {', '.join(held_out)})" if held_out else ""
        lines.append(f"- label-free: weights {_weights_text(free['weights'])}{_choice_text(free)}, per-bank "
                     f"normalisation and alarm threshold chosen on training videos only{held_out}; labels "
                     f"{results['labels']['fixed']}")
    header = " | ".join(f"{name} {kind}" for name in columns for kind in ("micro", "macro", "padded"))
    lines += ["", f"| stream | {header} |", "|---|" + "---|" * (3 * len(columns))]
    for name in fixed["streams"]:
        cells = [_pct(column["streams"][name][kind]) for column in columns.values()
                 for kind in ("micro", "macro", "macro_padded")]
        lines.append(f"| {title(name)} | " + " | ".join(cells) + " |")
    free = results.get("label_free", {})
    if free.get("alarms"):
        lines += ["", alarms_text(free)]
    regions = results.get("regions")
    if regions:
        lines += ["", f"Region metrics (RBDC / TBDC, Ramachandra and Jones 2020; every object a region on each "
                      f"frame of its clip, scored {regions['object_score']}): RBDC {_pct(regions['rbdc'])}%, "
                      f"TBDC {_pct(regions['tbdc'])}% ({regions['tracks']} tracks, {regions['regions']} regions, "
                      f"{regions['detections']} detections over {regions['frames']} frames); area convention "
                      f"{_convention_text(regions.get('convention'))}."]
    skipped = max(stream["macro_skipped"] for stream in fixed["streams"].values())
    if skipped:
        lines += ["", f"macro AUROC skips {skipped} single-class video(s) "
                      f"of {results['n_videos']}."]
    return "\n".join(lines) + "\n"


def report(out, saved, method, titles, note="", figures=None):
    """Save a method's evaluation (``saved``: SavedEvaluation) in ``out``, print its report (``note``
    after it) and, with ``figures`` ((dataset, styles)), draw its score figures."""
    save_results(out / SCORES_FILE, out / RESULTS_FILE, saved.scores, saved.results, saved.metadata, fused=saved.fused)
    print(format_results(saved.results, saved.metadata, titles, method.protocol_note) + note, flush=True)
    rate = saved.metadata.get("test_frames_per_second")
    if rate:
        print(f"scored {saved.results['n_frames']} test frames at {rate:.2f} frames/s", flush=True)
    print(f"scores and results: {out}", flush=True)
    if figures is not None:
        from extra.evaluation.curves import score_figures   # matplotlib, only when figures are asked for

        written = score_figures(saved, saved.fused, out, *figures)
        print(f"{len(written)} score figures: {out / 'scores'}", flush=True)
