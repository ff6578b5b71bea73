"""The Object Detection stage end to end on generated demo data, with the offline motion detector."""
import os
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import ObjectDetection.pipeline as pipeline
from extra.errors import EXIT_ERROR, EXIT_INTERRUPTED, VPCError, run_main
from extra.io import save_pickle
from extra.make_demo import make_demo
from extra.store import clip_key
from ObjectDetection.pipeline import DetectionOptions, plan_jobs
from ObjectDetection.run import main

REPO = Path(__file__).resolve().parent.parent
D = 4                       # frames per clip in these tests: 24 frames -> 6 clips per video
VIDEOS = ["01", "02"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_demo(root, "avenue", seed=0, n_train=2, n_test=2, n_frames=24, width=192, height=108)
    return root


def detect(data_root, work_dir, *flags):
    argv = ["--dataset=avenue", f"--data_root={data_root}", f"--work_dir={work_dir}", f"--consecutive={D}",
            "--detector=motion", *flags]
    return run_main(main, argv)


def batches_path(work_dir, split, video):
    return Path(work_dir) / "objects" / "avenue" / split / f"{video}_object_batches.h5"


def read_batches(path):
    with h5py.File(path, "r") as f:
        return {key: (f[key][()], f[key].attrs["boxes"]) for key in f}


def tree(work_dir):
    """Every file under the working directory but the run lock (extra.lock), which stays by design."""
    work_dir = Path(work_dir)
    return sorted(str(p.relative_to(work_dir)) for p in work_dir.rglob("*")
                  if p.is_file() and not (p.parent == work_dir and p.name.startswith(".lock-")))


def no_detector(*args, **kwargs):
    raise AssertionError("no detector should be made")


# --- flags ----------------------------------------------------------------------------------------

def test_plain_detection_runs_without_pickle_or_image_flags():
    jobs = plan_jobs(DetectionOptions())
    assert [(j.split, j.write_batches, j.load_pickle, j.save_pickle, j.images) for j in jobs] == [
        ("train", True, False, False, False), ("test", True, False, False, False)]
    assert [j.split for j in plan_jobs(DetectionOptions(train_od=False))] == ["test"]


def test_any_pickle_or_image_flag_turns_plain_detection_off():
    (job,) = plan_jobs(DetectionOptions(is_load_test_pickle=True))       # train: nothing asked for
    assert (job.split, job.load_pickle, job.write_batches) == ("test", True, True)
    (job,) = plan_jobs(DetectionOptions(is_save_train_pickle=True))
    assert (job.split, job.save_pickle, job.write_batches, job.load_pickle) == ("train", True, True, False)
    jobs = plan_jobs(DetectionOptions(save_image=True))
    assert [(j.split, j.write_batches, j.save_image, j.save_image_all) for j in jobs] == [
        ("train", False, True, False), ("test", False, True, False)]


def test_contradicting_pickle_flags_are_refused():
    with pytest.raises(VPCError, match="--is_load_test_pickle and --is_save_test_pickle both given"):
        plan_jobs(DetectionOptions(is_load_test_pickle=True, is_save_test_pickle=True))


def test_nothing_to_do_is_an_error(tmp_path, data_root, capsys):
    assert detect(data_root, tmp_path, "--train_od=False", "--test_od=no") == EXIT_ERROR
    assert "nothing to do" in capsys.readouterr().err


# --- runs -----------------------------------------------------------------------------------------

def test_run_writes_the_object_tree_and_a_rerun_skips_it(tmp_path, data_root, capsys, monkeypatch):
    assert detect(data_root, tmp_path) == 0
    assert tree(tmp_path) == [f"objects/avenue/{split}/{v}_object_batches.h5"
                              for split in ("test", "train") for v in VIDEOS]
    n_objects = n_squared = 0
    for split in ("train", "test"):
        for video in VIDEOS:
            clips = read_batches(batches_path(tmp_path, split, video))
            assert sorted(clips) == [clip_key(i) for i in range(6)]
            for objects, boxes in clips.values():
                assert objects.dtype == np.float32
                if len(boxes) == 0:
                    assert objects.shape == (1,)
                else:
                    assert objects.shape == (len(boxes), 3, D, 64, 64)
                    assert objects.min() >= -1 and objects.max() <= 1
                    assert (boxes[:, 4] == 1.0).all()
                    inside = (boxes[:, 0] > 0) & (boxes[:, 1] > 0)    # not clipped at 0 (640 x 360 is far)
                    sides = boxes[inside, 2:4] - boxes[inside, 0:2]
                    np.testing.assert_array_equal(sides[:, 0], sides[:, 1])
                    n_squared += len(sides)
                n_objects += len(boxes)
    assert n_objects > 24 and n_squared > 12      # the demo's walkers are found in most clips
    summary = capsys.readouterr().out
    assert "train: 2 videos, 12 clips" in summary and "test: 2 videos, 12 clips" in summary

    monkeypatch.setattr(pipeline, "make_detector", no_detector)
    assert detect(data_root, tmp_path) == 0
    assert "train: 2 videos (2 already done), 12 clips" in capsys.readouterr().out


def test_interrupted_run_resumes_to_identical_files(tmp_path, data_root, monkeypatch):
    assert detect(data_root, tmp_path / "straight") == 0

    calls = []
    original = pipeline.objects_array

    def interrupted(crops):          # Ctrl-C in the middle of the second training video
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        return original(crops)

    monkeypatch.setattr(pipeline, "objects_array", interrupted)
    assert detect(data_root, tmp_path / "resumed") == EXIT_INTERRUPTED
    assert tree(tmp_path / "resumed") == ["objects/avenue/train/01_object_batches.h5"]   # no partial file
    monkeypatch.setattr(pipeline, "objects_array", original)
    assert detect(data_root, tmp_path / "resumed") == 0
    assert tree(tmp_path / "resumed") == tree(tmp_path / "straight")
    for name in tree(tmp_path / "straight"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes()


def test_pickle_round_trip_through_the_stage(tmp_path, data_root, monkeypatch):
    saving, loading = tmp_path / "saving", tmp_path / "loading"
    assert detect(data_root, saving, "--is_save_train_pickle", "--is_save_test_pickle=yes") == 0
    pickles = sorted(p.name for p in (saving / "objects" / "avenue").glob("*.pickle"))
    assert pickles == ["avenue_test.pickle", "avenue_train.pickle"]
    for name in pickles:
        (loading / "objects" / "avenue").mkdir(parents=True, exist_ok=True)
        shutil.copy(saving / "objects" / "avenue" / name, loading / "objects" / "avenue" / name)
    monkeypatch.setattr(pipeline, "make_detector", no_detector)
    assert detect(data_root, loading, "--is_load_train_pickle=True", "--is_load_test_pickle=1") == 0
    for split in ("train", "test"):
        for video in VIDEOS:
            made, rebuilt = (read_batches(batches_path(w, split, video)) for w in (saving, loading))
            assert sorted(made) == sorted(rebuilt)
            for key in made:
                np.testing.assert_array_equal(made[key][0], rebuilt[key][0])
                np.testing.assert_array_equal(made[key][1], rebuilt[key][1])


def test_pickle_is_rebuilt_from_finished_files_without_detecting(tmp_path, data_root, monkeypatch):
    assert detect(data_root, tmp_path / "a", "--is_save_test_pickle") == 0
    assert detect(data_root, tmp_path / "b") == 0
    monkeypatch.setattr(pipeline, "make_detector", no_detector)
    assert detect(data_root, tmp_path / "b", "--is_save_test_pickle") == 0
    pickle_name = "objects/avenue/avenue_test.pickle"
    assert (tmp_path / "a" / pickle_name).read_bytes() == (tmp_path / "b" / pickle_name).read_bytes()


def test_pickle_with_other_boxes_than_the_files_stops_the_run(tmp_path, data_root, capsys):
    assert detect(data_root, tmp_path, "--is_save_test_pickle", "--train_od=False") == 0
    pickle_path = tmp_path / "objects" / "avenue" / "avenue_test.pickle"
    save_pickle({"1": [[]] * 6, "2": [[]] * 6}, pickle_path)          # no object anywhere
    capsys.readouterr()
    assert detect(data_root, tmp_path, "--is_load_test_pickle", "--train_od=False") == EXIT_ERROR
    assert "01_object_batches.h5 holds other boxes than pickle avenue_test.pickle" in capsys.readouterr().err
    assert detect(data_root, tmp_path, "--is_load_test_pickle", "--train_od=False", "--overwrite") == 0
    for objects, boxes in read_batches(batches_path(tmp_path, "test", "02")).values():
        assert objects.shape == (1,) and boxes.shape == (0, 6)


def test_other_settings_stop_the_run_and_overwrite_redoes(tmp_path, data_root, capsys):
    assert detect(data_root, tmp_path, "--test_od=False") == 0
    capsys.readouterr()
    argv = ["--dataset=avenue", f"--data_root={data_root}", f"--work_dir={tmp_path}", f"--consecutive={D}",
            "--detector=hog", "--test_od=False"]
    assert run_main(main, argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "made with other settings (boxes_from: file 'motion" in err and err.count("\n") == 1
    assert run_main(main, [*argv, "--overwrite"]) == 0
    with h5py.File(batches_path(tmp_path, "train", "01"), "r") as f:
        assert "hog" in f.attrs["vpc_settings"]


def test_images_of_boxes_and_crops(tmp_path, data_root):
    assert detect(data_root, tmp_path, "--is_save_test_pickle", "--train_od=False") == 0
    assert detect(data_root, tmp_path, "--is_load_test_pickle", "--train_od=False", "--save_image",
                  "--save_image_all") == 0
    od_save = tmp_path / "od_save" / "avenue" / "test"
    assert sorted(p.name for p in (od_save / "boxes" / "01").iterdir()) == [f"{clip_key(i)}.jpg" for i in range(6)]
    objects = sum(len(b) for _, b in read_batches(batches_path(tmp_path, "test", "01")).values())
    crops = list((od_save / "objects" / "01").iterdir())
    assert len(crops) == objects * D
    assert (od_save / "objects" / "01" / "0000_obj0_frame3.jpg") in crops


def test_video_files_are_read_like_frame_folders(tmp_path):
    make_demo(tmp_path / "data", "avenue", seed=0, n_train=1, n_test=1, n_frames=24, width=192, height=108,
              as_video_files=True)
    assert detect(tmp_path / "data", tmp_path / "work") == 0
    for split in ("train", "test"):
        clips = read_batches(batches_path(tmp_path / "work", split, "01"))
        assert sorted(clips) == [clip_key(i) for i in range(6)]
        assert sum(len(boxes) for _, boxes in clips.values()) > 6


def test_missing_yolo_weights_is_one_line_with_the_way_out(tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, destination, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    argv = ["--dataset=avenue", f"--data_root={data_root}", f"--work_dir={tmp_path / 'work'}"]
    assert run_main(main, argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: YOLOv5 weights yolov5l.pt are not in the cache") and err.count("\n") == 1
    assert "--detector=motion" in err and "--is_load_train_pickle" in err
    assert not (tmp_path / "work" / "objects" / "avenue" / "train").exists() or \
        not any((tmp_path / "work" / "objects" / "avenue" / "train").iterdir())


def test_command_line_from_the_stage_folder_and_from_the_root(tmp_path, data_root):
    env = {**os.environ, "VPC_DATA_ROOT": str(data_root), "VPC_WORK_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "run.py", "--dataset=avenue", "--detector=motion", "--test_od=false"],
                         cwd=REPO / "ObjectDetection", env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "train: 2 videos, 4 clips" in run.stdout       # avenue's own d = 10: 24 frames give 2 clips
    assert tree(tmp_path) == [f"objects/avenue/train/{v}_object_batches.h5" for v in VIDEOS]
    help_text = subprocess.run([sys.executable, "ObjectDetection/run.py", "--help"], cwd=REPO, env=env,
                               capture_output=True, text=True)
    assert help_text.returncode == 0 and "turns plain detection off" in help_text.stdout
