"""Sharded extraction on a local Ray (extra.sharding, --ray): the same files and memory banks as one
process, a worker killed mid-video retried to the same result, and a one-line error without Ray.

Feature files record how long their extraction took, so two runs never give the same bytes; they
are compared dataset by dataset and attribute by attribute, the timing aside. Object batches and
memory banks hold no timing: they are compared byte for byte (tests.helpers.output_differences).
"""
import shutil
import sys
from dataclasses import fields, replace

import numpy as np
import pytest

import fit
from extra.config import DATASETS
from extra.datasets import Video, list_videos
from extra.errors import EXIT_ERROR, run_main
from extra.make_demo import make_demo
from extra.sharding import RayCluster, connect
from Memorization.features import extract_split_features
from Memorization.run import main as memorization_main
from ObjectDetection.run import main as detection_main
from tests.helpers import DyingVideo, make_run, output_differences, small_random_checkpoint, stage_outputs

D = 4
RATIOS = ["--spatial_f_coreset=0.5", "--temporal_f_coreset=0.5", "--highlevel_f_coreset=0.5"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs, started once for the module (the stages then use it as it is)."""
    ray = pytest.importorskip("ray")
    cluster = RayCluster("local", cpus=2)
    connect(cluster)
    yield cluster
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharding")
    make_demo(root / "data", "avenue", seed=0, n_train=3, n_test=2, n_frames=24, width=192, height=108)
    return root, small_random_checkpoint(root / "tiny.pt")


def run_stages(root, weights, work, *flags):
    """Both stages on the demo data (motion detector, tiny random encoder), output printed."""
    common = ["--dataset=avenue", f"--data_root={root / 'data'}", f"--work_dir={work}", f"--consecutive={D}", *flags]
    assert run_main(detection_main, [*common, "--detector=motion"]) == 0
    assert run_main(memorization_main, [*common, f"--clip_weights={weights}", "--cnl_pool=32", *RATIOS,
                                        "--label_free=False"]) == 0


@pytest.fixture(scope="module")
def single(data):
    """The working directory of a single-process run (no Ray)."""
    root, weights = data
    run_stages(root, weights, root / "single")
    return root / "single"


def test_sharded_stages_write_the_same_files_and_banks_as_one_process(data, single, local_ray, capsys):
    root, weights = data
    sharded = root / "sharded"
    run_stages(root, weights, sharded, "--ray=local")
    assert "coresets of training videos: 3/3 done" in capsys.readouterr().out      # the banks' coresets ran on Ray
    outputs = stage_outputs(single)
    # 5 object batches, 10 feature files, 3 memory banks, the origins of their rows, and the records of both
    assert [sum(name.endswith(end) for name in outputs) for end in (".h5", ".pt", ".origins", ".json")] == [15, 3, 3, 6]
    assert output_differences(single, sharded) == []
    scores = next(single.glob("results/avenue/32/*/scores.npz")).relative_to(single)
    with np.load(single / scores) as expected, np.load(sharded / scores) as actual:
        assert expected.files == actual.files
        for name in expected.files:
            np.testing.assert_array_equal(actual[name], expected[name])


def test_a_worker_killed_mid_video_is_retried_to_the_same_files(data, single, local_ray, tmp_path):
    root, weights = data
    work = tmp_path / "work"
    shutil.copytree(single / "objects", work / "objects")
    run = make_run(work, consecutive=D, data_root=root / "data", cnl_pool=32, backbone=str(weights))
    run = replace(run, context=replace(run.context, ray=local_ray))
    marker = tmp_path / "worker_died"
    videos = list_videos(DATASETS["avenue"], root / "data", "train", D)
    videos[1] = DyingVideo(**{f.name: getattr(videos[1], f.name) for f in fields(Video)}, marker=marker)
    extract_split_features(videos, "train", run, backbone=None)     # with --ray the workers load the encoder
    assert marker.exists()                                          # the first attempt died mid-video
    assert not list(work.rglob("*.partial*"))                       # its half-written file was redone
    train_features = ("*_features/avenue/32/visual/train/*",)
    assert len(stage_outputs(single, train_features)) == 6
    assert output_differences(single, work, train_features) == []


@pytest.mark.parametrize("script", ["ObjectDetection/run.py", "Memorization/run.py", "fit.py"])
def test_without_ray_the_flag_is_a_one_line_error_saying_how_to_install_it(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)       # Ray not importable
    main, argv = {"ObjectDetection/run.py": (detection_main, [f"--work_dir={tmp_path}"]),
                  "Memorization/run.py": (memorization_main, [f"--work_dir={tmp_path}"]),
                  "fit.py": (fit.main, [str(tmp_path), "--out", str(tmp_path / "m.vpc")])}[script]
    assert run_main(main, [*argv, "--ray=local"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "pip install -r requirements-ray.txt" in err


@pytest.mark.parametrize("flags, message", [(["--ray_cpus=2"], "--ray_cpus needs --ray local"),
                                            (["--ray=auto", "--ray_cpus=2"], "goes with --ray local"),
                                            (["--ray=local", "--ray_cpus=0"], "positive number")])
def test_ray_cpus_without_a_local_ray_is_a_one_line_error(flags, message, tmp_path, capsys):
    assert run_main(detection_main, [f"--work_dir={tmp_path}", *flags]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
