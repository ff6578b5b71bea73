"""MNAD's train and evaluate commands on tiny demo data (32 x 32 windows, 2 + 2 videos of 12 frames, 2 epochs,
4 memory items): a run killed after an epoch and rerun ends bit-identical to one never interrupted; the
evaluation's results and the frames they cover; the score normalisation by hand; one-line errors."""
import json
import math
import re

import numpy as np
import pytest
import torch

import extra.training as shared_training
from extra.errors import VPCError, run_main
from extra.evaluation.results import RESULTS_FILE, SCORES_FILE, load_results
from extra.evaluation.scores import make_video_scores
from extra.make_demo import load_manifest, make_demo
from MNAD import memory
from MNAD.checkpoints import load_checkpoint
from MNAD.evaluate import main as evaluate_main
from MNAD.evaluation import LABEL_FREE_NOTE
from MNAD.options import MODEL_FILE, RESUME_FILE, build_parser, resolve_config
from MNAD.scoring import STREAMS, MNADWeights, cut_labels, mnad_streams
from MNAD.train import main as train_main

SMALL = ["--h", "32", "--w", "32", "--epochs", "2", "--msize", "4"]
RUN = "pred_msize4_h32_w32_epochs2"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnad") / "data"
    make_demo(root, "avenue", seed=0, n_train=2, n_test=2, n_frames=12, width=64, height=48)
    return root


