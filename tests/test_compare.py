"""compare.py: the table's text from hand-made measurements, the stored measurements a rerun reuses, the
coreset scaling, and one whole comparison on tiny generated data (a tiny random CLIP ResNet through
--clip_weights, the motion detector, MNAD at 32 x 32 for one epoch)."""
import json

import pytest

from compare import main
from comparison import run as comparison_run
from comparison.run import Measurements, number_list, scaled_ratios
from comparison.table import cells, format_markdown, format_text, memory_note, spread
from extra.errors import VPCError, run_main
from extra.make_demo import make_demo
from tests.helpers import small_random_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VPC_ROW = {"method": "VideoPatchCore", "random_weights": True, "protocol": 0.875, "fixed": 0.8, "label_free": 0.75,
           "train_seconds": 95.24, "test_fps": 3.4149,
           "memory": {"spatial": [2940, 32], "temporal": [180, 32], "highlevel": [120, 1536]},
           "parameters": None, "file_bytes": 1234567,
           "sensitivity": {"label": "coreset scale", "values": [["0.5", 0.85], ["1", 0.875], ["2", 0.88]]}}
MNAD_ROW = {"method": "MNAD pred (msize 10)", "protocol": 0.6, "fixed": 0.6, "label_free": None,
            "train_seconds": 120.0, "test_fps": 10.0, "memory": {"items": [10, 512]}, "parameters": 15651843,
            "file_bytes": 62700000,
            "sensitivity": {"label": "msize", "values": [["5", 0.58], ["10", 0.6], ["20", None]]}}


# --- the table ---------------------------------------------------------------------------------------------

def test_a_row_reads_as_measured_with_n_a_where_missing():
    header, (vpc, mnad) = cells([VPC_ROW, MNAD_ROW])
    assert header == ["method", "protocol %", "fixed %", "label-free %", "train s", "test FPS", "memory", "parameters",
                      "file MB", "sensitivity: protocol AUROC %", "spread pp"]
    # (2940 x 32 + 180 x 32 + 120 x 1536) x 4 bytes = 1,136,640; spread 88.0 - 85.0
    assert vpc == ["VideoPatchCore (RANDOM weights)", "87.5", "80.0", "75.0", "95.2", "3.41",
                   "3 banks, 3,240 rows, 1.14 MB", "n/a", "1.23", "coreset scale 0.5=85.0, 1=87.5, 2=88.0", "3.0"]
    # no label-free column, one msize not measured: the spread is of the two measured (60.0 - 58.0)
    assert mnad == ["MNAD pred (msize 10)", "60.0", "60.0", "n/a", "120.0", "10.00", "10 x 512, 0.0205 MB",
                    "15,651,843", "62.7", "msize 5=58.0, 10=60.0, 20=n/a", "2.0"]
    text = format_text("T", [MNAD_ROW], ["a note"])
    assert text.splitlines()[4] == ("MNAD pred (msize 10) |       60.0 |    60.0 |          n/a |   120.0 |    10.00 | "
                                    "10 x 512, 0.0205 MB | 15,651,843 |    62.7 | msize 5=58.0, 10=60.0, 20=n/a |"
                                    "       2.0")
    assert text.splitlines()[2].startswith("method               | protocol % |") and text.endswith("\n* a note\n")
    markdown = format_markdown("T", [VPC_ROW, MNAD_ROW]).splitlines()
    assert markdown[0] == "## T" and markdown[3] == "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|"
    assert markdown[5] == ("| MNAD pred (msize 10) | 60.0 | 60.0 | n/a | 120.0 | 10.00 | 10 x 512, 0.0205 MB | "
                           "15,651,843 | 62.7 | msize 5=58.0, 10=60.0, 20=n/a | 2.0 |")
    assert memory_note([VPC_ROW, MNAD_ROW]) == (
        "Memory (float32 rows x channels): VideoPatchCore (RANDOM weights): spatial 2,940 x 32, temporal 180 x 32, "
        "highlevel 120 x 1,536; MNAD pred (msize 10): items 10 x 512.")


