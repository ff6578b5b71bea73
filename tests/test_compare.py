"""compare.py: the table's text from hand-made measurements, the stored measurements a rerun reuses, the
coreset scaling, and one whole comparison on tiny generated data (a tiny random CLIP ResNet through
--clip_weights, the motion detector, MNAD at 32 x 32 and the dual-memory model at 16 x 16 for one epoch)."""
import json

import pytest

from compare import main
from comparison import run as comparison_run
from comparison.run import Measurements, method_list, number_list, scaled_ratios
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
DUAL_ROW = {"method": "dual-memory (mem_dim 2000)", "protocol": 0.7, "fixed": 0.7, "label_free": 0.65,
            "train_seconds": 300.0, "test_fps": 4.5, "memory": {"normal": [2000, 256], "anomaly": [2000, 256]},
            "parameters": 6781315, "file_bytes": 27200000,
            "sensitivity": {"label": "mem_dim", "values": [["500", 0.69], ["2000", 0.7], ["4000", 0.72]]}}


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


def test_the_dual_memory_row_counts_its_two_memories_of_one_shape():
    _, (_, _, dual) = cells([VPC_ROW, MNAD_ROW, DUAL_ROW])
    # 2 x 2000 x 256 x 4 bytes = 4,096,000; spread 72.0 - 69.0
    assert dual == ["dual-memory (mem_dim 2000)", "70.0", "70.0", "65.0", "300.0", "4.50", "2 x 2,000 x 256, 4.1 MB",
                    "6,781,315", "27.2", "mem_dim 500=69.0, 2000=70.0, 4000=72.0", "3.0"]
    lines = format_text("T", [VPC_ROW, MNAD_ROW, DUAL_ROW]).splitlines()
    assert len(lines) == 7 and lines[6].startswith("dual-memory (mem_dim 2000)      |       70.0 |")
    assert format_markdown("T", [MNAD_ROW, DUAL_ROW]).splitlines()[5].startswith(
        "| dual-memory (mem_dim 2000) | 70.0 | 70.0 | 65.0 | 300.0 | 4.50 | 2 x 2,000 x 256, 4.1 MB |")
    assert memory_note([DUAL_ROW]) == ("Memory (float32 rows x channels): dual-memory (mem_dim 2000): normal 2,000 x "
                                       "256, anomaly 2,000 x 256.")


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
    assert method_list("dual_memory, vpc") == ("vpc", "dual_memory")
    with pytest.raises(VPCError, match="--methods takes comma-separated names among vpc, mnad, dual_memory, got 'x'"):
        method_list("x")
    assert number_list("2, 0.5,1", "--coreset_scales", float, 0, strictly=True) == (0.5, 1.0, 2.0)
    with pytest.raises(VPCError, match="--msizes: each value must be at least 2, got '1,5'"):
        number_list("1,5", "--msizes", int, 2)
    with pytest.raises(VPCError, match="--coreset_scales: each value must be above 0"):
        number_list("0,1", "--coreset_scales", float, 0, strictly=True)
    with pytest.raises(VPCError, match="--msizes takes comma-separated int values, got 'ten'"):
        number_list("ten", "--msizes", int, 2)


# --- a whole comparison ---------------------------------------------------------------------------------------

MNAD_RUN, DUAL_RUN = "pred_h32_w32_epochs1", "dual_h16_w16_epochs1_pseudo_anomaly_jump0.01"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    # 24 frames: every test video gives the dual-memory model's 16-frame clips 2 frames or more to score
    root = tmp_path_factory.mktemp("compare")
    make_demo(root / "data", "avenue", seed=0, n_train=2, n_test=2, n_frames=24, width=96, height=64)
    args = [f"--data_root={root / 'data'}", f"--work_dir={root / 'work'}", "--consecutive=4",
            f"--clip_weights={small_random_checkpoint(root / 'small.pt')}", "--detector=motion",
            "--h=32", "--w=32", "--epochs=1", "--msizes=2,3", "--dual_h=16", "--dual_w=16", "--dual_epochs=1",
            "--mem_dims=4,8", "--coreset_scales=1,2"]
    return root, args


