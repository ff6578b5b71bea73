"""The table runner on tiny generated data: every table printed with measured and published
values, one set of features for all configurations, and a rerun that recomputes nothing.

A small CLIP-style ResNet (the real architecture class, one block per layer, width 8) with
random weights is saved as a file and loaded through --clip_weights, so the whole real code
path runs in a few seconds. Object batches are cut at fixed boxes, as in
tests/test_memorization_stage.py.
"""
import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from extra.errors import VPCError
from extra.make_demo import make_demo
from extra.workdir import WorkDir
from Memorization.features import TIMING_ATTRIBUTE
from Memorization.paper.tables import APPENDIX, NOT_IN_PAPER, Measured, build_table, format_table
from Memorization.reproduce import main
from tests.helpers import small_random_checkpoint, write_fixed_box_objects

REPO = Path(__file__).resolve().parent.parent
D = 3
HEADINGS = ["### Table 2 (Avenue)", "### Table 3 (Avenue)", "### Table 4 (Avenue)", "### Table 5 (Avenue)",
            "### Table 6 (Avenue)", "### Table 7 (Avenue)", "### Appendix table (Avenue)"]


def run(args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return out.getvalue()


def tables_of(output):
    """{heading: (caption lines, header cells, rows as lists of cells)} of the printed markdown."""
    tables = {}
    for block in output[output.index("### "):].split("### ")[1:]:
        lines = block.strip().splitlines()
        rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
        caption = [line for line in lines if not line.startswith("|")]
        tables["### " + lines[0].split(":")[0]] = (caption, rows[0], rows[1:])
    return tables


def stamps(folder):
    """Modification times of the files under ``folder``, but the run lock's (each run writes its pid there)."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".lock-")}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    make_demo(root / "data", "avenue", seed=1, n_train=2, n_test=2, n_frames=9, width=96, height=64)
    write_fixed_box_objects(root / "data", root / "work", D, objects_in_clip=lambda clip: clip % 2)
    args = [f"--data_root={root / 'data'}", f"--work_dir={root / 'work'}", "--dataset=avenue",
            f"--consecutive={D}", f"--clip_weights={small_random_checkpoint(root / 'small.pt')}"]
    return root, args, run(args + ["--table=all"])


def test_every_table_is_printed_with_measured_and_published_values(first_run):
    root, _, output = first_run
    tables = tables_of(output)
    assert list(tables) == HEADINGS
    for caption, header, rows in tables.values():
        assert any(line.startswith("> **WARNING: made with random (not pretrained) weights") for line in caption)
        assert any("through the published protocol (extra.evaluation" in line for line in caption)
        measured, paper, fixed, free = (header.index(f"AUROC % {name}")
                                        for name in ("measured", "paper", "fixed weights", "label-free"))
        for row in rows:
            assert 0 <= float(row[measured]) <= 100 and 0 <= float(row[fixed]) <= 100
            assert 0 <= float(row[free]) <= 100
            assert row[paper] == NOT_IN_PAPER or 50 < float(row[paper]) < 100
    # both columns filled: the paper's value where it has one for Avenue, a dash where it has none
    paper_column = {heading: [row[header.index("AUROC % paper")] for row in rows]
                    for heading, (_, header, rows) in tables.items()}
    assert paper_column["### Table 2 (Avenue)"] == ["84.8", "66.9", "90.3"]
    assert paper_column["### Table 3 (Avenue)"] == ["82.7", "85.9", "90.3"]
    assert paper_column["### Table 4 (Avenue)"] == ["84.9", "88.2", "90.3"]
    assert paper_column["### Table 5 (Avenue)"] == ["90.3", "84.4", "92.8"]
    assert paper_column["### Table 6 (Avenue)"] == [f"{v:.1f}" for v in APPENDIX["avenue"]["total"]]
    assert set(paper_column["### Table 7 (Avenue)"]) == {NOT_IN_PAPER}
    assert paper_column["### Appendix table (Avenue)"][:4] == ["84.8", "66.9", "84.4", "92.8"]
    caption, header, rows = tables["### Table 6 (Avenue)"]
    assert header[-2:] == ["FPS measured", "FPS paper"]
    assert all(float(row[-2]) > 0 and row[-1] == NOT_IN_PAPER for row in rows)
    assert any("FPS = scored test frames / (test feature extraction + scoring" in line and " on CPU " in line
               for line in caption)


def test_one_configuration_serves_every_table_that_shows_it(first_run):
    root, _, output = first_run
    tables = tables_of(output)
    cache = WorkDir(root / "work", "avenue").reproduce(32)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 12     # 1 default + 2 + 2 + 5 ratios + 2 orders
    default = json.loads((cache / "spatial0.01_temporal0.01_highlevel0.01" / "results.json").read_text())["results"]
    local = f"{100 * default['protocol']['local']['auroc']:.1f}"
    total = f"{100 * default['protocol']['total']['auroc']:.1f}"
    assert tables["### Table 2 (Avenue)"][2][2][1] == local              # Spatial+Temporal
    assert tables["### Table 3 (Avenue)"][2][2][1] == local              # Split pool
    assert tables["### Table 4 (Avenue)"][2][2][1] == local              # Mismatched pool
    assert tables["### Table 5 (Avenue)"][2][0][1] == local
    assert tables["### Table 5 (Avenue)"][2][2][1] == total
    assert tables["### Table 6 (Avenue)"][2][0][1] == total              # 1%: the default ratio
    # one set of features: split, head and random local features, global features once
    work = root / "work"
    assert sorted(p.name for p in (work / "l_features" / "avenue").iterdir()) == ["32", "32_head", "32_random"]
    assert sorted(p.name for p in (work / "g_features" / "avenue").iterdir()) == ["32"]
    assert not list(work.rglob("*memory_bank*"))                       # banks stay in memory


def forbid_recomputing(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr("Memorization.encoders.registry.load_backbone", forbidden)
    monkeypatch.setattr("Memorization.model.build_memory_bank", forbidden)
    monkeypatch.setattr("Memorization.banks.scores.score_clips", forbidden)
    monkeypatch.setattr("Memorization.model.score_clips", forbidden)


def test_a_rerun_prints_from_the_cache(first_run, monkeypatch):
    root, args, output = first_run
    before = stamps(root / "work")
    forbid_recomputing(monkeypatch)
    again = run(args + ["--table=all"])
    assert again[again.index("### "):] == output[output.index("### "):]
    assert stamps(root / "work") == before
    # other fixed weights are evaluated again from the cached scores, still without recomputing
    fixed = tables_of(run(args + ["--table=2", "--fixed_a1=1.0"]))["### Table 2 (Avenue)"]
    assert any("a1=1.0, b1=0.5, sigma=0 chosen in advance" in line for line in fixed[0])
    spatial, _, local = fixed[2]
    assert local[3] == spatial[3]                # a1 = 1: the local stream is the spatial one
    assert [row[1] for row in fixed[2]] == [row[1] for row in tables_of(output)["### Table 2 (Avenue)"][2]]


def test_feature_time_is_measured_once_where_the_files_do_not_record_it(first_run, tmp_path):
    root, args, _ = first_run
    shutil.copytree(root / "work", tmp_path / "work")
    work = WorkDir(tmp_path / "work", "avenue")
    for path in (work.root / "l_features" / "avenue" / "32" / "visual" / "test").glob("*.h5"):
        with h5py.File(path, "a") as f:
            del f.attrs[TIMING_ATTRIBUTE]
    args = [a for a in args if not a.startswith("--work_dir")] + [f"--work_dir={tmp_path / 'work'}", "--table=6"]
    first = tables_of(run(args))["### Table 6 (Avenue)"]
    assert (work.reproduce(32) / "feature_time.json").is_file()
    assert any("measured once:" in line for line in first[0])
    assert [row[1] for row in first[2]] == [row[1] for row in tables_of(run(args))["### Table 6 (Avenue)"][2]]


def test_objects_must_exist(first_run, tmp_path):
    root, args, _ = first_run
    args = [a for a in args if not a.startswith("--work_dir")] + [f"--work_dir={tmp_path}", "--table=2"]
    with pytest.raises(VPCError, match=r"object batches not found: .*run ObjectDetection/run.py --dataset=avenue"):
        run(args)


def test_command_line_from_the_stage_folder(first_run):
    root, args, output = first_run
    result = subprocess.run([sys.executable, "reproduce.py", *args, "--table", "5"], cwd=REPO / "Memorization",
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert tables_of(result.stdout)["### Table 5 (Avenue)"] == tables_of(output)["### Table 5 (Avenue)"]
    with pytest.raises(VPCError, match="argument --table: invalid choice: '8'"):
        main(["--table", "8"])


def test_published_values_of_the_speed_and_technique_tables():
    shanghai = build_table("6", "shanghai")
    assert [(row.cells[0], row.paper, row.paper_fps) for row in shanghai.rows] == [
        ("1%", 84.6, 170.9), ("10%", 85.0, 154.8), ("25%", 85.1, 96.1), ("50%", 85.1, 54.8), ("75%", 85.1, 39.6),
        ("99%", 85.1, 31.0)]
    corridor = build_table("6", "iitb")
    assert [(r.paper, r.paper_fps) for r in corridor.rows][::5] == [(76.0, 143.4), (76.4, 19.5)]
    assert [row.paper for row in build_table("7", "shanghai").rows] == [85.0, 85.1, 84.9, 85.0]
    assert [row.paper for row in build_table("7", "iitb").rows] == [76.4, 76.4, 76.3, 76.4]
    markdown = format_table(corridor, "iitb", [Measured(0.7634, 0.7012, 98.76)] * 6, ["a note"])
    assert "| 10% | 76.3 | 76.4 | 70.1 | 98.8 | 113.5 |" in markdown
    assert markdown.startswith("### Table 6 (Corridor): coreset subsampling ratio")
