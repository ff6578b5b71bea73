"""The clip-file and tensor store: what is written, and every kind of damage caught in one line."""
import io

import h5py
import numpy as np
import pytest
import torch

from extra.errors import VPCError
from extra.progress import progress
from extra.provenance import read_sidecar_record
from extra.store import (
    COMPLETE_ATTRIBUTE, CONTENT_KEY, FileKind, crc32, empty_clip, is_empty_clip, is_finished, load_tensor,
    open_clip_file, read_clip_file, save_tensor, write_clip_file,
)

KIND = FileKind("toy features", "rerun the toy stage")
RECORD = {"dataset": "avenue", "consecutive": 2}
CLIPS = [np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2), empty_clip(), np.ones((2, 3, 2, 2), np.float32)]


def write(path, clips=CLIPS, record=RECORD):
    with write_clip_file(path, record, len(clips)) as writer:
        for index, clip in enumerate(clips):
            writer.add(index, clip, boxes=np.full((0 if is_empty_clip(clip) else len(clip), 6), index, np.float64))
    return path


def one_line(error):
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_clip_file_round_trip_with_its_record_and_mark(tmp_path):
    path = write(tmp_path / "v_features.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["v_features.h5"]
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["0000", "0001", "0002"]
        assert f.attrs[COMPLETE_ATTRIBUTE] == '{"clips": 3, "crc32": [%d, %d, %d]}' % tuple(crc32(c) for c in CLIPS)
    clips, record = read_clip_file(path, KIND, RECORD, n_clips=3)
    assert record == RECORD and all(np.array_equal(a, b) for a, b in zip(clips, CLIPS))
    assert is_empty_clip(clips[1]) and not is_empty_clip(clips[0])
    with open_clip_file(path, KIND) as opened:
        assert opened.shapes() == [(1, 3, 2, 2), (1,), (2, 3, 2, 2)]
        assert opened.attribute(2, "boxes").tolist() == [[2.0] * 6, [2.0] * 6]
    assert is_finished(path, KIND, RECORD, 3, verify=True)
    assert not is_finished(path, KIND, RECORD, 3, overwrite=True)
    assert not is_finished(tmp_path / "absent.h5", KIND, RECORD, 3)


def test_a_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "v_features.h5"
    with pytest.raises(ValueError, match="boom"):
        with write_clip_file(path, RECORD, 3) as writer:
            writer.add(0, CLIPS[0])
            raise ValueError("boom")
    with pytest.raises(RuntimeError, match="2 of 3 clips written"):    # a caller's bug, not bad input
        with write_clip_file(path, RECORD, 3) as writer:
            writer.add(0, CLIPS[0])
            writer.add(1, CLIPS[1])
    assert list(tmp_path.iterdir()) == []


def test_records_and_clip_counts_are_checked(tmp_path):
    path = write(tmp_path / "v.h5")
    with pytest.raises(VPCError, match=r"made with other settings \(consecutive: file 2, this run 4\)"):
        is_finished(path, KIND, {**RECORD, "consecutive": 4}, 3)
    with pytest.raises(VPCError, match="holds 3 clips, made with --consecutive 2, the video gives 5: delete it or "
                                       "pass --overwrite, then rerun the toy stage") as error:
        open_clip_file(path, KIND, n_clips=5).__enter__()
    one_line(error)
    with pytest.raises(VPCError, match="toy features not found: .*absent.h5; rerun the toy stage"):
        read_clip_file(tmp_path / "absent.h5", KIND)


@pytest.mark.parametrize("damage, problem", [
    ("truncate", r"is damaged \(cut short\)"),
    ("garbage", r"is damaged \(not a readable HDF5 file\)"),
    ("alter", r"is damaged \(clip 0002 does not match its checksum\)"),
    ("drop_last", r"is damaged \(2 of its 3 clips are there\)"),
    ("drop_middle", r"is damaged \(its datasets are not clips 0000..0001\)"),
])
def test_damage_is_caught_in_one_line(tmp_path, damage, problem):
    path = write(tmp_path / "v.h5")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        with h5py.File(path, "a") as f:
            if damage == "alter":
                f["0002"][0, 0, 0, 0] = 7.0
            else:
                del f["0002" if damage == "drop_last" else "0001"]
    with pytest.raises(VPCError, match=problem + ": delete it or pass --overwrite, then rerun the toy stage") as error:
        read_clip_file(path, KIND)
    one_line(error)


def test_a_reused_file_is_read_whole_only_when_asked(tmp_path):
    path = write(tmp_path / "v.h5")
    with h5py.File(path, "a") as f:
        f["0000"][0, 0, 0, 0] = 99.0
    assert is_finished(path, KIND, RECORD, 3)                 # cheap: structure and mark only
    with pytest.raises(VPCError, match="clip 0000 does not match its checksum"):
        is_finished(path, KIND, RECORD, 3, verify=True)


def test_files_without_a_mark_are_read_as_the_authors_wrote_them(tmp_path):
    path = tmp_path / "authors.h5"
    with h5py.File(path, "w") as f:
        for index, clip in enumerate(CLIPS):
            f.create_dataset(f"{index:04d}", data=clip)
    clips, record = read_clip_file(path, KIND, RECORD, n_clips=3)
    assert record is None and np.array_equal(clips[2], CLIPS[2])


def test_tensor_files_with_their_sidecar(tmp_path):
    path = tmp_path / "spatial_memory_bank_0.01.pt"
    bank = torch.arange(6, dtype=torch.float32).view(3, 2)
    save_tensor(bank, path, RECORD)
    sidecar = read_sidecar_record(path)
    assert sidecar[CONTENT_KEY] == {"shape": [3, 2], "dtype": "float32", "crc32": crc32(bank.numpy())}
    assert torch.equal(load_tensor(path, KIND, RECORD), bank)
    with pytest.raises(VPCError, match=r"made with other settings \(dataset: file 'avenue', this run 'iitb'\)"):
        load_tensor(path, KIND, {**RECORD, "dataset": "iitb"})
    torch.save(bank + 1, path)                               # replaced after its sidecar was written
    with pytest.raises(VPCError, match="is damaged \\(its content differs from what was recorded"):
        load_tensor(path, KIND, RECORD)
    path.write_bytes(np.random.default_rng(1).bytes(2048))
    with pytest.raises(VPCError, match="is damaged \\(not a saved torch tensor: cut short or overwritten\\)") as error:
        load_tensor(path, KIND, RECORD)
    one_line(error)
    authors = tmp_path / "authors.pt"
    torch.save(torch.zeros(4), authors)                      # no sidecar: the authors' file, but 1-D
    with pytest.raises(VPCError, match="expected a 2-D tensor, found a 1-D tensor"):
        load_tensor(authors, KIND, RECORD)
    torch.save(bank, authors)
    assert torch.equal(load_tensor(authors, KIND, RECORD), bank)


def test_progress_in_a_log_is_one_line_per_item():
    out = io.StringIO()
    assert list(progress(["a", "b", "c"], "test features", stream=out)) == ["a", "b", "c"]
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert lines[0].startswith("test features: 1/3 done (") and lines[2].startswith("test features: 3/3 done (")
