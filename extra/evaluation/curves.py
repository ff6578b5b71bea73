"""Score curves of any method's saved results: per test video, a line per stream with the ground-truth
anomalies shaded, and the AUROC of the fused stream in the title. The method names its lines'
colours and labels (``styles``: stream -> (colour, label)); a stream it does not name is drawn grey.
Figures render with matplotlib's Agg (no pyplot, no display) and are written atomically.
"""
import numpy as np
from matplotlib.figure import Figure

from extra.datasets import intervals_from_labels
from extra.evaluation.metrics import micro_auroc
from extra.io import atomic_path
from extra.progress import progress

DPI = 100
TOTAL = "total"                   # the fused stream
TOTAL_COLOUR = "black"
FALLBACK_COLOUR = "tab:gray"      # a line no style describes
RANDOM_NOTE = "RANDOM WEIGHTS (not pretrained): these scores say nothing about the method"


def shaded_spans(labels):
    """(x0, x1) of each run of anomalous frames, frame t drawn at x = t and spanning t - 0.5 .. t + 0.5."""
    starts, ends = intervals_from_labels(labels)          # 1-based, inclusive
    return [(start - 1.5, end - 0.5) for start, end in zip(starts.tolist(), ends.tolist())]


def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    return path


def set_title(fig, heading, metadata):
    """The figure's title, with the random-weights note (in red) when the run used them."""
    if metadata.get("random_weights"):
        fig.suptitle(f"{heading}\n{RANDOM_NOTE}", color="red")
    else:
        fig.suptitle(heading)


def line_style(name, styles):
    """Colour and legend label of a score line: as ``styles`` says, else its name, in black for the total
    and grey otherwise."""
    if name in styles:
        return styles[name]
    return (TOTAL_COLOUR if name == TOTAL else FALLBACK_COLOUR), name


def score_lines(scores, fused, v):
    """The lines of video ``v``'s figure: every stream of ``scores`` (VideoScores) in its order, then
    the total when the fusion made one; ``fused``: per-video vectors of every stream, normalised."""
    names = [*scores.banks, *([TOTAL] if TOTAL in fused else [])]
    return {name: fused[name][v] for name in names}


def plot_video_scores(name, lines, labels, dataset, metadata, styles=None):
    """One test video: a line per entry of ``lines`` (name -> per-frame vector), ground-truth
    anomalies shaded."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i, (x0, x1) in enumerate(shaded_spans(labels)):
        ax.axvspan(x0, x1, color="red", alpha=0.15, linewidth=0, label="anomalous (ground truth)" if i == 0 else None)
    frames = np.arange(len(labels))
    for line, values in lines.items():
        colour, label = line_style(line, styles or {})
        ax.plot(frames, values, color=colour, linewidth=1.2, label=label)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score (min-max, all test frames)")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.8)
    heading = f"{dataset}, test video {name}"
    if TOTAL in lines and labels.min() != labels.max():
        heading += f": AUROC of the total score {100 * micro_auroc(lines[TOTAL], labels):.1f}%"
    set_title(fig, heading, metadata)
    return fig


def score_figures(saved, fused, out_dir, dataset, styles=None):
    """A figure for every test video of ``saved`` (extra.evaluation.results.SavedEvaluation), its
    streams as in ``fused``; written to out_dir/scores/<video>.png; returns the paths."""
    written = []
    for v, name in enumerate(progress(saved.scores.names, "score figures")):
        fig = plot_video_scores(name, score_lines(saved.scores, fused, v), saved.scores.labels[v], dataset,
                                saved.metadata, styles)
        written.append(save_figure(fig, out_dir / "scores" / f"{name}.png"))
    return written
