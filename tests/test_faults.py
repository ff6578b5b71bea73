"""Faults a long run meets, and what each must show (issue #13): damaged files, a full disk, a kill,
two runs on one working directory, temporary files left behind.

Every fault ends in one line (``error: ...``, exit 2, no traceback) that names the file or folder
and says what to do, or is repaired by a rerun whose scores equal an uninterrupted run's.

One tiny dataset, its object batches (the offline motion detector, so the files carry their
completeness marks and checksums) and an uninterrupted reference run are made once; each test
damages a copy. The backbone is the tiny random CLIP ResNet of tests/helpers.py.
"""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from extra.errors import VPCError, run_main
from extra.io import stale_partials
from extra.lock import work_lock
from extra.make_demo import make_demo
from extra.workdir import WorkDir
from Memorization.evaluate import main as evaluate_main
from Memorization.run import main as memorization_main
from ObjectDetection.run import main as detection_main
from tests.helpers import small_random_checkpoint

REPO = Path(__file__).resolve().parent.parent
D = 3                       # 9 frames -> 3 clips per video
RATIOS = ["--spatial_f_coreset=1", "--temporal_f_coreset=1", "--highlevel_f_coreset=0.5"]
RESULTS = Path("results/avenue/32/spatial1.0_temporal1.0_highlevel0.5")
SUBPROCESS_TIMEOUT = 120
# One compute thread, here and in the stages run as processes: the files' numbers do not depend on
# how a test was run, and a busy 2-core machine does not slow the test down many times over.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Base:
    data: Path
    weights: Path
    objects_only: Path      # a working directory holding the object batches only
    finished: Path          # the same after an uninterrupted Memorization run
    scores: dict            # that run's scores.npz arrays
    results: dict           # and its results.json "results"


def detection_args(data, work, *flags):
    return ["--dataset=avenue", f"--data_root={data}", f"--work_dir={work}", f"--consecutive={D}",
            "--detector=motion", *flags]


def stage_args(base, work, *flags):
    return ["--dataset=avenue", f"--data_root={base.data}", f"--work_dir={work}", f"--consecutive={D}",
            f"--clip_weights={base.weights}", *RATIOS, *flags]


