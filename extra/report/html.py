"""The report as one self-contained HTML file: the page's markup, style and script (beside this module)
with the data inlined as JSON, images as data: URIs; nothing is loaded from a server or the network."""
import html
import json
from pathlib import Path

from extra.io import atomic_path

PAGE = Path(__file__).parent


def report_path(out_dir, name):
    """Where the report of the input ``name`` goes, beside its CSV and alarms JSON."""
    return Path(out_dir) / f"{name}_report.html"


def render(data):
    """The page of a report's data (ReportCollector.data) as one string."""
    # "</" inside inline JSON would end its <script> element early
    inline = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template = (PAGE / "page.html").read_text()
    return (template.replace("{{title}}", html.escape(f"Alarm report: {data['name']}"))
            .replace("{{style}}", (PAGE / "page.css").read_text())
            .replace("{{script}}", (PAGE / "page.js").read_text())
            .replace("{{data}}", inline))


def write_report(path, data):
    """Write the page of ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(render(data), encoding="utf-8")
    return Path(path)