def args_of(data, work, *extra):
    return [f"--data_root={data}", f"--work_dir={work}", *SMALL, *map(str, extra)]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A 2-epoch run never interrupted, and its evaluation."""
    work = tmp_path_factory.mktemp("whole")
    assert train_main(args_of(data, work)) == 0
    assert evaluate_main(args_of(data, work)) == 0
    return work


class Killed(Exception):
    pass


def test_a_run_killed_after_an_epoch_resumes_to_the_same_bits(data, trained, tmp_path, monkeypatch, capsys):
    written = shared_training.write_resume

    def write_then_die(path, *args):
        written(path, *args)
        raise Killed        # the process dies once the first epoch's resume file is complete

    monkeypatch.setattr(shared_training, "write_resume", write_then_die)
    with pytest.raises(Killed):
        train_main(args_of(data, tmp_path))
    run = tmp_path / "mnad" / "avenue" / RUN
    assert (run / RESUME_FILE).is_file() and not (run / MODEL_FILE).is_file()
    monkeypatch.undo()
    assert train_main(args_of(data, tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"resuming {RUN} after epoch 1 of 2" in out
    # one line per epoch, readable in a log: the epoch's mean losses and seconds
    assert re.search(rf"^MNAD {RUN} epochs: 1/1 done \([0-9.]+ s\), epoch 2: pixel [0-9.]+, compactness [0-9.]+, "
                     rf"separateness [0-9.]+, [0-9.]+ s$", out, re.MULTILINE), out
    assert not (run / RESUME_FILE).exists()
    whole, resumed = load_checkpoint(trained / "mnad/avenue" / RUN / MODEL_FILE), load_checkpoint(run / MODEL_FILE)
    assert set(whole.state) == set(resumed.state)
    assert all(torch.equal(whole.state[name], resumed.state[name]) for name in whole.state)
    assert torch.equal(whole.items, resumed.items) and whole.settings == resumed.settings
    assert (run / MODEL_FILE).read_bytes() == (trained / "mnad/avenue" / RUN / MODEL_FILE).read_bytes()
    # a finished run is not trained again
    assert train_main(args_of(data, tmp_path)) == 0
    assert "already trained" in capsys.readouterr().out


def test_the_evaluation_covers_the_frames_each_window_predicts(data, trained):
    folder = trained / "mnad" / "avenue" / RUN / "results"
    document = json.loads((folder / RESULTS_FILE).read_text())
    results, metadata = document["results"], document["metadata"]
    assert metadata["alpha"] == 0.6 and metadata["th"] == 0.01 and metadata["held_out"] == []
    for column in ("protocol", "fixed"):
        assert set(results[column]["streams"]) == {"psnr", "distance", "total"}
        for stream in results[column]["streams"].values():
            assert all(0 <= stream[kind] <= 1 for kind in ("micro", "macro", "macro_padded"))
    assert "label_free" not in results
    assert results["protocol"]["total"]["auroc"] == results["protocol"]["streams"]["total"]["micro"]
    assert results["fixed"]["weights"] == {"alpha": 0.6}
    # a prediction window of 5 frames scores its last: each 12-frame video loses its first 4 labels
    saved = load_results(folder / SCORES_FILE, folder / RESULTS_FILE)
    manifest = load_manifest(data / "avenue")
    assert saved.scores.names == ["01", "02"] and saved.scores.lengths == [8, 8]
    for labels, video in zip(saved.scores.labels, manifest["test"]):
        np.testing.assert_array_equal(labels, video["labels"][4:])
    assert results["n_frames"] == 16 and results["n_anomalous_frames"] == sum(sum(v["labels"][4:])
                                                                               for v in manifest["test"])
    np.testing.assert_array_equal(cut_labels([0, 1, 1], 1), [0, 1, 1])      # reconstruction drops nothing
    np.testing.assert_array_equal(cut_labels([0, 0, 1, 1, 0], 3, first_frame=1), [1, 0])


def test_official_state_dict_and_items_give_the_same_scores(data, trained, tmp_path, capsys):
    checkpoint = load_checkpoint(trained / "mnad" / "avenue" / RUN / MODEL_FILE)
    torch.save(checkpoint.state, tmp_path / "state.pth")
    torch.save(checkpoint.items, tmp_path / "keys.pt")
    given = ["--model_dir", tmp_path / "state.pth", "--m_items_dir", tmp_path / "keys.pt"]
    assert evaluate_main(args_of(data, trained, *given)) == 0
    report = capsys.readouterr().out
    assert "Published protocol (alpha fixed in advance, PSNR and distance min-maxed per test video; micro" in report
    assert "- fixed: weights alpha=0.6 chosen in advance;" in report and LABEL_FREE_NOTE in report
    (folder,) = (trained / "mnad" / "avenue").glob("given_*/results_h32_w32")
    ours = load_results(trained / "mnad/avenue" / RUN / "results" / SCORES_FILE,
                        trained / "mnad/avenue" / RUN / "results" / RESULTS_FILE)
    theirs = load_results(folder / SCORES_FILE, folder / RESULTS_FILE)
    for stream in STREAMS:
        np.testing.assert_array_equal(ours.scores.concat(stream), theirs.scores.concat(stream))
    assert ours.results == theirs.results


def test_score_normalisation_by_hand():
    psnr, distance = [30.0, 20.0, 25.0], [0.2, 0.1, 0.3]
    # per video: PSNR' = (1, 0, 0.5), distance' = (0.5, 0, 1); normality = 0.6 PSNR' + 0.4 (1 - distance')
    # = (0.6 + 0.2, 0 + 0.4, 0.3 + 0) = (0.8, 0.4, 0.3); the anomaly score is 1 - normality
    scores = make_video_scores({"psnr": [psnr], "distance": [distance]}, [[0, 1, 1]], STREAMS)
    streams = mnad_streams(scores, MNADWeights(0.6))
    np.testing.assert_allclose(streams["psnr"], [0.0, 1.0, 0.5], atol=1e-15)
    np.testing.assert_allclose(streams["distance"], [0.5, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(streams["total"], [0.2, 0.6, 0.7], atol=1e-15)


def test_update_normalised_over_the_items_own_queries():
    # as test_mnad_model's example: q_b is p2's only query, but p2's column max is q_a's score; divided by
    # the max over p2's own queries (the paper), q_b weighs 1 instead of e^(0.5 - 0.6)
    qa, qb = [0.8, 0.6], [-math.sqrt(0.75), 0.5]
    queries, items = torch.tensor([qa, qb]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p2 = torch.tensor([0.0, 1.0]) + torch.tensor(qb)
    assert torch.allclose(memory.update_items(queries, items, "assigned")[1], p2 / p2.norm(), atol=1e-6)
    assert not torch.allclose(memory.update_items(queries, items)[1], p2 / p2.norm(), atol=1e-3)
    # summed losses: the means times the queries (compactness: times the queries' elements)
    assert memory.compactness_loss(queries, items, reduction="sum").item() == pytest.approx(
        4 * memory.compactness_loss(queries, items).item())
    assert memory.separateness_loss(queries, items, reduction="sum").item() == pytest.approx(
        2 * memory.separateness_loss(queries, items).item())


def test_paper_score_forms_are_parsed_and_name_the_results():
    def config(*flags, evaluation=True):
        return resolve_config(build_parser("test", evaluation).parse_args(["--data_root=/d", "--work_dir=/w", *flags]))

    official, trained = config(), config(evaluation=False)    # train.py's parser has neither flag
    assert (official.point_score, official.psnr_peak) == (trained.point_score, trained.psnr_peak) == ("official", "one")
    assert official.results_name() == "results"
    paper = config("--point_score", "paper", "--psnr_peak", "frame_max")
    assert (paper.point_score, paper.psnr_peak) == ("paper", "frame_max")
    assert paper.results_name() == "results_point_score-paper_psnr_peak-frame_max"
    assert paper.evaluation_record()["point_score"] == "paper" and paper.evaluation_record()["psnr_peak"] == "frame_max"
    assert paper.run_name == official.run_name == "pred"      # the model is the same: only its evaluation differs
    with pytest.raises(VPCError, match="invalid choice"):
        config("--point_score", "pixel")


def one_line(capsys, expected):
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[-1].startswith("error: ") and expected in lines[-1], err
    assert all(line.startswith(("warning: ", "error: ")) for line in lines), err
    return lines


def test_damaged_files_and_short_videos_are_one_line(data, trained, tmp_path, capsys):
    run = tmp_path / "mnad" / "avenue" / RUN
    run.mkdir(parents=True)
    (run / RESUME_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    assert run_main(train_main, args_of(data, tmp_path)) == 2
    one_line(capsys, f"{run / RESUME_FILE} is not a readable MNAD resume file (damaged")
    good = (trained / "mnad" / "avenue" / RUN / MODEL_FILE).read_bytes()
    (run / MODEL_FILE).write_bytes(good[:len(good) // 2])
    assert run_main(evaluate_main, args_of(data, tmp_path)) == 2
    one_line(capsys, f"{run / MODEL_FILE} is not a readable MNAD checkpoint")
    assert run_main(train_main, args_of(data, tmp_path, "--t_length", "13")) == 2
    lines = one_line(capsys, "no training video has the 13 frames one window needs")
    assert len(lines) == 3      # a warning for each video too short
    assert run_main(evaluate_main, args_of(data, tmp_path, "--model_dir", tmp_path / "none.pth")) == 2
    one_line(capsys, "file not found")