def outputs(work):
    folder = Path(work) / RESULTS
    with np.load(folder / "scores.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, json.loads((folder / "results.json").read_text())["results"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data = root / "data"
    make_demo(data, "avenue", seed=1, n_train=2, n_test=2, n_frames=9, width=96, height=64)
    weights = small_random_checkpoint(root / "small.pt")
    assert run_main(detection_main, detection_args(data, root / "objects_only")) == 0
    shutil.copytree(root / "objects_only", root / "finished")
    made = Base(data, weights, root / "objects_only", root / "finished", {}, {})
    assert run_main(memorization_main, stage_args(made, made.finished)) == 0
    scores, results = outputs(made.finished)
    return replace(made, scores=scores, results=results)


@pytest.fixture
def finished(base, tmp_path):
    """A copy of the working directory of the uninterrupted run."""
    return Path(shutil.copytree(base.finished, tmp_path / "work"))


@pytest.fixture
def objects_only(base, tmp_path):
    """A copy of the working directory holding the object batches only."""
    return Path(shutil.copytree(base.objects_only, tmp_path / "work"))


# --- helpers -----------------------------------------------------------------------------------------

def work_of(work):
    return WorkDir(Path(work), "avenue")


def local_features(work, split, video):
    return work_of(work).local_features(32, split, video)


def global_features(work, split, video):
    return work_of(work).global_features(32, split, video)


def object_batches(work, split, video):
    return work_of(work).object_batches(split, video)


def bank(work, name):
    folder = work_of(work).global_dir(32) if name == "highlevel" else work_of(work).local_dir(32)
    return folder / f"{name}_memory_bank_{0.5 if name == 'highlevel' else 1.0}.pt"


def error_line(stderr, *patterns):
    """The one ``error:`` line of ``stderr`` (the last line; only ``warning:`` lines before it), after
    checking it matches every regex of ``patterns``."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert lines[-1] == errors[0], stderr
    assert all(line.startswith("warning: ") for line in lines[:-1]), stderr
    for pattern in patterns:
        assert re.search(pattern, errors[0]), (pattern, errors[0])
    return errors[0]


def run_stage(capsys, base, work, *flags):
    """The Memorization stage in this process, as its command runs it: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = run_main(memorization_main, stage_args(base, work, *flags))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_script(script, argv):
    return subprocess.run([sys.executable, script, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT, env=ONE_THREAD)


def assert_same_outputs(base, work):
    """Scores and results equal the uninterrupted run's; no temporary file anywhere."""
    scores, results = outputs(work)
    assert sorted(scores) == sorted(base.scores)
    for key, value in base.scores.items():
        np.testing.assert_array_equal(scores[key], value, err_msg=key)
    assert results == base.results
    assert stale_partials(work) == []


def cut_to_half(path):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def alter_one_clip(path):
    """Rewrite the values of the first clip holding objects in place (the file otherwise intact);
    returns the clip's name."""
    with h5py.File(path, "r+") as f:
        key = next(key for key in sorted(f) if f[key].ndim > 1)
        f[key][...] = f[key][()] + 1.0
    return key


def cases(*rows):
    """Parameters of a test, each named by its leading words (all but the last, a regex)."""
    return [pytest.param(*row, id="-".join(row[:-1]).replace(" ", "-")) for row in rows]


def quoted(path):
    return re.escape(str(path))


# --- 1. files cut short ------------------------------------------------------------------------------

def test_cut_short_feature_file_stops_the_stage_in_one_line(base, finished):
    path = local_features(finished, "test", "01")
    cut_to_half(path)
    result = run_script("Memorization/run.py", stage_args(base, finished))
    assert result.returncode == 2, result.stderr
    error_line(result.stderr, quoted(path), r"is damaged \(cut short\)", r"delete it or pass --overwrite")


def test_cut_short_object_batches_stop_the_stage_in_one_line(base, finished):
    path = object_batches(finished, "test", "01")
    local_features(finished, "test", "01").unlink()       # so that the stage reads the object batches again
    cut_to_half(path)
    result = run_script("Memorization/run.py", stage_args(base, finished))
    assert result.returncode == 2, result.stderr
    error_line(result.stderr, quoted(path), r"is damaged \(cut short\)", r"rerun ObjectDetection/run\.py")


# --- 2. a clip altered in place ----------------------------------------------------------------------

def test_altered_feature_clip_is_refused_by_its_checksum(base, finished, capsys):
    path = local_features(finished, "test", "01")
    key = alter_one_clip(path)
    code, _, err = run_stage(capsys, base, finished)
    assert code == 2
    error_line(err, quoted(path), rf"is damaged \(clip {key} does not match its checksum\)")


def test_altered_object_batches_clip_is_refused_by_its_checksum(base, finished, capsys):
    path = object_batches(finished, "test", "02")
    local_features(finished, "test", "02").unlink()
    key = alter_one_clip(path)
    code, _, err = run_stage(capsys, base, finished)
    assert code == 2
    error_line(err, quoted(path), rf"is damaged \(clip {key} does not match its checksum\)")


@pytest.mark.parametrize("attribute, value", [
    ("vpc_complete", '{"clips": 3, "crc'),
    ("vpc_complete", '{"clips": 3, "crc32": [1]}'),
    ("vpc_complete", '[3]'),
    ("vpc_settings", '{"dataset": "ave'),
    ("vpc_settings", '["avenue"]'),
], ids=["mark-cut", "mark-one-checksum", "mark-list", "record-cut", "record-list"])
def test_altered_completeness_mark_or_record_is_one_line(base, finished, capsys, attribute, value):
    path = local_features(finished, "test", "01")
    with h5py.File(path, "r+") as f:
        assert attribute in f.attrs
        f.attrs[attribute] = value
    code, _, err = run_stage(capsys, base, finished)
    assert code == 2
    error_line(err, quoted(path), r"is damaged \(its settings record or completeness mark cannot be read\)")


def test_verify_refuses_an_altered_reused_feature_file_before_any_work(base, finished, capsys):
    # global test features are read whole for scoring anyway; --verify refuses them when they are
    # checked for reuse, before the test features are extracted or anything is scored
    path = global_features(finished, "test", "02")
    key = alter_one_clip(path)
    local = local_features(finished, "test", "02")
    local.unlink()
    code, out, err = run_stage(capsys, base, finished, "--verify")
    assert code == 2
    error_line(err, quoted(path), rf"clip {key} does not match its checksum")
    assert not local.exists() and "scoring test videos" not in out
    # without --verify the file is kept unread, the missing one is made, and scoring refuses it
    code, out, err = run_stage(capsys, base, finished)
    assert code == 2
    error_line(err, quoted(path), rf"clip {key} does not match its checksum")
    assert local.exists() and "test features: 2/2 done" in out


def test_verify_and_training_features_once_the_banks_exist(base, finished, capsys):
    """What the code does: with the banks saved, the training features are neither read nor
    checked, with or without --verify (the run does not reuse them: the banks are what it
    reuses); once the banks must be built again, the altered file is refused."""
    path = local_features(finished, "train", "01")
    key = alter_one_clip(path)
    for flags in ((), ("--verify",)):
        code, _, err = run_stage(capsys, base, finished, *flags)
        assert code == 0, err
        assert_same_outputs(base, finished)
    for name in ("spatial", "temporal", "highlevel"):
        bank(finished, name).unlink()
    for flags in ((), ("--verify",)):
        code, _, err = run_stage(capsys, base, finished, *flags)
        assert code == 2
        error_line(err, quoted(path), rf"clip {key} does not match its checksum")


def test_detection_verify_reads_a_skipped_file_whole(base, finished, capsys):
    """The detection stage keeps a finished object-batches file without reading its clips; --verify
    reads it and refuses one altered in place."""
    path = object_batches(finished, "train", "02")
    key = alter_one_clip(path)
    capsys.readouterr()
    assert run_main(detection_main, detection_args(base.data, finished)) == 0
    capsys.readouterr()
    assert run_main(detection_main, detection_args(base.data, finished, "--verify")) == 2
    error_line(capsys.readouterr().err, quoted(path), rf"clip {key} does not match its checksum")


# --- 3. memory banks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage, problem", cases(
    ("random bytes", r"is damaged \(not a saved torch tensor: cut short or overwritten\)"),
    ("cut short", r"is damaged \(not a saved torch tensor: cut short or overwritten\)"),
    ("other shape", r"is damaged \(its content differs from what was recorded"),
    ("other content", r"is damaged \(its content differs from what was recorded"),
    ("1-D tensor", r"is damaged \(expected a 2-D tensor, found a 1-D tensor\)"),
    ("not a tensor", r"is damaged \(expected a 2-D tensor, found a dict\)"),
))
def test_damaged_memory_bank_is_refused_in_one_line(base, finished, capsys, damage, problem):
    path = bank(finished, "spatial")
    saved = torch.load(path, weights_only=True)
    if damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    elif damage == "cut short":
        cut_to_half(path)
    elif damage == "other shape":
        torch.save(saved[: len(saved) // 2].clone(), path)
    elif damage == "other content":
        torch.save(saved + 1, path)
    elif damage == "1-D tensor":
        torch.save(saved.flatten(), path)
    else:
        torch.save({"bank": saved}, path)
    code, _, err = run_stage(capsys, base, finished)
    assert code == 2
    error_line(err, quoted(path), problem, r"delete it or pass --overwrite")


# --- 4. boxes pickles --------------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    (["boxes"], r"must hold a dict keyed '1', '2', \.\.\. \(one entry per video\), found list"),
    ({"1": "boxes", "2": []}, r"video 1 \(01\) has str clips in the pickle but 3 in the data"),
    ({"1": [[], [], []], "2": 7}, r"video 2 \(02\) has int clips in the pickle but 3 in the data"),
    ({"1": [[], [], []], "2": [[], [[1, 2, 3]], []]}, r"video 2 \(02\).*expected boxes as rows of 6 numbers"),
    ({"1": [[], [], []], "2": [[], [["a", 1, 2, 3, 4, 5]], []]}, r"video 2 \(02\).*expected boxes as rows of 6"),
    ({"1": [[], [], []], "2": [[], [[1, 2, 3, 4, 5, 6], [1, 2]], []]}, r"video 2 \(02\).*expected boxes as rows of 6"),
    (b"\x80\x04 not a pickle at all", r"cannot read boxes pickle"),
    (b"", r"cannot read boxes pickle"),
], ids=["list", "entry-str", "entry-int", "short-rows", "text-in-box", "ragged-rows", "random-bytes", "empty"])
def test_boxes_pickle_of_the_wrong_structure_is_one_line(base, tmp_path, capsys, content, problem):
    import pickle

    work = tmp_path / "work"
    path = work_of(work).boxes_pickle("test")
    path.parent.mkdir(parents=True)
    path.write_bytes(content if isinstance(content, bytes) else pickle.dumps(content))
    capsys.readouterr()
    code = run_main(detection_main, detection_args(base.data, work, "--is_load_test_pickle", "--train_od=false"))
    assert code == 2
    error_line(capsys.readouterr().err, quoted(path), problem)


