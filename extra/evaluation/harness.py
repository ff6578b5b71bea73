"""One evaluation for every method: the three columns of AUROC from named per-frame score streams.

A method hands the harness its test videos' per-frame scores (``extra.evaluation.scores.VideoScores``:
named streams per video, with the labels of the frames they cover) and a ``MethodEvaluation``: how
its streams fuse at given weights, how a label-free calibration maps them, and its published
protocol. The harness computes, for every stream, micro, macro and padded macro AUROC
(extra.evaluation.metrics) in three columns:

- **protocol**: the method's published protocol, whatever it tunes on the test labels;
- **fixed**: weights chosen in advance;
- **label-free**: a calibration made on training videos alone, with its alarm threshold.

The protocol column cuts each video's labels from its start, as published code does; the other two
use the labels of the frames actually scored. The results are a JSON-ready dict
(extra.evaluation.results writes, reads and formats it).
"""
from dataclasses import asdict, dataclass, is_dataclass
from typing import Callable

import numpy as np

from extra.evaluation.alarms import alarm_rates, measured_rate_interval
from extra.evaluation.fusion import unsmoothed
from extra.evaluation.metrics import stream_aurocs

LABEL_NOTES = {"published": "cut from the start of each video, as the published code does",
               "aligned": "the frames actually scored"}


@dataclass(frozen=True)
class MethodEvaluation:
    """What the harness needs of a method."""

    name: str
    streams: Callable        # (VideoScores, weights) -> {stream: vector over all frames}, normalised on the scored set
    calibrated: Callable     # (VideoScores, calibration dict) -> the same streams, nothing of the scored set used
    protocol: Callable       # VideoScores -> {row: dataclass}, tuned on the test labels; "weights" if it fuses
    weights: Callable        # a weights record (dict) -> the weights ``streams`` takes
    protocol_note: str = ""  # what the protocol tunes, in words
    total: str = "total"     # the fused stream that alarms threshold


def evaluate_streams(scores, method, weights, labels=None):
    """Micro and macro AUROC of every bank and fused stream at the given weights (labels: the
    published cut unless given)."""
    return stream_aurocs(method.streams(scores, weights), scores, scores.labels if labels is None else labels)


def evaluate(scores, method, fixed_weights, calibration=None):
    """All results as a JSON-ready dict: the method's published protocol (test-tuned, published
    labels); every stream at the protocol's weights, at ``fixed_weights`` (chosen in advance) and,
    given a label-free ``calibration``, with its weights, normalisation and alarm threshold (these
    two with labels aligned to the scored frames)."""
    protocol = method.protocol(scores)
    labels = scores.all_labels()
    aligned = scores.aligned_labels
    results = {
        "n_videos": len(scores.names),
        "n_frames": int(labels.size),
        "n_anomalous_frames": int(labels.sum()),
        "labels": {"protocol": LABEL_NOTES["published"],
                   "fixed": LABEL_NOTES["published" if scores.aligned is None else "aligned"]},
        "protocol": {
            **{key: asdict(value) if is_dataclass(value) else value for key, value in protocol.items()},
            "streams": evaluate_streams(scores, method, protocol.get("weights", fixed_weights)),
        },
        "fixed": {
            "weights": asdict(fixed_weights),
            "streams": evaluate_streams(scores, method, fixed_weights, aligned),
        },
    }
    if calibration is not None:
        results["label_free"] = label_free_results(scores, method, calibration)
    return results


def label_free_results(scores, method, calibration):
    """The label-free column: AUROCs of the calibrated streams, and what the alarm threshold does on
    the scored videos (labels aligned with the scored frames): ``measured_false_alarm_rate`` on the
    normal frames beside ``target_false_alarm_rate`` with its 95 % interval (``measured_false_alarm``:
    counted in the calibration's clips, one frame where it has none), and, for a smoothed fusion,
    ``clip_alarms``: the unsmoothed total against the clip threshold, as clip-by-clip (live) scoring
    alarms. JSON-ready."""
    labels = scores.aligned_labels
    streams = method.calibrated(scores, calibration)
    results = {"weights": calibration["weights"], "threshold": calibration["threshold"],
               "target_false_alarm_rate": calibration["false_alarm_rate"],
               "streams": stream_aurocs(streams, scores, labels), "calibration": calibration}
    if method.total in streams:
        y = np.concatenate(labels)
        results["alarms"] = alarm_rates(streams[method.total], calibration["threshold"], y)
        results["measured_false_alarm_rate"] = results["alarms"]["false_alarm_rate"]
        if results["measured_false_alarm_rate"] is not None:
            results["measured_false_alarm"] = measured_rate_interval(
                results["measured_false_alarm_rate"], int((y == 0).sum()), calibration.get("clip_frames", 1))
        if calibration["weights"].get("sigma"):
            live = method.calibrated(scores, unsmoothed(calibration))[method.total]
            results["clip_alarms"] = alarm_rates(live, calibration["clip_threshold"], y)
    return results
