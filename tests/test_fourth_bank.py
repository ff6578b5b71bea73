"""A fourth memory bank end to end from its spec alone: defined and registered here (for these tests
only), selected with --banks, it is memorised, saved, scored and evaluated on its own beside the
published three, drawn, run by the table runner and written by score.py; the default run keeps the
published names.

A small CLIP-style ResNet with random weights is loaded through --clip_weights and object batches
are cut at fixed boxes (as in tests/test_reproduce.py), so the whole real code path runs in seconds.
"""
import contextlib
import csv
import io
import json

import numpy as np
import pytest
from safetensors import safe_open

import score
from extra.errors import VPCError
from extra.evaluation import curves
from extra.evaluation.results import load_results
from extra.make_demo import make_demo
from extra.workdir import WorkDir
from Memorization.banks.patches import spatial_patches
from Memorization.banks.specs import BANKS, BankSpec, register_bank, specs_of
from Memorization.cli import build_parser, resolve_run
from Memorization.model import VideoPatchCore
from Memorization.paper import plots
from Memorization.paper.reproduction import reproduce_tables
from Memorization.run import main
from tests.helpers import small_random_checkpoint, write_fixed_box_objects

D = 3
# Spatial patches on a finer grid: p = 2, 14 x 14 rows per object.
FINE = BankSpec("fine", "local", patches=lambda lf, method, stage: spatial_patches(lf, 2),
                rows_per_item=lambda method, side: (side // 2) ** 2, title="spatial, fine grid", colour="tab:purple")
PUBLISHED_RUN = "spatial0.01_temporal0.01_highlevel0.01"      # avenue's ratios, the authors' names
FOUR = ["--banks=spatial,temporal,highlevel,fine", "--fine_f_coreset=0.5"]
FOUR_RUN = PUBLISHED_RUN + "_fine0.5"


@pytest.fixture(scope="module")
def fine():
    """FINE registered for this module's tests, and unregistered after them."""
    yield register_bank(FINE)
    del BANKS[FINE.name]


def quiet(function, *args):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert function(*args) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def runs(fine, tmp_path_factory):
    """The published run, then the run with the fourth bank, on the same data and features."""
    root = tmp_path_factory.mktemp("fourth")
    make_demo(root / "data", "avenue", seed=1, n_train=2, n_test=2, n_frames=9, width=96, height=64)
    write_fixed_box_objects(root / "data", root / "work", D, objects_in_clip=lambda clip: clip % 2 + 1)
    args = [f"--data_root={root / 'data'}", f"--work_dir={root / 'work'}", "--dataset=avenue",
            f"--consecutive={D}", f"--clip_weights={small_random_checkpoint(root / 'small.pt')}"]
    quiet(main, args)
    work = WorkDir(root / "work", "avenue")
    published = {path: path.stat().st_mtime_ns for path in work.local_dir(32).glob("*_memory_bank_*.pt")}
    quiet(main, args + FOUR)
    return root, args, work, published


def test_the_default_run_keeps_the_published_names(runs):
    root, _, work, published = runs
    assert sorted(path.name for path in published) == ["spatial_memory_bank_0.01.pt", "temporal_memory_bank_0.01.pt"]
    assert (work.global_dir(32) / "highlevel_memory_bank_0.01.pt").is_file()
    results = json.loads((work.results(32) / PUBLISHED_RUN / "results.json").read_text())
    assert "banks" not in results["metadata"] and set(results["metadata"]["bank_sizes"]) == {"spatial", "temporal",
                                                                                              "highlevel"}
    with safe_open(str(work.model(PUBLISHED_RUN)), framework="pt") as opened:
        metadata = opened.metadata()
    assert "banks" not in json.loads(metadata["method"])        # the model file as before
    assert json.loads(metadata["banks"]) == ["spatial", "temporal", "highlevel"]
    assert sorted(p.name for p in work.results(32).iterdir()) == [PUBLISHED_RUN, FOUR_RUN]


def test_the_fourth_bank_is_memorised_scored_and_evaluated_on_its_own(runs):
    root, _, work, published = runs
    # the published banks were reused, the fourth one alone built
    assert {path: path.stat().st_mtime_ns for path in published} == published
    assert (work.local_dir(32) / "fine_memory_bank_0.5.pt").is_file()
    folder = work.results(32) / FOUR_RUN
    saved = load_results(folder / "scores.npz", folder / "results.json")
    assert list(saved.scores.banks) == ["spatial", "temporal", "highlevel", "fine"]
    assert [len(x) for x in saved.scores.banks["fine"]] == saved.scores.lengths and "fine" in saved.fused
    results = saved.results
    assert 0 <= results["protocol"]["fine_only"]["auroc"] <= 1
    for column in ("protocol", "fixed", "label_free"):
        assert {"fine", "total"} <= set(results[column]["streams"])
    assert saved.metadata["banks"] == ["spatial", "temporal", "highlevel", "fine"]
    # per training video, coreset of half its 1 + 2 + 1 objects x 196 rows
    assert saved.metadata["bank_sizes"]["fine"] == 2 * int(0.5 * 4 * 196)
    model = VideoPatchCore.load(work.model(FOUR_RUN))
    assert [spec.name for spec in model.specs] == ["spatial", "temporal", "highlevel", "fine"]
    assert model.method.banks == ("spatial", "temporal", "highlevel", "fine")
    assert set(model.calibration["normalisation"]) == {"spatial", "temporal", "highlevel", "fine"}


def test_a_model_of_an_unregistered_bank_is_refused_in_one_line(runs, monkeypatch):
    _, _, work, _ = runs
    monkeypatch.delitem(BANKS, "fine")
    with pytest.raises(VPCError, match="holds a memory bank 'fine' that no bank definition describes") as error:
        VideoPatchCore.load(work.model(FOUR_RUN))
    assert "\n" not in str(error.value)


def test_figures_draw_the_fourth_bank(runs):
    _, args, work, _ = runs
    run = resolve_run(build_parser("test").parse_args(args + FOUR))
    saved = plots.load_run(work, run.method)
    lines = curves.score_lines(saved.scores, plots.fused_streams(saved), 0)
    figure = curves.plot_video_scores("01", lines, saved.scores.labels[0], "avenue", {},
                                      plots.bank_styles(specs_of(run.method.banks)))
    assert ("spatial, fine grid", "tab:purple") in [(line.get_label(), line.get_color())
                                                    for line in figure.axes[0].get_lines()]
    with contextlib.redirect_stdout(io.StringIO()):
        written = plots.make_figures(run, ["scores"])
    assert [path.name for path in written] == ["01.png", "02.png"] and all(path.is_file() for path in written)
    assert written[0].parent.parent.name == FOUR_RUN


def test_the_table_runner_runs_the_fourth_bank(runs):
    _, args, work, _ = runs
    base = resolve_run(build_parser("test").parse_args(args + FOUR))
    with contextlib.redirect_stdout(io.StringIO()):
        table = reproduce_tables(base, ["2"])
    assert "### Table 2 (Avenue)" in table
    cached = json.loads((work.reproduce(32) / FOUR_RUN / "results.json").read_text())
    assert "fine_only" in cached["results"]["protocol"] and cached["metadata"]["bank_sizes"]["fine"] > 0


def test_score_py_writes_a_column_per_bank_of_the_model(runs, tmp_path):
    root, _, work, _ = runs
    quiet(score.main, [str(work.model(FOUR_RUN)), str(root / "data" / "avenue" / "testing" / "frames" / "01"),
                       "--detector", "motion", "--out_dir", str(tmp_path)])
    with open(tmp_path / "01.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["frame", "timestamp", "spatial", "temporal", "highlevel", "fine", "fused", "alarm"]
    assert len(rows) == 9 and all(len(row) == len(header) for row in rows)
    assert np.isfinite([float(row[5]) for row in rows]).all()


def test_banks_flag_errors_are_one_line(fine):
    parse = build_parser("test").parse_args
    with pytest.raises(VPCError, match=r"--banks: no memory bank named 'flow' is registered; choose among "
                                       r"spatial, temporal, highlevel, fine"):
        resolve_run(parse(["--dataset=avenue", "--banks=spatial,temporal,highlevel,flow"]))
    with pytest.raises(VPCError, match="--banks must include spatial, temporal, highlevel .* temporal is missing"):
        resolve_run(parse(["--dataset=avenue", "--banks=spatial,highlevel,fine"]))
    # the registry's order, whatever the flag's: the same banks make the same run
    method = resolve_run(parse(["--dataset=avenue", "--banks=fine,highlevel,temporal,spatial"])).method
    assert method.banks == ("spatial", "temporal", "highlevel", "fine") and list(method.ratios) == list(method.banks)