# --- 5. saved scores and model files -------------------------------------------------------------------

@pytest.mark.parametrize("name, damage, problem", cases(
    ("scores.npz", "cut short", r"is damaged \(not a readable \.npz file\)"),
    ("scores.npz", "random bytes", r"is damaged \(not a readable \.npz file\)"),
    ("scores.npz", "other arrays", r"is not a saved evaluation"),
    ("scores.npz", "short vectors", r"is damaged \(its vectors do not cover the frames it lists\)"),
    ("results.json", "cut short", r"is damaged \(not the JSON results of a run\)"),
    ("results.json", "random bytes", r"is damaged \(not the JSON results of a run\)"),
    ("results.json", "a list", r"is damaged \(not the JSON results of a run\)"),
))
def test_damaged_saved_evaluation_is_one_line(finished, capsys, name, damage, problem):
    folder = finished / RESULTS
    path = folder / name
    if damage == "cut short":
        cut_to_half(path)
    elif damage == "random bytes":
        path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))
    elif damage == "a list":
        path.write_text("[]")
    else:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
        if damage == "other arrays":
            arrays = {"something": np.zeros(3)}
        else:
            arrays["spatial"] = arrays["spatial"][:-2]
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    capsys.readouterr()
    assert run_main(evaluate_main, [str(folder)]) == 2
    error_line(capsys.readouterr().err, quoted(path), problem)


