"""TODO docstring"""
from dataclasses import asdict

import numpy as np

from extra.evaluation.fusion import calibrated_streams, stream_scores
from extra.evaluation.metrics import stream_aurocs
from extra.evaluation.protocol import published_protocol


def evaluate_streams(scores, weights, labels=None):
    """Micro and macro AUROC of every bank and fused stream at the given weights (labels: the
    published cut unless given)."""
    return stream_aurocs(stream_scores(scores, weights), scores, scores.labels if labels is None else labels)


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

        results["label_free"] = label_free_results(scores, calibration)
    return results


def label_free_results(scores, calibration):
    """The label-free column: AUROCs of the calibrated streams, and what the alarm threshold does on
    the scored videos (labels aligned with the scored frames). JSON-ready."""
    labels = scores.aligned_labels
    streams = calibrated_streams(scores, calibration)
    results = {"weights": calibration["weights"], "threshold": calibration["threshold"],
               "target_false_alarm_rate": calibration["false_alarm_rate"],
               "streams": stream_aurocs(streams, scores, labels), "calibration": calibration}
    if "total" in streams:
        y, alarms = np.concatenate(labels), streams["total"] > calibration["threshold"]
        results["alarms"] = {"false_alarm_rate": float(alarms[y == 0].mean()) if (y == 0).any() else None,
                             "detection_rate": float(alarms[y == 1].mean()) if (y == 1).any() else None}
    return results
