"""The comparison table's text: pure functions of the measured rows (comparison.run makes them).

A row is a plain dict (JSON-ready, as comparison.json stores it):

    {"method": "VideoPatchCore", "random_weights": False,
     "protocol": 0.871, "fixed": 0.853, "label_free": None,      # micro AUROC of the fused total, 0..1
     "train_seconds": 95.2, "test_fps": 3.41,
     "memory": {"spatial": [2940, 32], "temporal": [180, 32]},   # float32 rows x channels per bank / memory
     "parameters": None, "file_bytes": 751234,
     "sensitivity": {"label": "coreset scale", "values": [["0.5", 0.86], ["1", 0.871]]}}

Any value may be None (or missing): its cell reads "n/a".
"""
import textwrap

NOT_AVAILABLE = "n/a"
FLOAT32_BYTES = 4
# (header, the row's cell function, right-aligned)
COLUMNS = (
    ("method", lambda row: method_name(row), False),
    ("protocol %", lambda row: percent(row.get("protocol")), True),
    ("fixed %", lambda row: percent(row.get("fixed")), True),
    ("label-free %", lambda row: percent(row.get("label_free")), True),
    ("train s", lambda row: number(row.get("train_seconds"), 1), True),
    ("test FPS", lambda row: number(row.get("test_fps"), 2), True),
    ("memory", lambda row: memory_cell(row.get("memory")), False),
    ("parameters", lambda row: count(row.get("parameters")), True),
    ("file MB", lambda row: megabytes(row.get("file_bytes")), True),
    ("sensitivity: protocol AUROC %", lambda row: sensitivity_cell(row.get("sensitivity")), False),
    ("spread pp", lambda row: spread_cell(row.get("sensitivity")), True),
)


def method_name(row):
    """The row's method, marked when its numbers come from random weights."""
    return row["method"] + (" (RANDOM weights)" if row.get("random_weights") else "")


def percent(auroc):
    return NOT_AVAILABLE if auroc is None else f"{100 * auroc:.1f}"


def number(value, digits):
    return NOT_AVAILABLE if value is None else f"{value:.{digits}f}"


def count(value):
    return NOT_AVAILABLE if value is None else f"{value:,}"


def megabytes(n_bytes):
    return NOT_AVAILABLE if n_bytes is None else f"{n_bytes / 1e6:.3g}"


def memory_bytes(memory):
    """Bytes of float32 memory: the sum of rows x channels x 4."""
    return sum(rows * channels for rows, channels in memory.values()) * FLOAT32_BYTES


def memory_cell(memory):
    """``10 x 512, 0.0205 MB`` for one item set; ``2 x 2,000 x 256, 4.1 MB`` for several of one shape;
    ``3 banks, 3,240 rows, 0.74 MB`` for several of other shapes (their shapes are in ``memory_note``)."""
    if not memory:
        return NOT_AVAILABLE
    size = f"{memory_bytes(memory) / 1e6:.3g} MB"
    shapes = {tuple(shape) for shape in memory.values()}
    if len(shapes) == 1:
        (rows, channels), = shapes
        return f"{f'{len(memory)} x ' if len(memory) > 1 else ''}{rows:,} x {channels:,}, {size}"
    return f"{len(memory)} banks, {sum(rows for rows, _ in memory.values()):,} rows, {size}"


def memory_note(rows):
    """One line naming every row's memory, rows x channels each."""
    parts = [f"{method_name(row)}: " + ", ".join(f"{name} {r:,} x {c:,}" for name, (r, c) in row["memory"].items())
             for row in rows if row.get("memory")]
    return "Memory (float32 rows x channels): " + "; ".join(parts) + "." if parts else None


def sensitivity_values(sensitivity):
    return [value for _, value in (sensitivity or {}).get("values", ()) if value is not None]


def sensitivity_cell(sensitivity):
    """``msize 5=58.1, 10=60.2, 20=n/a``: the protocol AUROC % at each setting."""
    if not sensitivity or not sensitivity.get("values"):
        return NOT_AVAILABLE
    return f"{sensitivity['label']} " + ", ".join(f"{key}={percent(value)}" for key, value in sensitivity["values"])


def spread(sensitivity):
    """Max - min of the AUROCs measured (0..1), None with fewer than two."""
    values = sensitivity_values(sensitivity)
    return max(values) - min(values) if len(values) >= 2 else None


def spread_cell(sensitivity):
    value = spread(sensitivity)
    return NOT_AVAILABLE if value is None else f"{100 * value:.1f}"


def cells(rows):
    """The header and each row's cells, as strings."""
    return [header for header, _, _ in COLUMNS], [[cell(row) for _, cell, _ in COLUMNS] for row in rows]


def format_text(title, rows, notes=(), width=110):
    """The fixed-width table (terminal and log files): title, header, a rule, one line per row, then the
    notes wrapped at ``width``."""
    header, body = cells(rows)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(values):
        return " | ".join(value.rjust(w) if right else value.ljust(w)
                          for value, w, (_, _, right) in zip(values, widths, COLUMNS)).rstrip()

    lines = [title, "", line(header), "-+-".join("-" * w for w in widths)] + [line(values) for values in body]
    if notes:
        lines.append("")
        for note in notes:
            lines += textwrap.wrap(note, width, initial_indent="* ", subsequent_indent="  ") or ["*"]
    return "\n".join(lines) + "\n"


def format_markdown(title, rows, notes=()):
    """The same table in Markdown: a heading, a pipe table, the notes as a list."""
    header, body = cells(rows)
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if right else "---" for _, _, right in COLUMNS) + "|"]
    lines += ["| " + " | ".join(values) + " |" for values in body]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