@pytest.mark.parametrize("damage, problem", cases(
    ("random bytes", r"is not a readable model file \(damaged, cut short, or another kind of file"),
    ("cut short", r"is not a readable model file \(damaged, cut short, or another kind of file"),
    ("other version", r"was written by another version of VideoPatchCore \(model format 999"),
    ("other kind", r"is not a VideoPatchCore model file"),
    ("bad settings", r"is damaged \(its settings cannot be read"),
))
def test_damaged_or_other_version_model_file_is_one_line(finished, damage, problem):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from Memorization.model import VideoPatchCore

    path = work_of(finished).model("spatial1.0_temporal1.0_highlevel0.5")
    assert VideoPatchCore.load(path).banks["spatial"].shape == torch.load(bank(finished, "spatial")).shape
    if damage == "random bytes":
        path.write_bytes(np.random.default_rng(2).bytes(path.stat().st_size))
    elif damage == "cut short":
        cut_to_half(path)
    else:
        with safe_open(str(path), framework="pt") as opened:
            metadata = dict(opened.metadata())
            tensors = {key: opened.get_tensor(key) for key in opened.keys()}
        if damage == "other version":
            metadata["version"] = "999"
        elif damage == "other kind":
            metadata = {"format": "something else"}
        else:
            metadata["method"] = "{not json"
        save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(VPCError) as raised:
        VideoPatchCore.load(path)
    message = str(raised.value)
    assert "\n" not in message and re.search(quoted(path), message) and re.search(problem, message), message