def test_an_empty_row_is_n_a_everywhere_and_one_value_has_no_spread():
    row = {"method": "X", "sensitivity": {"label": "msize", "values": [["10", 0.7]]}}
    assert cells([row])[1][0] == ["X", *["n/a"] * 8, "msize 10=70.0", "n/a"]
    assert spread(row["sensitivity"]) is None
    assert spread({"values": [["a", 0.5], ["b", None], ["c", 0.75]]}) == 0.25


# --- stored measurements -------------------------------------------------------------------------------------

def test_a_stored_measurement_of_the_same_settings_is_reused_and_another_setting_is_measured(tmp_path):
    path, calls = tmp_path / "comparison.json", []

    def compute(value):
        return lambda: calls.append(value) or {"auroc": value}

    store = Measurements.load(path)
    assert store.measure("mnad msize 5", {"msize": 5, "h": 64}, compute(0.5)) == {"auroc": 0.5}
    again = Measurements.load(path)          # a rerun: read back from the file
    assert again.measure("mnad msize 5", {"h": 64, "msize": 5}, compute(0.6)) == {"auroc": 0.5}
    assert calls == [0.5]
    assert again.measure("mnad msize 5", {"msize": 5, "h": 32}, compute(0.7)) == {"auroc": 0.7}
    assert calls == [0.5, 0.7]
    # stored values that are no longer usable (a model file deleted) are measured again
    assert again.measure("mnad msize 5", {"msize": 5, "h": 32}, compute(0.8), usable=lambda v: False) == {"auroc": 0.8}
    # --overwrite: everything measured again, once
    redo = Measurements.load(path, redo=True)
    assert redo.measure("mnad msize 5", {"msize": 5, "h": 32}, compute(0.9)) == {"auroc": 0.9}
    assert redo.measure("mnad msize 5", {"msize": 5, "h": 32}, compute(1.0)) == {"auroc": 0.9}
    assert calls == [0.5, 0.7, 0.8, 0.9]
    assert json.loads(path.read_text())["measurements"]["mnad msize 5"] == {"settings": {"h": 32, "msize": 5},
                                                                           "values": {"auroc": 0.9}}
    path.write_text("{not json")
    with pytest.raises(VPCError, match="is not a comparison record"):
        Measurements.load(path)


# --- the sweeps' values ----------------------------------------------------------------------------------------

def test_every_coreset_ratio_is_scaled_and_kept_at_most_one():
    ratios = {"spatial": 0.01, "temporal": 0.1, "highlevel": 0.75}
    assert scaled_ratios(ratios, 0.5) == {"spatial": 0.005, "temporal": 0.05, "highlevel": 0.375}
    assert scaled_ratios(ratios, 3) == {"spatial": 0.03, "temporal": 0.3, "highlevel": 1.0}
    assert scaled_ratios(ratios, 1) == ratios


def test_the_sweeps_are_sorted_distinct_and_checked():
    assert number_list("20,5,10,5", "--msizes", int, 2) == (5, 10, 20)
    assert number_list("2, 0.5,1", "--coreset_scales", float, 0, strictly=True) == (0.5, 1.0, 2.0)
    with pytest.raises(VPCError, match="--msizes: each value must be at least 2, got '1,5'"):
        number_list("1,5", "--msizes", int, 2)
    with pytest.raises(VPCError, match="--coreset_scales: each value must be above 0"):
        number_list("0,1", "--coreset_scales", float, 0, strictly=True)
    with pytest.raises(VPCError, match="--msizes takes comma-separated int values, got 'ten'"):
        number_list("ten", "--msizes", int, 2)


# --- a whole comparison ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    make_demo(root / "data", "avenue", seed=0, n_train=2, n_test=2, n_frames=16, width=96, height=64)
    args = [f"--data_root={root / 'data'}", f"--work_dir={root / 'work'}", "--consecutive=4",
            f"--clip_weights={small_random_checkpoint(root / 'small.pt')}", "--detector=motion",
            "--h=32", "--w=32", "--epochs=1", "--msizes=2,3", "--coreset_scales=1,2"]
    return root, args


