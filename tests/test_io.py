"""Atomic writes: an interrupted write leaves neither a partial file nor a temporary one."""
import pytest

from extra.io import atomic_path, load_pickle, save_pickle


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "result.h5"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".h5" and tmp != target
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_path_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "result.pt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_pickle_round_trip(tmp_path):
    boxes = {"1": [[[1.0, 2.0, 3.0, 4.0, 0.9, 0.0]], []]}
    save_pickle(boxes, tmp_path / "b.pickle")
    assert load_pickle(tmp_path / "b.pickle") == boxes


def test_atomic_files_get_the_usual_mode_even_from_a_private_writer(tmp_path):
    import os

    from safetensors.torch import save_file
    import torch

    from extra.io import USUAL_FILE_MODE, atomic_path

    with atomic_path(tmp_path / "model.safetensors") as tmp:
        save_file({"a": torch.zeros(2)}, str(tmp))      # safetensors writes mode 0600
    mask = os.umask(0)
    os.umask(mask)
    assert USUAL_FILE_MODE == 0o666 & ~mask
    assert os.stat(tmp_path / "model.safetensors").st_mode & 0o777 == USUAL_FILE_MODE


def test_a_ticker_writes_a_log_line_at_most_every_so_often():
    import io

    from extra.progress import Ticker

    now = [0.0]
    log = io.StringIO()
    ticker = Ticker("clip.mp4: scored", 100, stream=log, every=10.0, clock=lambda: now[0])
    for done in range(1, 101):
        now[0] = done * 0.5         # 2 frames a second: 50 s in all
        ticker.update(done)
    ticker.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 5 and lines[0] == "clip.mp4: scored: 20/100 frames (10 s, 2.0 frames/s)"
    assert lines[-1] == "clip.mp4: scored: 100/100 frames (50 s, 2.0 frames/s)"


def test_a_ticker_counts_in_its_unit():
    import io

    from extra.progress import Ticker

    now = [0.0]
    log = io.StringIO()
    ticker = Ticker("train 01: local features", 8, stream=log, every=1.0, clock=lambda: now[0], unit="clips")
    now[0] = 2.0
    ticker.update(4)
    assert log.getvalue() == "train 01: local features: 4/8 clips (2 s, 2.0 clips/s)\n"