# --- 6. a full disk ----------------------------------------------------------------------------------

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_writing_features(base, objects_only, capsys, monkeypatch):
    """The 8th clip written fails: the training files of video 01 (3 local + 3 global clips) are
    finished and kept, the one being written (its first clip in) leaves nothing, and a rerun completes."""
    written = []
    create_dataset = h5py.Group.create_dataset

    def fail_on_the_eighth(self, *args, **kwargs):
        written.append(args[0] if args else kwargs.get("name"))
        if len(written) == 8:
            no_space()
        return create_dataset(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_the_eighth)
    code, _, err = run_stage(capsys, base, objects_only)
    assert code == 2
    failed = local_features(objects_only, "train", "02")
    error_line(err, rf"disk full while writing {failed.name} in {quoted(failed.parent)} \(\d+\.\d MB free; this "
                    rf"step writes about \d+\.\d MB\): free some space and rerun")
    kept = [local_features(objects_only, "train", "01"), global_features(objects_only, "train", "01")]
    stamps = [path.stat().st_mtime_ns for path in kept]
    assert not failed.exists() and stale_partials(objects_only) == []
    monkeypatch.undo()
    code, _, err = run_stage(capsys, base, objects_only)
    assert code == 0, err
    assert [path.stat().st_mtime_ns for path in kept] == stamps          # reused, not written again
    assert_same_outputs(base, objects_only)


def test_full_disk_while_saving_a_memory_bank(base, finished, capsys, monkeypatch):
    for name in ("spatial", "temporal", "highlevel"):
        bank(finished, name).unlink()
    shutil.rmtree(finished / RESULTS)
    monkeypatch.setattr(torch, "save", no_space)
    code, _, err = run_stage(capsys, base, finished)
    assert code == 2
    path = bank(finished, "spatial")
    error_line(err, rf"disk full while writing {path.name} in {quoted(path.parent)} \(")
    assert not path.exists() and stale_partials(finished) == []
    assert local_features(finished, "train", "01").exists()             # finished files are kept
    monkeypatch.undo()
    code, _, err = run_stage(capsys, base, finished)
    assert code == 0, err
    assert_same_outputs(base, finished)