def table_of(output, title="VideoPatchCore, MNAD and the dual-memory model on avenue"):
    """{method: its cells} of the printed table, and the notes."""
    lines = output[output.index(title):].splitlines()
    end = lines.index("", 4)
    rows = {cells_[0]: cells_ for cells_ in ([cell.strip() for cell in line.split(" | ")] for line in lines[4:end])}
    return rows, " ".join(" ".join(lines[end + 1:]).split())


def pct(value):
    return f"{100 * value:.1f}"


def check_trained(measured, row, folder, key, run, sizes, memory):
    """A trained method's runs (``run`` at the published memory size, ``sizes`` [(size, run)] of the sweep),
    each measured from its own results; its row is what they say."""
    method_runs = folder / key / key / "avenue"
    for size, name in ((int(row[0].split()[-1].rstrip(")")), run), *sizes):
        saved = json.loads((method_runs / name / "results" / "results.json").read_text())
        evaluation = measured[f"{key}/{name} evaluation"]
        assert evaluation["protocol"] == saved["results"]["protocol"]["streams"]["total"]["micro"]
        assert evaluation["test_fps"] == saved["metadata"]["test_frames_per_second"]
        assert measured[f"{key}/{name} training"]["memory"] == memory(size)
    evaluation, training = measured[f"{key}/{run} evaluation"], measured[f"{key}/{run} training"]
    swept = [measured[f"{key}/{name} evaluation"]["protocol"] for _, name in sizes]
    held = measured[f"{key}_hold_out/{run}_hold_out1 evaluation"]
    assert held["held_out"] == ["01"] and held["label_free"] is not None
    assert row[1:] == [pct(evaluation["protocol"]), pct(evaluation["fixed"]), pct(held["label_free"]),
                       f"{training['seconds']:.1f}", f"{evaluation['test_fps']:.2f}", row[6],
                       f"{training['parameters']:,}", f"{training['file_bytes'] / 1e6:.3g}",
                       f"{row[9].split()[0]} {sizes[0][0]}={pct(swept[0])}, {sizes[1][0]}={pct(swept[1])}",
                       f"{100 * (max(swept) - min(swept)):.1f}"]