def table_of(output):
    """{method: its cells} of the printed table, and the notes."""
    lines = output[output.index("VideoPatchCore and MNAD on avenue"):].splitlines()
    rows = {cells_[0]: cells_ for cells_ in ([cell.strip() for cell in line.split(" | ")] for line in lines[4:6])}
    return rows, " ".join(" ".join(lines[7:]).split())


def test_a_comparison_measures_both_methods_and_a_rerun_reuses_it(compared, capsys, monkeypatch):
    root, args = compared
    assert run_main(main, args) == 0
    out = capsys.readouterr().out
    rows, notes = table_of(out)
    folder = root / "work" / "compare" / "avenue"
    document = json.loads((folder / "comparison.json").read_text())
    measured = {key: entry["values"] for key, entry in document["measurements"].items()}
    assert set(measured) == {"vpc", "vpc coreset x2", *(f"mnad/pred_{tag}h32_w32_epochs1 {step}"
                                                        for tag in ("", "msize2_", "msize3_")
                                                        for step in ("training", "evaluation")),
                             "mnad_hold_out/pred_h32_w32_epochs1_hold_out1 training",
                             "mnad_hold_out/pred_h32_w32_epochs1_hold_out1 evaluation"}
    # VideoPatchCore: every stage timed; training and inference are the sums the notes say
    vpc = measured["vpc"]
    seconds = vpc["seconds"]
    assert all(seconds[name] > 0 for name in ("train_features", "memory_banks", "calibration", "test_features",
                                              "scoring", "encoder_load"))
    assert vpc["train_seconds"] == pytest.approx(seconds["detection_train"] + seconds["train_features"]
                                                 + seconds["memory_banks"])
    assert vpc["test_fps"] == pytest.approx(vpc["test_frames"] / (seconds["detection_test"] + seconds["test_features"]
                                                                  + seconds["scoring"]))
    assert vpc["test_frames"] == 2 * 16 and vpc["random_weights"] is True
    results = json.loads((folder / "vpc/results/avenue/32/spatial0.01_temporal0.01_highlevel0.01/results.json")
                         .read_text())["results"]
    assert vpc["protocol"] == results["protocol"]["streams"]["total"]["micro"]
    assert vpc["label_free"] == results["label_free"]["streams"]["total"]["micro"]
    # the coreset scale 2 doubles every ratio, from the same features
    scaled = json.loads((folder / "vpc/results/avenue/32/spatial0.02_temporal0.02_highlevel0.02/results.json")
                        .read_text())["results"]
    assert measured["vpc coreset x2"]["protocol"] == scaled["protocol"]["streams"]["total"]["micro"]
    # MNAD: the published msize's run, one run per msize, each AUROC its own results'
    mnad_runs = folder / "mnad" / "mnad" / "avenue"
    for msize, run in ((10, "pred_h32_w32_epochs1"), (2, "pred_msize2_h32_w32_epochs1"),
                       (3, "pred_msize3_h32_w32_epochs1")):
        saved = json.loads((mnad_runs / run / "results" / "results.json").read_text())
        evaluation = measured[f"mnad/{run} evaluation"]
        assert evaluation["protocol"] == saved["results"]["protocol"]["streams"]["total"]["micro"]
        assert evaluation["test_fps"] == saved["metadata"]["test_frames_per_second"]
        assert measured[f"mnad/{run} training"]["items"] == [msize, 512]

    def pct(value):
        return f"{100 * value:.1f}"

    mnad = measured["mnad/pred_h32_w32_epochs1 evaluation"]
    training = measured["mnad/pred_h32_w32_epochs1 training"]
    sizes = [measured[f"mnad/{run} evaluation"]["protocol"]
             for run in ("pred_msize2_h32_w32_epochs1", "pred_msize3_h32_w32_epochs1")]
    held = measured["mnad_hold_out/pred_h32_w32_epochs1_hold_out1 evaluation"]
    label_free = pct(held["label_free"])
    assert held["held_out"] == ["01"] and "without the held-out training video(s) 01," in notes
    assert rows["MNAD pred (msize 10)"] == [
        "MNAD pred (msize 10)", pct(mnad["protocol"]), pct(mnad["fixed"]), label_free, f"{training['seconds']:.1f}",
        f"{mnad['test_fps']:.2f}", "10 x 512, 0.0205 MB", f"{training['parameters']:,}",
        f"{training['file_bytes'] / 1e6:.3g}", f"msize 2={pct(sizes[0])}, 3={pct(sizes[1])}",
        f"{100 * (max(sizes) - min(sizes)):.1f}"]
    row = rows["VideoPatchCore (RANDOM weights)"]
    assert row[1:6] == [pct(vpc["protocol"]), pct(vpc["fixed"]), pct(vpc["label_free"]), f"{vpc['train_seconds']:.1f}",
                        f"{vpc['test_fps']:.2f}"]
    assert row[9] == f"coreset scale 1={pct(vpc['protocol'])}, 2={pct(measured['vpc coreset x2']['protocol'])}"
    assert "WARNING: VideoPatchCore ran with RANDOM (not pretrained) encoder weights" in notes
    assert "MNAD: h 32 (published 256), w 32 (published 256), epochs 1 (published 60)" in notes
    assert (folder / "comparison.md").read_text().startswith("## VideoPatchCore and MNAD on avenue, measured on ")
    assert document["table"]["rows"][1]["method"] == "MNAD pred (msize 10)"

    # a rerun measures nothing again; another coreset scale is the only new measurement
    def measured_again(*args, **kwargs):
        raise AssertionError("measured again")

    for name in ("measure_vpc", "measure_mnad_training", "measure_mnad_evaluation"):
        monkeypatch.setattr(comparison_run, name, measured_again)
    scaled_runs = []
    real = comparison_run.measure_vpc_scaled
    monkeypatch.setattr(comparison_run, "measure_vpc_scaled", lambda run, encoder: scaled_runs.append(
        run.method.ratios) or real(run, encoder))
    assert run_main(main, args) == 0
    assert table_of(capsys.readouterr().out)[0] == rows
    assert run_main(main, [*args[:-1], "--coreset_scales=0.5,1,2"]) == 0
    assert scaled_runs == [dict.fromkeys(("spatial", "temporal", "highlevel"), 0.005)]
    again, _ = table_of(capsys.readouterr().out)
    assert again["MNAD pred (msize 10)"] == rows["MNAD pred (msize 10)"]
    assert again["VideoPatchCore (RANDOM weights)"][9].startswith("coreset scale 0.5=")