def _size_of(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


@pytest.fixture
def disk(tmp_path):
    """``disk(options)`` mounts a tmpfs (``size=...k``, ``ro``...) at a fresh folder, ``disk(options,
    remount=True)`` changes it; unmounted afterwards. Skips where mounting is refused (not root)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = []

    def mount(options, remount=False):
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"remount,{options}" if remount else options, "tmpfs",
                                 str(mount_point)], capture_output=True, text=True)
        if result.returncode != 0:
            if remount or mounted:
                raise AssertionError(result.stderr)
            pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
        mounted.append(True)
        return mount_point

    yield mount
    if mounted:
        subprocess.run(["umount", str(mount_point)], capture_output=True)


def test_real_full_disk_then_a_rerun_on_a_bigger_one(base, disk, capsys):
    # room for the object batches, the training features of video 01 and half of video 02's local ones
    needed = [local_features(base.finished, "train", "01"), global_features(base.finished, "train", "01")]
    room = _size_of(base.objects_only) + sum(path.stat().st_size for path in needed) + \
        local_features(base.finished, "train", "02").stat().st_size // 2
    work = Path(shutil.copytree(base.objects_only, disk(f"size={room // 1024}k") / "work"))
    code, _, err = run_stage(capsys, base, work)
    assert code == 2
    failed = local_features(work, "train", "02")
    error_line(err, rf"^error: disk full while writing {failed.name} in {quoted(failed.parent)} \(\d+\.\d MB free",
               r"free some space and rerun the same command; finished files are kept and the run resumes")
    assert stale_partials(work) == [] and not failed.exists()
    kept = {path: path.stat().st_mtime_ns for path in (local_features(work, "train", "01"),
                                                      global_features(work, "train", "01"))}
    code, _, err = run_stage(capsys, base, work)            # the disk is still full: the same line again
    assert code == 2
    error_line(err, rf"^error: disk full while writing {failed.name} in {quoted(failed.parent)} ")
    disk("size=65536k", remount=True)
    code, _, err = run_stage(capsys, base, work)
    assert code == 0, err
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    assert_same_outputs(base, work)


def test_no_room_even_for_the_run_lock(disk):
    full = disk("size=256k")
    filler = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(filler, b"\0" * 4096)
    finally:
        os.close(filler)
    with pytest.raises(VPCError) as raised:
        with work_lock(full / "work", "avenue"):
            pass
    message = str(raised.value)
    assert "\n" not in message
    assert re.match(rf"disk full while writing \.lock-avenue in {quoted(full / 'work')} \(0\.0 MB free\)", message)


def test_read_only_working_directory_is_one_line(base, disk, capsys):
    work = Path(shutil.copytree(base.finished, disk("size=65536k") / "work"))
    shutil.rmtree(work / RESULTS)
    disk("ro", remount=True)
    code, _, err = run_stage(capsys, base, work)
    assert code == 2
    error_line(err, rf"cannot write \.lock-avenue in {quoted(work)} \(Read-only file system\): check that the "
                    r"folder is writable")


# --- 7. kills ----------------------------------------------------------------------------------------

def _any(pattern):
    """Whether a finished file (not a temporary one, whose name starts with a dot) matches ``pattern``."""
    return lambda work: any(not path.name.startswith(".") for path in work.rglob(pattern))


KILL_POINTS = {
    "first temporary file": lambda work: bool(stale_partials(work)),
    "first finished feature file": _any("*_video_features.h5"),
    "first memory bank": _any("*_memory_bank_*.pt"),
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_run_resumes_to_the_same_scores(base, objects_only, capsys, point):
    reached = KILL_POINTS[point]
    process = subprocess.Popen([sys.executable, "Memorization/run.py", *stage_args(base, objects_only)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ONE_THREAD)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    killed = False
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if reached(objects_only):
                process.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
    finally:
        if process.poll() is None and not killed:
            process.kill()
        process.wait()
    if killed:
        assert process.returncode == -signal.SIGKILL
        assert not (objects_only / RESULTS).exists()
    left = stale_partials(objects_only)
    code, _, err = run_stage(capsys, base, objects_only)        # the killed run's lock went with it
    assert code == 0, err
    if left:
        assert f"warning: removed {len(left)} unfinished file(s) of an interrupted run" in err
    assert_same_outputs(base, objects_only)


# --- 8. two runs on one working directory -------------------------------------------------------------

def test_second_run_on_the_same_files_stops_in_one_line(base, finished, capsys):
    with work_lock(finished, "avenue"):
        result = run_script("Memorization/run.py", stage_args(base, finished))
        assert result.returncode == 2, result.stderr
        error_line(result.stderr, rf"another run is using the avenue files of {quoted(finished)} \(pid {os.getpid()}, "
                                  rf"started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d: ")
    code, _, err = run_stage(capsys, base, finished)
    assert code == 0, err
    assert_same_outputs(base, finished)


def test_two_stage_processes_at_once(base, objects_only, capsys):
    """A Memorization run holds the lock while a second one starts on the same files."""
    first = subprocess.Popen([sys.executable, "Memorization/run.py", *stage_args(base, objects_only)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    lock = objects_only / ".lock-avenue"
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while f"pid {first.pid}," not in lock.read_text() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    holds = first.poll() is None
    code, _, err = run_stage(capsys, base, objects_only)
    _, first_err = first.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert first.returncode == 0, first_err
    assert holds, "the first run ended before the second asked for the lock"
    assert code == 2
    error_line(err, rf"another run is using the avenue files of {quoted(objects_only)} \(pid {first.pid}, "
                    r"started [^)]*: run\.py --dataset=avenue")
    code, _, err = run_stage(capsys, base, objects_only)
    assert code == 0, err
    assert_same_outputs(base, objects_only)


# --- 9. temporary files left behind -----------------------------------------------------------------

def test_stale_temporary_files_are_removed_and_never_taken_as_results(base, finished, capsys):
    target = local_features(finished, "test", "01")
    target.unlink()
    planted = [target.with_name(f".{target.stem}.partial.h5"),                 # what atomic_path would use
               bank(finished, "spatial").with_name(".spatial_memory_bank_1.0.partial.pt"),
               finished / RESULTS / ".scores.partial.npz",
               object_batches(finished, "test", "01").with_name(".01_object_batches.partial.h5")]
    shutil.copy(local_features(finished, "test", "02"), planted[0])          # a whole file, of another video
    for path in planted[1:]:
        path.write_bytes(b"left by a killed run")
    code, out, err = run_stage(capsys, base, finished)
    assert code == 0, err
    assert re.search(r"warning: removed 4 unfinished file\(s\) of an interrupted run", err)
    assert not any(path.exists() for path in planted)
    assert target.exists()
    assert_same_outputs(base, finished)