def test_a_comparison_measures_every_method_and_a_rerun_reuses_it(compared, capsys, monkeypatch):
    root, args = compared
    assert run_main(main, args) == 0
    out = capsys.readouterr().out
    rows, notes = table_of(out)
    folder = root / "work" / "compare" / "avenue"
    document = json.loads((folder / "comparison.json").read_text())
    measured = {key: entry["values"] for key, entry in document["measurements"].items()}
    mnad_runs = [MNAD_RUN, "pred_msize2_h32_w32_epochs1", "pred_msize3_h32_w32_epochs1"]
    dual_runs = [DUAL_RUN, *(f"dual_h16_w16_epochs1_mem_dim{size}_pseudo_anomaly_jump0.01" for size in (4, 8))]
    assert set(measured) == {"vpc", "vpc coreset x2", *(f"{folder_}/{run} {step}" for step in ("training", "evaluation")
                                                        for folder_, run in (
                                                            *(("mnad", run) for run in mnad_runs),
                                                            *(("dual_memory", run) for run in dual_runs),
                                                            ("mnad_hold_out", f"{MNAD_RUN}_hold_out1"),
                                                            ("dual_memory_hold_out", f"{DUAL_RUN}_hold_out1")))}
    # VideoPatchCore: every stage timed; training and inference are the sums the notes say
    vpc = measured["vpc"]
    seconds = vpc["seconds"]
    assert all(seconds[name] > 0 for name in ("train_features", "memory_banks", "calibration", "test_features",
                                              "scoring", "encoder_load"))
    assert vpc["train_seconds"] == pytest.approx(seconds["detection_train"] + seconds["train_features"]
                                                 + seconds["memory_banks"])
    assert vpc["test_fps"] == pytest.approx(vpc["test_frames"] / (seconds["detection_test"] + seconds["test_features"]
                                                                  + seconds["scoring"]))
    assert vpc["test_frames"] == 2 * 24 and vpc["random_weights"] is True
    results = json.loads((folder / "vpc/results/avenue/32/spatial0.01_temporal0.01_highlevel0.01/results.json")
                         .read_text())["results"]
    assert vpc["protocol"] == results["protocol"]["streams"]["total"]["micro"]
    assert vpc["label_free"] == results["label_free"]["streams"]["total"]["micro"]
    # the coreset scale 2 doubles every ratio, from the same features
    scaled = json.loads((folder / "vpc/results/avenue/32/spatial0.02_temporal0.02_highlevel0.02/results.json")
                        .read_text())["results"]
    assert measured["vpc coreset x2"]["protocol"] == scaled["protocol"]["streams"]["total"]["micro"]
    # MNAD and the dual-memory model: the published memory size's run, one run per size, each AUROC its own
    # results', label-free from the run holding out training video 01
    assert list(rows) == ["VideoPatchCore (RANDOM weights)", "MNAD pred (msize 10)", "dual-memory (mem_dim 2000)"]
    mnad, dual = rows["MNAD pred (msize 10)"], rows["dual-memory (mem_dim 2000)"]
    check_trained(measured, mnad, folder, "mnad", MNAD_RUN, list(zip((2, 3), mnad_runs[1:])),
                  lambda size: {"items": [size, 512]})
    check_trained(measured, dual, folder, "dual_memory", DUAL_RUN, list(zip((4, 8), dual_runs[1:])),
                  lambda size: {"normal": [size, 256], "anomaly": [size, 256]})
    assert mnad[6] == "10 x 512, 0.0205 MB" and mnad[9].startswith("msize 2=")
    assert dual[6] == "2 x 2,000 x 256, 4.1 MB" and dual[9].startswith("mem_dim 4=")     # 2 x 2000 x 256 x 4 bytes
    row = rows["VideoPatchCore (RANDOM weights)"]
    assert row[1:6] == [pct(vpc["protocol"]), pct(vpc["fixed"]), pct(vpc["label_free"]), f"{vpc['train_seconds']:.1f}",
                        f"{vpc['test_fps']:.2f}"]
    assert row[9] == f"coreset scale 1={pct(vpc['protocol'])}, 2={pct(measured['vpc coreset x2']['protocol'])}"
    assert "WARNING: VideoPatchCore ran with RANDOM (not pretrained) encoder weights" in notes
    for name in ("MNAD", "dual-memory"):
        assert f"{name} label-free: a second run, trained with hold_out=1 without the held-out training video(s) 01," \
            in notes
    assert ("dual-memory train s = DualMemory/training.py train()'s wall time from the start (1 epoch(s) of 16 x 16 "
            "clips of 16 frames, batches of 2); test FPS = its test loop's frames scored per second, one clip per "
            "frame scored") in notes
    assert "MNAD's and the dual-memory model's tune nothing, so they equal fixed" in notes
    assert "the dual-memory model's, one training run per mem_dim (published 2000)" in notes
    assert "dual-memory pseudo_anomaly_jump 0.01: each training clip is made a skip-frame pseudo-anomaly" in notes
    assert ("MNAD: h 32 (published 256), w 32 (published 256), epochs 1 (published 60); dual-memory: h 16 (published "
            "256), w 16 (published 256), epochs 1 (published 40), pseudo_anomaly_jump 0.01 (published 0.0).") in notes
    assert (folder / "comparison.md").read_text().startswith(
        "## VideoPatchCore, MNAD and the dual-memory model on avenue, measured on ")
    assert [row["method"] for row in document["table"]["rows"]][1:] == ["MNAD pred (msize 10)",
                                                                         "dual-memory (mem_dim 2000)"]

    # a rerun measures nothing again; another coreset scale is the only new measurement
    def measured_again(*args, **kwargs):
        raise AssertionError("measured again")

    for name in ("measure_vpc", "measure_training", "measure_evaluation"):
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
    # --methods: only the rows asked for, and notes of those methods only
    assert run_main(main, [*args, "--methods=vpc,mnad"]) == 0
    two, notes = table_of(capsys.readouterr().out, "VideoPatchCore and MNAD on avenue, measured on ")
    assert two == {name: rows[name] for name in ("VideoPatchCore (RANDOM weights)", "MNAD pred (msize 10)")}
    assert "dual-memory" not in notes and "MNAD's tunes nothing, so it equals fixed" in notes
    assert run_main(main, [*args, "--methods=dual_memory"]) == 0
    one, notes = table_of(capsys.readouterr().out, "the dual-memory model on avenue, measured on ")
    assert one == {"dual-memory (mem_dim 2000)": rows["dual-memory (mem_dim 2000)"]}
    assert "VideoPatchCore" not in notes and "MNAD" not in notes


