"""The data layer: order, clips, frames, ground truth, and the errors users meet."""
import cv2
import numpy as np
import pytest
from scipy.io import savemat

from extra.config import DATASETS
from extra.datasets import (
    clip_frame_indices, list_videos, load_ground_truth, natural_key, normalize_frame, read_frame,
    scan_split, labelled_test_videos,
)
from extra.errors import VPCError

AVENUE, SHANGHAI, IITB = DATASETS["avenue"], DATASETS["shanghai"], DATASETS["iitb"]


def write_video_folder(folder, n_frames, name_of=lambda i: f"{i:04d}.jpg", size=(16, 12)):
    folder.mkdir(parents=True)
    for i in range(n_frames):
        frame = np.full((size[1], size[0], 3), (i * 10) % 250, dtype=np.uint8)
        cv2.imwrite(str(folder / name_of(i)), frame)


def test_natural_order_uses_all_integers():
    names = ["10_2", "2_10", "2_9", "1_100", "frame10", "frame9"]
    assert sorted(names, key=natural_key) == ["1_100", "2_9", "2_10", "frame9", "frame10", "10_2"]


@pytest.mark.parametrize("n_frames, d, first, expected", [
    (10, 4, 0, [[0, 1, 2, 3], [4, 5, 6, 7]]),          # 2 tail frames get no clip
    (8, 4, 0, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (9, 4, 1, [[1, 2, 3, 4], [5, 6, 7, 8]]),           # iitb: frame 0 skipped
    (4, 4, 1, []),                                      # 3 usable frames: no clip
    (25, 10, 0, [list(range(10)), list(range(10, 20))]),
    (3, 10, 0, []),
])
def test_clip_frame_indices(n_frames, d, first, expected):
    assert clip_frame_indices(n_frames, d, first) == expected


def test_scan_split_orders_videos_and_frames(tmp_path):
    root = tmp_path / "shanghai" / "training"
    for name in ["01_010", "01_002", "02_001"]:
        # unpadded frame names: text order would put 10.jpg before 2.jpg
        write_video_folder(root / name, 12, name_of=lambda i: f"{i}.jpg")
    videos = scan_split(SHANGHAI, tmp_path, "train")
    assert [v.name for v in videos] == ["01_002", "01_010", "02_001"]
    assert [v.index for v in videos] == [0, 1, 2]
    assert [p.name for p in videos[0].frame_paths][:12] == [f"{i}.jpg" for i in range(12)]


def test_iitb_skips_first_frame(tmp_path):
    write_video_folder(tmp_path / "iitb" / "training" / "000001", 9)
    (video,) = scan_split(IITB, tmp_path, "train")
    assert video.n_raw_frames == 9 and video.n_frames == 8
    assert video.clips(4) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    clips = list(video.iter_clips(4))
    assert [c for c, _ in clips] == [0, 1]
    # frame i was written with value 10 * i: clip 0 starts at frame 1
    assert [int(f[0, 0, 0]) for f in clips[0][1]] == [10, 20, 30, 40]


def test_video_file_reads_like_a_frame_folder(tmp_path):
    folder = tmp_path / "avenue" / "training" / "frames"
    folder.mkdir(parents=True)
    writer = cv2.VideoWriter(str(folder / "01.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
    for i in range(23):
        writer.write(np.full((24, 32, 3), i * 10, dtype=np.uint8))
    writer.release()
    (video,) = scan_split(AVENUE, tmp_path, "train")
    assert video.name == "01" and video.is_file and video.n_raw_frames == 23
    clips = list(video.iter_clips(10, clip_indices=[1]))
    assert [c for c, _ in clips] == [1]
    assert [round(float(f.mean()) / 10) for f in clips[0][1]] == list(range(10, 20))


def test_read_and_normalize_frame(tmp_path):
    frame = np.zeros((2, 3, 3), dtype=np.uint8)
    frame[..., 0], frame[..., 2] = 255, 0          # pure blue in BGR
    cv2.imwrite(str(tmp_path / "f.png"), frame)
    read = read_frame(tmp_path / "f.png")
    np.testing.assert_array_equal(read, frame)
    normalized = normalize_frame(read)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized[0, 0], [1.0, -1.0, -1.0])   # channel order stays BGR


# --- errors a user meets ------------------------------------------------------------------------

def test_missing_split_folder_is_a_clear_error(tmp_path):
    with pytest.raises(VPCError, match=r"avenue train folder not found: .*training/frames.*DATA_README"):
        scan_split(AVENUE, tmp_path, "train")


def test_empty_split_folder_is_a_clear_error(tmp_path):
    (tmp_path / "avenue" / "training" / "frames").mkdir(parents=True)
    with pytest.raises(VPCError, match="no videos in"):
        scan_split(AVENUE, tmp_path, "train")


def test_video_folder_without_frames_is_a_clear_error(tmp_path):
    (tmp_path / "avenue" / "training" / "frames" / "01").mkdir(parents=True)
    with pytest.raises(VPCError, match="holds no frame images"):
        scan_split(AVENUE, tmp_path, "train")


def test_unreadable_frame_is_a_clear_error(tmp_path):
    folder = tmp_path / "avenue" / "training" / "frames" / "01"
    write_video_folder(folder, 10)
    (folder / "0003.jpg").write_bytes(b"not a jpeg")
    (video,) = scan_split(AVENUE, tmp_path, "train")
    with pytest.raises(VPCError, match=r"cannot read frame .*0003\.jpg"):
        list(video.iter_clips(10))


def test_short_video_is_skipped_with_a_warning(tmp_path, capsys):
    write_video_folder(tmp_path / "avenue" / "training" / "frames" / "01", 12)
    write_video_folder(tmp_path / "avenue" / "training" / "frames" / "02", 7)
    videos = list_videos(AVENUE, tmp_path, "train", 10)
    assert [v.name for v in videos] == ["01"]
    assert videos[0].n_clips(10) == 1
    assert "02 has 7 usable frames, fewer than one clip of 10: skipped" in capsys.readouterr().err


# --- ground truth ------------------------------------------------------------------------------

def make_avenue_test(tmp_path, frame_counts, gt_entries):
    for i, n in enumerate(frame_counts, start=1):
        write_video_folder(tmp_path / "avenue" / "testing" / "frames" / f"{i:02d}", n)
    cells = np.empty((1, len(gt_entries)), dtype=object)
    for i, entry in enumerate(gt_entries):
        cells[0, i] = np.asarray(entry)
    savemat(str(tmp_path / "avenue" / "avenue.mat"), {"gt": cells})
    return scan_split(AVENUE, tmp_path, "test")


def test_avenue_mat_intervals_become_frame_labels(tmp_path):
    videos = make_avenue_test(tmp_path, [12, 9], [
        [[2, 9], [4, 12]],        # 2 x K: intervals [2, 4] and [9, 12], 1-based inclusive
        [3, 5],                   # one interval stored as a length-2 vector
    ])
    labels = load_ground_truth(AVENUE, tmp_path, videos)
    np.testing.assert_array_equal(labels["01"], [0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(labels["02"], [0, 0, 1, 1, 1, 0, 0, 0, 0])


def test_avenue_mat_with_wrong_video_count(tmp_path):
    videos = make_avenue_test(tmp_path, [12, 9], [[3, 5]])
    with pytest.raises(VPCError, match="describes 1 videos but the test split has 2"):
        load_ground_truth(AVENUE, tmp_path, videos)


def test_avenue_interval_beyond_the_frames(tmp_path):
    videos = make_avenue_test(tmp_path, [12], [[3, 13]])
    with pytest.raises(VPCError, match=r"video 01: anomaly interval \[3, 13\] lies outside frames 1..12"):
        load_ground_truth(AVENUE, tmp_path, videos)


def test_shanghai_frame_masks(tmp_path):
    write_video_folder(tmp_path / "shanghai" / "testing" / "01_0014", 6, name_of=lambda i: f"{i:03d}.jpg")
    masks = tmp_path / "shanghai" / "testframemask"
    masks.mkdir()
    np.save(masks / "01_0014.npy", np.array([0, 0, 1, 1, 0, 1]))
    videos = scan_split(SHANGHAI, tmp_path, "test")
    np.testing.assert_array_equal(load_ground_truth(SHANGHAI, tmp_path, videos)["01_0014"], [0, 0, 1, 1, 0, 1])


def test_iitb_per_video_npy_covers_the_skipped_frame(tmp_path):
    write_video_folder(tmp_path / "iitb" / "testing" / "000209", 5)
    folder = tmp_path / "iitb" / "groundtruth" / "000209"
    folder.mkdir(parents=True)
    np.save(folder / "000209.npy", np.array([1, 0, 0, 1, 1]))
    videos = scan_split(IITB, tmp_path, "test")
    np.testing.assert_array_equal(load_ground_truth(IITB, tmp_path, videos)["000209"], [1, 0, 0, 1, 1])


def test_npy_ground_truth_length_must_match_frames(tmp_path):
    write_video_folder(tmp_path / "shanghai" / "testing" / "01_0014", 6)
    (tmp_path / "shanghai" / "testframemask").mkdir()
    np.save(tmp_path / "shanghai" / "testframemask" / "01_0014.npy", np.zeros(7))
    videos = scan_split(SHANGHAI, tmp_path, "test")
    with pytest.raises(VPCError, match="ground truth of video 01_0014 has 7 frames but .* has 6"):
        load_ground_truth(SHANGHAI, tmp_path, videos)


def test_npy_ground_truth_missing_for_a_video(tmp_path):
    for name in ["01_0014", "01_0015"]:
        write_video_folder(tmp_path / "shanghai" / "testing" / name, 4)
    (tmp_path / "shanghai" / "testframemask").mkdir()
    np.save(tmp_path / "shanghai" / "testframemask" / "01_0014.npy", np.zeros(4))
    np.save(tmp_path / "shanghai" / "testframemask" / "99_0001.npy", np.zeros(4))
    videos = scan_split(SHANGHAI, tmp_path, "test")
    with pytest.raises(VPCError, match=r"ground truth file not found for video 01_0015: .*01_0015\.npy"):
        load_ground_truth(SHANGHAI, tmp_path, videos)


def test_npy_ground_truth_count_mismatch(tmp_path):
    write_video_folder(tmp_path / "shanghai" / "testing" / "01_0014", 4)
    (tmp_path / "shanghai" / "testframemask").mkdir()
    for name in ["01_0014", "01_0015"]:
        np.save(tmp_path / "shanghai" / "testframemask" / f"{name}.npy", np.zeros(4))
    videos = scan_split(SHANGHAI, tmp_path, "test")
    with pytest.raises(VPCError, match="ground truth for 2 videos but the test split has 1"):
        load_ground_truth(SHANGHAI, tmp_path, videos)


def test_non_binary_ground_truth(tmp_path):
    write_video_folder(tmp_path / "shanghai" / "testing" / "01_0014", 3)
    (tmp_path / "shanghai" / "testframemask").mkdir()
    np.save(tmp_path / "shanghai" / "testframemask" / "01_0014.npy", np.array([0, 2, 1]))
    videos = scan_split(SHANGHAI, tmp_path, "test")
    with pytest.raises(VPCError, match="must hold 0/1 frame labels"):
        load_ground_truth(SHANGHAI, tmp_path, videos)


def test_missing_ground_truth_file(tmp_path):
    write_video_folder(tmp_path / "avenue" / "testing" / "frames" / "01", 3)
    videos = scan_split(AVENUE, tmp_path, "test")
    with pytest.raises(VPCError, match=r"ground truth file not found: .*avenue\.mat"):
        load_ground_truth(AVENUE, tmp_path, videos)


def test_test_videos_with_labels_checks_ground_truth_before_dropping_short_videos(tmp_path, capsys):
    # avenue.mat lists both videos; the short second one gives no clip of 10 and is dropped afterwards
    make_avenue_test(tmp_path, [12, 7], [[2, 3], [1, 7]])
    videos, labels = labelled_test_videos(AVENUE, tmp_path, 10)
    assert [v.name for v in videos] == ["01"]
    np.testing.assert_array_equal(labels["01"], [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(labels["02"], [1] * 7)
    assert "02 has 7 usable frames, fewer than one clip of 10: skipped" in capsys.readouterr().err
