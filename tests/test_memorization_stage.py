"""The Memorization stage end to end on tiny generated data, with the real RN101 architecture.

The backbone has random weights, saved as a local file and loaded through --clip_weights, the
path a user's weights take. Object batches are cut at fixed boxes here, so this test does not
depend on the detection stage.
"""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from extra.make_demo import make_demo
from extra.workdir import WorkDir
from Memorization.banks.specs import HIGHLEVEL, SPATIAL, TEMPORAL, training_patches
from Memorization.encoders.clip_resnet import build_random
from Memorization.encoders.contract import save_checkpoint
from Memorization.options import MethodConfig
from Memorization.run import main
from tests.helpers import write_fixed_box_objects

REPO = Path(__file__).resolve().parent.parent
D = 4
RATIOS = ["--spatial_f_coreset=1", "--temporal_f_coreset=1", "--highlevel_f_coreset=0.5"]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("memorization")
    make_demo(root / "data", "avenue", seed=1, n_train=2, n_test=2, n_frames=13, width=96, height=64)
    write_fixed_box_objects(root / "data", root / "work", D)
    weights = root / "rn101_random.pt"
    save_checkpoint(build_random("RN101", seed=0), weights)
    args = [f"--data_root={root / 'data'}", f"--work_dir={root / 'work'}", "--dataset=avenue",
            f"--consecutive={D}", f"--clip_weights={weights}", *RATIOS]
    return root, args


def run_and_capture(capsys, args):
    assert main(args) == 0
    return capsys.readouterr()


def test_full_run_writes_the_published_layout(stage, capsys):
    root, args = stage
    output = run_and_capture(capsys, args)
    work = WorkDir(root / "work", "avenue")
    # 13 frames, clips of 4: 3 clips per video; clip c holds c % 3 objects -> 0 + 1 + 2 = 3 objects
    with h5py.File(work.local_features(32, "test", "01"), "r") as f:
        assert sorted(f) == ["0000", "0001", "0002"]
        assert f["0000"].shape == (1,) and f["0001"].shape == (1, 32, D, 28, 28) and f["0002"].shape == (2, 32, D, 28, 28)
    with h5py.File(work.global_features(32, "train", "02"), "r") as f:
        assert f["0002"].shape == (1, 1536, D)
    spatial = torch.load(work.local_dir(32) / "spatial_memory_bank_1.0.pt")
    temporal = torch.load(work.local_dir(32) / "temporal_memory_bank_1.0.pt")
    highlevel = torch.load(work.global_dir(32) / "highlevel_memory_bank_0.5.pt")
    # ratio 1 keeps every patch: 2 videos x 3 objects x 7 x 7 spatial, x (d - 1) temporal
    assert spatial.shape == (2 * 3 * 49, 32) and temporal.shape == (2 * 3 * (D - 1), 32)
    # ratio 0.5 per video: int(0.5 * 3 clips * 4 frames) = 6 items per video
    assert highlevel.shape == (12, 1536)
    assert "WARNING: made with random (not pretrained) weights" in output.out
    assert "RANDOM WEIGHTS" in output.err
    results = json.loads((work.results(32) / "spatial1.0_temporal1.0_highlevel0.5" / "results.json").read_text())
    assert results["metadata"]["random_weights"] is True
    assert results["results"]["n_frames"] == 2 * 12            # the 13th frame of each video has no clip
    for stream in ("spatial", "temporal", "local", "highlevel", "total"):
        assert 0.0 <= results["results"]["fixed"]["streams"][stream]["micro"] <= 1.0


def test_rerun_reuses_artifacts_and_prints_the_same_numbers(stage, capsys):
    root, args = stage
    first = run_and_capture(capsys, args).out
    work = WorkDir(root / "work", "avenue")
    features = work.local_features(32, "test", "02")
    stamp = features.stat().st_mtime_ns
    second = run_and_capture(capsys, args).out
    assert "memory banks: reusing" in second
    assert features.stat().st_mtime_ns == stamp
    table = [line for line in first.splitlines() if line.startswith("|")]
    assert table and table == [line for line in second.splitlines() if line.startswith("|")]
    # features and banks alone suffice: no backbone is loaded at all
    reused = run_and_capture(capsys, [a for a in args if not a.startswith("--clip_weights")]
                             + ["--save_feature=False", "--save_memory=False"])
    assert [line for line in reused.out.splitlines() if line.startswith("|")] == table
    assert "WARNING: made with random (not pretrained) weights" in reused.out


def test_a_calibration_saved_by_another_version_is_made_again(stage, capsys):
    from Memorization.calibration.weights import CALIBRATION_VERSION

    root, args = stage
    run_and_capture(capsys, args)
    path, = (root / "work").rglob("calibration_*.json")
    saved = json.loads(path.read_text())
    assert saved["record"]["calibration_version"] == CALIBRATION_VERSION
    saved["record"]["calibration_version"] = CALIBRATION_VERSION - 1
    path.write_text(json.dumps(saved))
    run_and_capture(capsys, args)
    assert json.loads(path.read_text())["record"]["calibration_version"] == CALIBRATION_VERSION


def test_banks_made_under_other_settings_are_refused(stage, capsys):
    root, args = stage
    run_and_capture(capsys, args)
    with pytest.raises(Exception, match=r"spatial_memory_bank_1\.0\.pt was made with other settings "
                                        r"\(pool_for_sm: file 4, this run 7\)"):
        main(args + ["--pool_for_sm=7", "--save_memory=False", "--save_feature=False"])


def test_training_patches_of_a_video_with_only_empty_clips():
    method = MethodConfig("avenue", D, 32)
    placeholder = torch.zeros(1)
    assert training_patches(SPATIAL, [placeholder, placeholder], method).shape[0] == 0
    assert training_patches(TEMPORAL, [placeholder, placeholder], method).shape[0] == 0
    assert training_patches(HIGHLEVEL, [torch.ones(1, 1536, D)] * 2, method).shape == (2 * D, 1536)


@pytest.mark.parametrize("cwd, script", [(REPO, "Memorization/run.py"), (REPO / "Memorization", "run.py")])
def test_command_line_errors_are_one_line(tmp_path, cwd, script):
    result = subprocess.run([sys.executable, script, "--dataset=avenue", f"--data_root={tmp_path}",
                             f"--work_dir={tmp_path / 'work'}", "--random_weights"],
                            cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: avenue test folder not found")
    assert "Traceback" not in result.stderr
    unknown = subprocess.run([sys.executable, script, "--dataset=ped2"], cwd=cwd, capture_output=True, text=True)
    assert (unknown.returncode, unknown.stderr) == (2, "error: unknown dataset 'ped2'; choose one of: "
                                                       "avenue, shanghai, iitb\n")


def test_saved_scores_evaluate_again_without_features(stage, capsys):
    root, args = stage
    run_and_capture(capsys, args)
    from Memorization.evaluate import main as evaluate_main

    folder = WorkDir(root / "work", "avenue").results(32) / "spatial1.0_temporal1.0_highlevel0.5"
    saved = json.loads((folder / "results.json").read_text())["results"]
    assert evaluate_main([str(folder)]) == 0
    again = capsys.readouterr().out
    assert f"| total (local+global) | {100 * saved['protocol']['total']['auroc']:.2f} |" in again
    assert evaluate_main([str(folder), "--fixed_a1=1.0", "--fixed_sigma=3"]) == 0
    assert "- fixed: weights a1=1.0, a2=0.0, b1=0.5, b2=0.5, sigma=3 chosen in advance" in capsys.readouterr().out