def test_bad_flags_are_one_line_before_anything_runs(compared, capsys):
    root, args = compared
    assert run_main(main, [*args, "--msizes=1"]) == 2
    assert capsys.readouterr().err == "error: --msizes: each value must be at least 2, got '1'\n"
    assert run_main(main, [*args, "--h=30"]) == 2
    assert capsys.readouterr().err == ("error: --h and --w must be multiples of 8 (the encoder pools three times), "
                                       "got 30 x 32\n")
    # the dual-memory model's own checks, in compare.py's flag names
    assert run_main(main, [*args, "--dual_h=12"]) == 2
    assert capsys.readouterr().err == ("error: --dual_h and --dual_w must be multiples of 8 (the encoder halves them "
                                       "three times), got 12 x 16\n")
    assert run_main(main, [*args, "--dual_epochs=0"]) == 2
    assert capsys.readouterr().err == "error: --dual_epochs must be at least 1, got 0\n"
    assert run_main(main, [*args, "--methods=vpc,memae"]) == 2
    assert "--methods takes comma-separated names among vpc, mnad, dual_memory" in capsys.readouterr().err
    assert run_main(main, [*args, "--ray=local"]) == 2
    assert "run it without --ray" in capsys.readouterr().err


def test_the_trained_runs_are_the_published_ones_but_the_flags_given(compared):
    root, args = compared
    comparison = comparison_run.resolve_comparison(comparison_run.build_parser("x").parse_args(args))
    mnad, dual = (comparison.trained[key].config for key in ("mnad", "dual_memory"))
    assert (mnad.method, mnad.msize, mnad.h, mnad.w, mnad.epochs, mnad.batch_size, mnad.seed) == ("pred", 10, 32, 32, 1,
                                                                                                 4, 0)
    # the dual-memory model: the published mem_dim 2000 and lr 1e-7, pseudo-anomalies at compare.py's 0.01
    assert (dual.mem_dim, dual.h, dual.w, dual.epochs, dual.lr, dual.pseudo_anomaly_jump, dual.batch_size,
            dual.jump, dual.hold_out) == (2000, 16, 16, 1, 1e-7, 0.01, 2, (2,), 0)
    folder = root / "work" / "compare" / "avenue"
    assert (mnad.work_dir, dual.work_dir) == (folder / "mnad", folder / "dual_memory")
    assert comparison.vpc.context.work_dir == folder / "vpc"
    assert (comparison.trained["mnad"].sizes, comparison.trained["dual_memory"].sizes,
            comparison.coreset_scales) == ((2, 3), (4, 8), (1.0, 2.0))
    subset = comparison_run.resolve_comparison(comparison_run.build_parser("x").parse_args(
        [*args, "--methods=mnad,vpc", "--mem_dims=1"]))      # a method left out: its flags are not read
    assert subset.methods == ("vpc", "mnad") and list(subset.trained) == ["mnad"]
