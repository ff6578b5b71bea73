"""The dual-memory model's train and evaluate commands on tiny demo data (16 x 16 clips of 16 frames, 2 + 2
videos of 24 frames, 2 epochs, 8 memory slots): a run killed after an epoch and rerun ends bit-identical
to one never interrupted; the frames the evaluation covers; the official state dict; pseudo-anomalous
clips; the label-free column of a run with --hold_out; one-line errors."""
import json

import numpy as np
import pytest
import torch

from DualMemory.checkpoints import load_checkpoint
from DualMemory.data import clip_input, dual_windows, pseudo_input, skip_clip
from DualMemory.evaluate import main as evaluate_main
from DualMemory.options import MODEL_FILE, RESUME_FILE, build_parser, resolve_config
from DualMemory.scoring import cut_labels
from DualMemory.train import main as train_main
import extra.training as shared_training
from extra.errors import VPCError, run_main
from extra.evaluation.results import RESULTS_FILE, SCORES_FILE, load_results
from extra.make_demo import load_manifest, make_demo
from extra.windows import whole

SMALL = ["--h", "16", "--w", "16", "--epochs", "2", "--mem_dim", "8", "--pseudo_anomaly_jump", "0.5", "--lr", "0.001"]
RUN = "dual_h16_w16_lr0.001_epochs2_mem_dim8_pseudo_anomaly_jump0.5"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dual") / "data"
    make_demo(root, "avenue", seed=0, n_train=2, n_test=2, n_frames=24, width=64, height=48)
    return root


def args_of(data, work, *extra):
    return [f"--data_root={data}", f"--work_dir={work}", *SMALL, *map(str, extra)]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    work = tmp_path_factory.mktemp("whole")
    assert train_main(args_of(data, work)) == 0
    assert evaluate_main(args_of(data, work)) == 0
    return work


class Killed(Exception):
    pass


def test_a_run_killed_after_an_epoch_resumes_to_the_same_bits(data, trained, tmp_path, monkeypatch, capsys):
    written = shared_training.write_resume

    def write_then_die(*args):
        written(*args)
        raise Killed

    monkeypatch.setattr(shared_training, "write_resume", write_then_die)
    with pytest.raises(Killed):
        train_main(args_of(data, tmp_path))
    run = tmp_path / "dual_memory" / "avenue" / RUN
    assert (run / RESUME_FILE).is_file() and not (run / MODEL_FILE).is_file()
    monkeypatch.undo()
    assert train_main(args_of(data, tmp_path)) == 0
    assert f"resuming {RUN} after epoch 1 of 2" in capsys.readouterr().out
    assert not (run / RESUME_FILE).exists()
    assert (run / MODEL_FILE).read_bytes() == (trained / "dual_memory/avenue" / RUN / MODEL_FILE).read_bytes()
    losses = load_checkpoint(run / MODEL_FILE).settings["losses"]
    assert [entry["epoch"] for entry in losses] == [1, 2] and sum(e["pseudo_anomalies"] for e in losses) > 0


def test_the_evaluation_scores_the_ninth_frame_of_each_clip(data, trained):
    folder = trained / "dual_memory" / "avenue" / RUN / "results"
    saved = load_results(folder / SCORES_FILE, folder / RESULTS_FILE)
    manifest = load_manifest(data / "avenue")
    # 24 frames give 9 clips, which score frames 8 .. 16
    assert saved.scores.names == ["01", "02"] and saved.scores.lengths == [9, 9]
    for labels, video in zip(saved.scores.labels, manifest["test"]):
        np.testing.assert_array_equal(labels, video["labels"][8:17])
    psnr = saved.scores.banks["psnr"][0]
    expected = 1 - (psnr - psnr.min()) / (psnr.max() - psnr.min())
    np.testing.assert_allclose(saved.fused["total"][0], expected)
    document = json.loads((folder / RESULTS_FILE).read_text())
    assert "label_free" not in document["results"] and document["metadata"]["held_out"] == []
    np.testing.assert_array_equal(cut_labels([0] * 9 + [1, 1, 0], 1, 2), [1, 1])


