"""benchmarks/bench_mnad.py runs end to end at a tiny size and prints a row per variant and phase with
positive figures."""
import importlib.util
import re
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))          # the script imports its neighbour measure.py
    spec = importlib.util.spec_from_file_location("bench_mnad", BENCHMARKS / "bench_mnad.py")
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


def test_bench_mnad_prints_positive_rates(monkeypatch, capsys):
    bench = load_bench(monkeypatch)
    returned = bench.main(["--h", "32", "--w", "32", "--steps", "1", "--warmup", "0", "--device", "cpu"])
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {(m, p) for m in ("pred", "recon") for p in ("training", "inference")}
    assert rows["pred", "training"][2] == "12 x 32 x 32" and rows["recon", "training"][2] == "3 x 32 x 32"
    for (_, phase), cells in rows.items():
        assert cells[3] == ("4" if phase == "training" else "1")
        seconds, rate, per_frame, per_estimate, rss = (float(cells[i]) for i in (5, 6, 7, 8, 10))
        assert min(seconds, rate, per_frame, per_estimate, rss) > 0
        if phase == "training":
            assert float(cells[9]) > 0
    assert all(row["seconds"] > 0 and row["frames"] > 0 for row in returned)


def test_bench_mnad_refuses_bad_flags(monkeypatch, capsys):
    bench = load_bench(monkeypatch)
    for argv in (["--methods", "pred,nope"], ["--h", "30"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
    assert re.search(r"--methods", capsys.readouterr().err)