def test_bad_flags_are_one_line_before_anything_runs(compared, capsys):
    root, args = compared
    assert run_main(main, [*args, "--msizes=1"]) == 2
    assert capsys.readouterr().err == "error: --msizes: each value must be at least 2, got '1'\n"
    assert run_main(main, [*args, "--h=30"]) == 2
    assert capsys.readouterr().err == ("error: --h and --w must be multiples of 8 (the encoder pools three times), "
                                       "got 30 x 32\n")
    assert run_main(main, [*args, "--ray=local"]) == 2
    assert "run it without --ray" in capsys.readouterr().err


def test_the_mnad_run_is_the_published_one_but_the_flags_given(compared):
    root, args = compared
    comparison = comparison_run.resolve_comparison(comparison_run.build_parser("x").parse_args(args))
    mnad = comparison.mnad
    assert (mnad.method, mnad.msize, mnad.h, mnad.w, mnad.epochs, mnad.batch_size, mnad.seed) == ("pred", 10, 32, 32, 1,
                                                                                                 4, 0)
    assert comparison.mnad.work_dir == root / "work" / "compare" / "avenue" / "mnad"
    assert comparison.vpc.context.work_dir == root / "work" / "compare" / "avenue" / "vpc"
    assert (comparison.msizes, comparison.coreset_scales) == ((2, 3), (1.0, 2.0))