def test_the_official_state_dict_gives_the_same_scores_and_a_pickle_is_refused(data, trained, tmp_path, capsys):
    checkpoint = load_checkpoint(trained / "dual_memory/avenue" / RUN / MODEL_FILE)
    torch.save({"model_statedict": checkpoint.state}, tmp_path / "model_00.pth")
    assert load_checkpoint(tmp_path / "model_00.pth").config == {**checkpoint.config, "shrink_thres": 0.0005}
    assert evaluate_main(args_of(data, trained, "--model_dir", tmp_path / "model_00.pth")) == 0
    ours = load_results(trained / "dual_memory/avenue" / RUN / "results" / SCORES_FILE,
                        trained / "dual_memory/avenue" / RUN / "results" / RESULTS_FILE)
    theirs = load_results(trained / "dual_memory/avenue/given_model_00/results" / SCORES_FILE,
                          trained / "dual_memory/avenue/given_model_00/results" / RESULTS_FILE)
    np.testing.assert_array_equal(ours.scores.concat("psnr"), theirs.scores.concat("psnr"))
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pth")
    with pytest.raises(VPCError, match=r"holds a whole pickled model, .*\['model'\]\.state_dict\(\)"):
        load_checkpoint(tmp_path / "pickled.pth")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes((trained / "dual_memory/avenue" / RUN / MODEL_FILE).read_bytes()[:5000])
    assert run_main(evaluate_main, args_of(data, trained, "--model_dir", damaged)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is not a readable dual-memory checkpoint" in err


def test_pseudo_anomalous_clips_skip_frames_and_copy_the_first_channel(data):
    from extra.cli import dataset_settings
    from extra.datasets import scan_split

    videos = scan_split(dataset_settings("avenue"), data, "train")
    config = resolve_config(build_parser("t").parse_args(args_of(data, data)))
    windows = dual_windows(whole(videos), config)
    # the first video's clip 1 (frames 1-16) at stride 2 would end at frame 31, past 23: drawn again, then clamped
    rng = np.random.default_rng(0)
    draws = np.random.default_rng(0)
    start = 1
    for _ in range(10):
        if 23 + 1 >= start + 30:
            break
        start = int(draws.integers(0, 24))
    skip = skip_clip(windows, 1, 2, rng, "clamp")
    expected = clip_input(windows.frames(0, [min(start + 2 * k, 23) for k in range(16)]))
    assert torch.equal(skip, expected)
    clip = windows[1]
    first = pseudo_input(clip, skip, "first")
    assert all(torch.equal(first[c], skip[0]) for c in range(3)) and torch.equal(pseudo_input(clip, skip, "all"), skip)
    # a standardised frame: mean 0 and unbiased std 1 over all its values
    assert abs(float(clip[:, 0].mean())) < 1e-5 and abs(float(clip[:, 0].std()) - 1) < 1e-5


def test_a_run_trained_with_hold_out_has_a_label_free_column(data, tmp_path, capsys):
    args = args_of(data, tmp_path, "--hold_out", "1", "--epochs", "1")
    assert train_main(args) == 0
    assert evaluate_main(args + ["--false_alarm_rate", "0.2"]) == 0
    report = capsys.readouterr().out
    assert "chosen on training videos only (held out: 01);" in report
    folder = next((tmp_path / "dual_memory" / "avenue").glob("*hold_out1/results_false_alarm_rate0.2"))
    free = json.loads((folder / RESULTS_FILE).read_text())["results"]["label_free"]
    assert free["calibration"]["held_out"] == ["01"] and free["target_false_alarm_rate"] == 0.2
    assert set(free["streams"]) == {"psnr", "total"} and len(free["calibration"]["recipes"]) == 6


def test_bad_flags_are_one_line(data, tmp_path, capsys):
    for flags, expected in ((["--h", "12"], "--h and --w must be multiples of 8"),
                            (["--pseudo_anomaly_jump", "2"], "--pseudo_anomaly_jump must lie in [0, 1]"),
                            (["--memory_routing", "nope"], "invalid choice: 'nope'")):
        assert run_main(train_main, args_of(data, tmp_path, *flags)) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err


def test_own_footage_fit_and_score_with_the_dual_memory_model(data, tmp_path, capsys):
    import csv

    from fit import main as fit_main
    from score import main as score_main

    model = tmp_path / "camera.dual"
    flags = ["--h", "16", "--w", "16", "--epochs", "1", "--mem_dim", "8", f"--work_dir={tmp_path / 'work'}"]
    assert fit_main([data / "avenue/training/frames", "--out", model, "--method", "dual_memory", *flags]) == 0
    out = capsys.readouterr().out
    assert f"model: {model} (dual-memory, 2 normal videos, held out for calibration: 01; alarm threshold" in out
    calibration = load_checkpoint(model).settings["calibration"]
    assert score_main(list(map(str, [model, data / "avenue/testing/frames/01", "--out_dir", tmp_path / "scores"]))) == 0
    assert "01: 9 frames scored" in capsys.readouterr().out     # 24 frames: frames 8 .. 16, the 9th of each clip
    with open(tmp_path / "scores/01.csv") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["frame", "timestamp", "psnr", "fused", "alarm"]
    # one row per frame; the first 8 and the last 7 with empty scores
    assert [int(row[0]) for row in rows[1:]] == list(range(24)) and rows[1][2:] == rows[-1][2:] == ["", "", "0"]
    assert all(int(row[4]) == (float(row[3]) > calibration["threshold"]) for row in rows[9:18])
    with pytest.raises(VPCError, match="^--precision is VideoPatchCore's"):
        score_main(list(map(str, [model, data / "avenue/testing/frames/01", "--precision", "bf16"])))
