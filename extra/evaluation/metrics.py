"""Frame-level AUROC of per-frame scores against 0/1 labels: micro (all frames at once), macro (the
mean over the videos with both classes) and padded macro (AI-VAD's convention, every video counts).
"""
import sys
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import auc, roc_curve

from extra.errors import VPCError


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


def padded_macro_auroc(scores_per_video, labels_per_video):
    """AI-VAD's per-video convention (``macro_auc`` of its evaluate.py): every video gets one normal
    frame scored 0 and one anomalous frame scored ``sys.float_info.max`` appended, so each has both
    classes; the mean over all videos."""
    # The float maximum beats every real score: a pad at the stream's maximum would tie a normal top frame.
    return float(np.mean([micro_auroc(np.append(s, (0.0, sys.float_info.max)), np.append(y, (0, 1)))
                          for s, y in zip(scores_per_video, labels_per_video)]))


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
            "macro_padded": padded_macro_auroc(pieces, labels),
        }
    return results
