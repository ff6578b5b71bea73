"""HDF5 object batches, their placeholder and resume checks; the boxes pickle and its checks."""
import pickle

import h5py
import numpy as np
import pytest

from extra.datasets import Video
from extra.errors import VPCError
from extra.provenance import read_h5_record
from ObjectDetection.objects import (
    load_boxes_pickle, object_batches_writer, pickle_key, read_stored_video, save_boxes_pickle,
)

RECORD = {"stage": "objects", "consecutive": 4, "boxes_from": "motion"}


def fake_video(index, n_frames, name=None):
    """A Video of n_frames (never read here: only its clip count matters)."""
    name = name or f"{index + 1:02d}"
    return Video(name=name, index=index, source=None, frame_paths=[f"{i}.jpg" for i in range(n_frames)])


def write_two_clips(path):
    objects = np.arange(2 * 3 * 4 * 8 * 8, dtype=np.float32).reshape(2, 3, 4, 8, 8)
    boxes = [[1.0, 2.0, 9.0, 10.0, 0.9, 0.0], [0.5, 0.5, 8.5, 8.5, 0.8, 2.0]]
    with object_batches_writer(path, RECORD, n_clips=2) as add:
        add(0, objects, boxes)
        add(1, np.zeros(1, np.float32), [])
    return objects, boxes


def test_object_batches_layout_and_placeholder(tmp_path):
    path = tmp_path / "objects" / "01_object_batches.h5"
    objects, boxes = write_two_clips(path)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["0000", "0001"]
        assert f["0000"].dtype == np.float32 and f["0000"].shape == (2, 3, 4, 8, 8)
        np.testing.assert_array_equal(f["0000"][()], objects)
        assert f["0001"].shape == (1,) and f["0001"][0] == 0
        np.testing.assert_array_equal(f["0000"].attrs["boxes"], boxes)
        assert f["0001"].attrs["boxes"].shape == (0, 6)
        assert read_h5_record(f) == RECORD
    stored = read_stored_video(path, RECORD, n_clips=2)
    assert stored.objects_per_clip == [2, 0]
    assert stored.boxes == [boxes, []]


def test_interrupted_writer_leaves_no_file(tmp_path):
    path = tmp_path / "01_object_batches.h5"
    with pytest.raises(KeyboardInterrupt):
        with object_batches_writer(path, RECORD, n_clips=2) as add:
            add(0, np.zeros(1, np.float32), [])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_an_incomplete_video(tmp_path):
    path = tmp_path / "01_object_batches.h5"
    with pytest.raises(RuntimeError, match="1 of 2 clips"):
        with object_batches_writer(path, RECORD, n_clips=2) as add:
            add(0, np.zeros(1, np.float32), [])
    assert not path.exists()


def test_stored_file_with_other_settings_or_clips_is_refused(tmp_path):
    path = tmp_path / "01_object_batches.h5"
    write_two_clips(path)
    with pytest.raises(VPCError, match="boxes_from: file 'motion', this run 'hog'.*--overwrite"):
        read_stored_video(path, {**RECORD, "boxes_from": "hog"}, n_clips=2)
    with pytest.raises(VPCError, match="holds 2 clips, made with --consecutive 4, the video gives 3: delete it or pass --overwrite"):
        read_stored_video(path, RECORD, n_clips=3)


def test_file_without_boxes_attribute_reports_none(tmp_path):
    path = tmp_path / "01_object_batches.h5"
    with h5py.File(path, "w") as f:          # as the authors' files are: no record, no boxes
        f["0000"] = np.zeros(1, np.float32)
    stored = read_stored_video(path, RECORD, n_clips=1)
    assert stored.objects_per_clip == [0] and stored.boxes is None


# --- pickles --------------------------------------------------------------------------------------

def test_pickle_round_trip(tmp_path):
    videos = [fake_video(0, 9), fake_video(1, 4)]         # d = 4: 2 clips and 1 clip
    boxes = {"1": [[[1, 2, 3, 4, 0.9, 0]], []], "2": [[[5.5, 6, 7, 8, 0.7, 7], [0, 0, 1, 1, 0.8, 2]]]}
    path = tmp_path / "avenue_train.pickle"
    save_boxes_pickle(path, boxes)
    with open(path, "rb") as f:
        raw = pickle.load(f)
    assert list(raw) == ["1", "2"] and raw["1"][0] == [[1.0, 2.0, 3.0, 4.0, 0.9, 0.0]] and raw["1"][1] == []
    loaded = load_boxes_pickle(path, videos, consecutive=4, split="train")
    assert list(loaded) == ["01", "02"]
    np.testing.assert_array_equal(loaded["02"][0], boxes["2"][0])
    assert loaded["01"][1].shape == (0, 6)


def test_pickle_in_the_authors_style_loads(tmp_path):
    """Boxes as numpy rows and tuples, written by other code: only the dict/list structure matters."""
    path = tmp_path / "avenue_test.pickle"
    content = {"1": [[np.array([1, 2, 3, 4, 0.9, 0], np.float32)], []],
               "2": [[(1.0, 2.0, 3.0, 4.0, 0.65, 2.0), [5, 6, 7, 8, 0.61, 0]]]}
    with open(path, "wb") as f:
        pickle.dump(content, f)
    loaded = load_boxes_pickle(path, [fake_video(0, 8), fake_video(1, 5)], consecutive=4, split="test")
    assert loaded["01"][0].tolist() == [[1, 2, 3, 4, pytest.approx(0.9), 0]]
    assert loaded["02"][0][:, 4].tolist() == [0.65, 0.61]


def test_pickle_mismatches_name_the_first_one(tmp_path):
    path = tmp_path / "avenue_test.pickle"
    videos = [fake_video(0, 8), fake_video(1, 8), fake_video(2, 8)]     # 2 clips each at d = 4
    save_boxes_pickle(path, {"1": [[], []], "3": [[], []]})
    with pytest.raises(VPCError, match=r"boxes of 2 videos, the test split has 3 usable ones: video 2 \(02\) is miss"):
        load_boxes_pickle(path, videos, 4, "test")
    save_boxes_pickle(path, {"1": [[], []], "2": [[], []], "3": [[], []], "4": [[]]})
    with pytest.raises(VPCError, match="entry '4' that matches no video"):
        load_boxes_pickle(path, videos, 4, "test")
    save_boxes_pickle(path, {"1": [[], []], "2": [[], [], []], "3": [[]]})
    with pytest.raises(VPCError, match=r"video 2 \(02\) has 3 clips in the pickle but 2 in the data with --consec"):
        load_boxes_pickle(path, videos, 4, "test")


def test_missing_or_foreign_pickle_is_a_clear_error(tmp_path):
    with pytest.raises(VPCError, match="boxes pickle not found: .*--is_save_train_pickle"):
        load_boxes_pickle(tmp_path / "avenue_train.pickle", [fake_video(0, 8)], 4, "train")
    path = tmp_path / "avenue_train.pickle"
    with open(path, "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(VPCError, match="must hold a dict"):
        load_boxes_pickle(path, [fake_video(0, 8)], 4, "train")
    save_boxes_pickle(path, {"1": [[[1, 2, 3]], []]})
    with pytest.raises(VPCError, match=r"video 1 \(01\): expected boxes as rows of 6 numbers"):
        load_boxes_pickle(path, [fake_video(0, 8)], 4, "train")


def test_pickle_key_is_the_one_based_index_in_the_split():
    assert pickle_key(fake_video(0, 4)) == "1" and pickle_key(fake_video(11, 4)) == "12"
