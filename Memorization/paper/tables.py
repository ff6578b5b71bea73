"""The paper's tables 2 to 7 and its appendix table: what each row measures, the published value
beside it, and the markdown that shows both. Plain data and formatting; ``reproduce.py`` runs
the configurations.

Published values: SPEC section 9 and the authors' slides (shared/seeds/004_*.txt), AUROC % and
frames per second. Where the paper gives no value for a dataset the cell says so.
"""
from dataclasses import dataclass

from extra.errors import VPCError

TABLE_KEYS = ("2", "3", "4", "5", "6", "7", "appendix")


DATASET_TITLES = {"avenue": "Avenue", "shanghai": "SHTech", "iitb": "Corridor"}


RATIOS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.99)          # Table 6 and the appendix


ORDER_RATIOS = (0.1, 0.99)                            # Table 7


ORDER_TITLES = {"subsample_then_concat": "Subsampling -> concat", "concat_then_subsample": "Concat -> subsampling"}


NOT_IN_PAPER = "—"


# Which result each metric reads: the published protocol's entry and the stream of the
# fixed-weight evaluation (extra.evaluation).
METRICS = {
    "spatial": ("spatial_only", "spatial"),
    "temporal": ("temporal_only", "temporal"),
    "local": ("local", "local"),
    "global": ("highlevel_only", "highlevel"),
    "total": ("total", "total"),
}


METRIC_TITLES = {"spatial": "Spatial", "temporal": "Temporal", "local": "Spatial+Temporal (local)",
                 "global": "High-level (global)", "total": "Local+Global (total)"}


# --- published values (AUROC %) ---------------------------------------------------------------------
TABLE2 = {"avenue": {"spatial": 84.8, "temporal": 66.9, "local": 90.3},
          "shanghai": {"spatial": 74.7, "temporal": 78.8, "local": 84.8},
          "iitb": {"spatial": 70.5, "temporal": 73.5, "local": 76.3}}


TABLE3 = {"avenue": {"head": 82.7, "random": 85.9, "split": 90.3},
          "shanghai": {"head": 76.9, "random": 83.8, "split": 84.8},
          "iitb": {"head": 74.9, "random": 74.8, "split": 76.3}}


TABLE4 = {"avenue": {"avg": 84.9, "max": 88.2, "mismatched": 90.3},
          "shanghai": {"avg": 76.1, "max": 83.8, "mismatched": 84.8},
          "iitb": {"avg": 74.7, "max": 75.7, "mismatched": 76.3}}


TABLE5 = {"avenue": {"local": 90.3, "global": 84.4, "total": 92.8},
          "shanghai": {"local": 84.8, "global": 68.4, "total": 85.1},
          "iitb": {"local": 76.3, "global": 67.2, "total": 76.4}}


# Table 6: ratio -> frames per second (the slides; the paper gives none for Avenue).
TABLE6_FPS = {"shanghai": dict(zip(RATIOS, (170.9, 154.8, 96.1, 54.8, 39.6, 31.0))),
              "iitb": dict(zip(RATIOS, (143.4, 113.5, 60.0, 40.0, 25.2, 19.5)))}


# Table 7: (bank order, ratio) -> AUROC (SHTech and Corridor only).
TABLE7 = {"shanghai": {("subsample_then_concat", 0.1): 85.0, ("subsample_then_concat", 0.99): 85.1,
                       ("concat_then_subsample", 0.1): 84.9, ("concat_then_subsample", 0.99): 85.0},
          "iitb": {("subsample_then_concat", 0.1): 76.4, ("subsample_then_concat", 0.99): 76.4,
                   ("concat_then_subsample", 0.1): 76.3, ("concat_then_subsample", 0.99): 76.4}}


# Appendix: per-bank AUROC for each ratio of RATIOS. Table 6's AUROCs are its "total" row.
APPENDIX = {
    "avenue": {"spatial": (84.8, 83.1, 82.8, 82.5, 82.8, 82.8), "temporal": (66.9,) * 6,
               "global": (84.4, 84.5, 84.8, 84.4, 84.4, 84.4), "total": (92.8, 91.8, 91.4, 91.2, 91.2, 91.2)},
    "shanghai": {"spatial": (74.8, 74.4, 74.7, 74.7, 74.6, 74.6), "temporal": (78.8,) * 6,
                 "global": (67.1, 67.5, 68.4, 67.3, 67.3, 67.4), "total": (84.6, 85.0, 85.1, 85.1, 85.1, 85.1)},
    "iitb": {"spatial": (69.0, 70.5, 70.5, 70.5, 70.6, 70.5), "temporal": (73.5,) * 6,
             "global": (66.4, 67.2, 67.3, 67.4, 67.5, 66.0), "total": (76.0, 76.4, 76.3, 76.3, 76.3, 76.4)},
}


@dataclass(frozen=True)
class Variant:
    """What a configuration changes from the base options; None keeps the base's setting."""

    compression: str = None
    temporal_pooling: str = None
    bank_order: str = None
    ratio: float = None             # one coreset ratio for the three banks


