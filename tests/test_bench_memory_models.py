"""benchmarks/bench_memory_models.py (MNAD's two variants and the dual-memory autoencoder) runs end to end at
a tiny size and prints a training and an inference row per variant with positive figures."""
import importlib.util
import re
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
VARIANTS = ("pred", "recon", "dual_memory")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))          # the script imports its neighbour measure.py
    spec = importlib.util.spec_from_file_location("bench_memory_models", BENCHMARKS / "bench_memory_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(text):
    """{(variant, phase): cells} of the printed markdown table's data rows."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[1] in ("training", "inference"):
            rows[cells[0], cells[1]] = cells
    return rows


def test_bench_prints_positive_rates_for_every_variant(monkeypatch, capsys):
    bench = load_bench(monkeypatch)
    returned = bench.main(["--h", "16", "--w", "16", "--steps", "1", "--warmup", "0", "--device", "cpu"])
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert set(rows) == {(m, p) for m in VARIANTS for p in ("training", "inference")}
    shapes = {"pred": "12 x 16 x 16", "recon": "3 x 16 x 16", "dual_memory": "3 x 16 x 16 x 16"}
    batches = {"pred": "4", "recon": "4", "dual_memory": "2"}
    for (method, phase), cells in rows.items():
        assert cells[2] == shapes[method]
        assert cells[3] == (batches[method] if phase == "training" else "1")
        seconds, rate, per_frame, per_estimate, rss = (float(cells[i]) for i in (5, 6, 7, 8, 10))
        assert min(seconds, rate, per_frame, per_estimate, rss) > 0
        assert (float(cells[9]) > 0) if phase == "training" else cells[9] == "-"
    assert "a frame (trained or scored) = one clip of 16 frames" in out
    assert all(row["seconds"] > 0 and row["frames"] > 0 for row in returned)


def test_bench_dual_memory_alone_with_pseudo_clips(monkeypatch, capsys):
    bench = load_bench(monkeypatch)
    bench.main(["--methods", "dual_memory", "--pseudo_clips", "2", "--h", "16", "--w", "16", "--steps", "1",
                "--warmup", "0", "--device", "cpu"])
    assert set(table_rows(capsys.readouterr().out)) == {("dual_memory", "training"), ("dual_memory", "inference")}


def test_bench_refuses_bad_flags(monkeypatch, capsys):
    bench = load_bench(monkeypatch)
    for argv in (["--methods", "pred,nope"], ["--h", "30"], ["--steps", "0"], ["--pseudo_clips", "3"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
    assert re.search(r"--methods", capsys.readouterr().err)