@dataclass(frozen=True)
class Row:
    cells: tuple                    # the row's label cells
    variant: Variant
    metric: str                     # a key of METRICS
    paper: float = None             # AUROC %, None where the paper gives none
    paper_fps: float = None


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    label_columns: tuple
    rows: tuple
    fps: bool = False


def _pct(ratio):
    return f"{100 * ratio:g}%"


def build_table(key, dataset):
    """The rows of table ``key`` (one of TABLE_KEYS) for ``dataset``, with the paper's values."""
    base = Variant()
    if key == "2":
        paper = TABLE2[dataset]
        titles = {"spatial": "Spatial", "temporal": "Temporal", "local": "Spatial+Temporal"}
        return Table(key, "spatial and temporal memory", ("memory",),
                     tuple(Row((titles[m],), base, m, paper[m]) for m in paper))
    if key == "3":
        paper = TABLE3[dataset]
        titles = {"head": "Head (first c' channels)", "random": "Random (c' random channels)", "split": "Split pool"}
        return Table(key, "channel compression (local stream, spatial+temporal)", ("compression",),
                     tuple(Row((titles[c],), Variant(compression=c), "local", paper[c]) for c in paper))
    if key == "4":
        paper = TABLE4[dataset]
        titles = {"avg": "Avg pool", "max": "Max pool", "mismatched": "Mismatched pool (avg memorising, max inference)"}
        return Table(key, "temporal patch pooling (local stream, spatial+temporal)", ("pooling",),
                     tuple(Row((titles[m],), Variant(temporal_pooling=m), "local", paper[m]) for m in paper))
    if key == "5":
        paper = TABLE5[dataset]
        titles = {"local": "Local", "global": "Global", "total": "Local+Global"}
        return Table(key, "local and global streams", ("stream",),
                     tuple(Row((titles[m],), base, m, paper[m]) for m in paper))
    if key == "6":
        fps = TABLE6_FPS.get(dataset, {})
        return Table(key, "coreset subsampling ratio (total score) and speed", ("ratio",),
                     tuple(Row((_pct(r),), Variant(ratio=r), "total", APPENDIX[dataset]["total"][i], fps.get(r))
                           for i, r in enumerate(RATIOS)), fps=True)
    if key == "7":
        paper = TABLE7.get(dataset, {})
        return Table(key, "memorising technique (total score)", ("technique", "ratio"),
                     tuple(Row((ORDER_TITLES[order], _pct(r)), Variant(bank_order=order, ratio=r), "total",
                               paper.get((order, r)))
                           for order in ORDER_TITLES for r in ORDER_RATIOS))
    if key == "appendix":
        paper = APPENDIX[dataset]
        return Table(key, "per-bank AUROC for each coreset ratio", ("ratio", "score"),
                     tuple(Row((_pct(r), METRIC_TITLES[m]), Variant(ratio=r), m, paper[m][i])
                           for i, r in enumerate(RATIOS) for m in paper))
    raise VPCError(f"unknown table {key!r}; choose one of: {', '.join(TABLE_KEYS)}, all")


@dataclass(frozen=True)
class Measured:
    auroc: float                    # published protocol, fraction
    fixed: float                    # fixed-weight micro AUROC, fraction
    fps: float = None
    label_free: float = None        # micro AUROC with the label-free calibration, fraction


def measured_from_results(results, metric, fps=None):
    """Measured values of ``metric`` from ``evaluation.evaluate``'s results: protocol, fixed weights and,
    when the run was calibrated, label-free micro AUROC."""
    protocol_key, stream = METRICS[metric]
    label_free = results.get("label_free", {}).get("streams", {}).get(stream, {}).get("micro")
    return Measured(results["protocol"][protocol_key]["auroc"], results["fixed"]["streams"][stream]["micro"],
                    fps, label_free)


def _paper_cell(value):
    return NOT_IN_PAPER if value is None else f"{value:.1f}"


def format_table(table, dataset, measured, notes=()):
    """Markdown of ``table`` with ``measured`` (one Measured per row) beside the paper's values.

    ``notes`` are lines printed under the caption (settings, warnings, how FPS was measured).
    """
    heading = f"### Table {table.key} ({DATASET_TITLES[dataset]}): {table.title}"
    if table.key == "appendix":
        heading = f"### Appendix table ({DATASET_TITLES[dataset]}): {table.title}"
    columns = [*table.label_columns, "AUROC % measured", "AUROC % paper", "AUROC % fixed weights"]
    label_free = any(value.label_free is not None for value in measured)
    if label_free:
        columns.append("AUROC % label-free")
    if table.fps:
        columns += ["FPS measured", "FPS paper"]
    lines = [heading, "", *notes, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row, value in zip(table.rows, measured):
        cells = [*row.cells, f"{100 * value.auroc:.1f}", _paper_cell(row.paper), f"{100 * value.fixed:.1f}"]
        if label_free:
            cells.append("n/a" if value.label_free is None else f"{100 * value.label_free:.1f}")
        if table.fps:
            cells += [f"{value.fps:.1f}", _paper_cell(row.paper_fps)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
