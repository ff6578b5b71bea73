"""Videos, clips, frames and ground truth of the three datasets (SPEC section 1).

A split folder holds one entry per video: a folder of frame images, or a video file
(.mp4/.avi/...). Both are read through ``Video``, in the datasets' order: names sorted by the
tuple of all integers they contain.
"""
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from extra.errors import VPCError, warn

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg"}
SPLITS = ("train", "test")


def natural_key(name):
    """Sort key: the tuple of all integers in ``name`` (ties broken by the name itself)."""
    return tuple(int(n) for n in re.findall(r"\d+", name)), name


def sorted_naturally(paths):
    return sorted(paths, key=lambda p: natural_key(p.name))


def read_frame(path):
    """One frame as OpenCV reads it: uint8, H x W x 3, BGR."""
    import cv2   # on first use: the commands' --help and folder checks import this module without OpenCV

    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise VPCError(f"cannot read frame {path} (missing, empty or not an image)")
    return frame


def normalize_frame(frame):
    """uint8 BGR -> float32 in [-1, 1] as x / 127.5 - 1, the published models' input scaling."""
    return frame.astype(np.float32) / 127.5 - 1.0


def clip_frame_indices(n_frames, consecutive, first=0):
    """Frame indices of each clip: non-overlapping runs of ``consecutive`` frames from ``first``.

    The ``(n_frames - first) % consecutive`` frames at the end belong to no clip.
    """
    n_clips = max(n_frames - first, 0) // consecutive
    return [list(range(first + c * consecutive, first + (c + 1) * consecutive)) for c in range(n_clips)]


@dataclass
class Video:
    """One video of a split: a folder of frames or a video file."""

    name: str
    index: int                  # 0-based position in the split's sorted order
    source: Path
    skip_first_frame: bool = False
    frame_paths: list = field(default=None, repr=False)   # None for a video file

    @property
    def is_file(self):
        return self.frame_paths is None

    @cached_property
    def n_raw_frames(self):
        """Frames on disk, the skipped first frame included (ground truth covers them all)."""
        if not self.is_file:
            return len(self.frame_paths)
        capture = _open_capture(self.source)
        count = 0
        while capture.grab():
            count += 1
        capture.release()
        return count

    @property
    def first_frame(self):
        return 1 if self.skip_first_frame else 0

    @property
    def n_frames(self):
        """Frames that clips are cut from."""
        return max(self.n_raw_frames - self.first_frame, 0)

    def n_clips(self, consecutive):
        return self.n_frames // consecutive

    def clips(self, consecutive):
        """Raw frame indices of each clip."""
        return clip_frame_indices(self.n_raw_frames, consecutive, self.first_frame)

    def frame_file(self, raw_index):
        """Path of one frame (frame folders only: a detector may want the file itself)."""
        if self.is_file:
            raise VPCError(f"{self.source} is a video file; it has no per-frame image files")
        return self.frame_paths[raw_index]

    def iter_clips(self, consecutive, clip_indices=None):
        """Yield ``(clip_index, frames)`` with frames a list of BGR uint8 arrays.

        Each frame is decoded once, in order; frames of no clip are not decoded (folders) or
        only grabbed (video files). ``clip_indices`` restricts the clips read.
        """
        clips = self.clips(consecutive)
        wanted = range(len(clips)) if clip_indices is None else clip_indices
        if not self.is_file:
            for c in wanted:
                yield c, [read_frame(self.frame_paths[i]) for i in clips[c]]
            return
        yield from self._iter_file_clips(clips, set(wanted))

    def frames_at(self, raw_indices):
        """BGR uint8 frames at the given raw indices (any order, repeats allowed), each decoded once."""
        wanted = set(raw_indices)
        if not self.is_file:
            frames = {i: read_frame(self.frame_paths[i]) for i in wanted}
        else:
            frames = {}
            capture = _open_capture(self.source)
            try:
                for position in range(max(wanted) + 1):
                    if position not in wanted:
                        capture.grab()
                        continue
                    ok, frames[position] = capture.read()
                    if not ok:
                        raise VPCError(f"cannot decode frame {position} of {self.source}")
            finally:
                capture.release()
        return [frames[i] for i in raw_indices]

    def _iter_file_clips(self, clips, wanted):
        capture = _open_capture(self.source)
        position = 0
        try:
            for c, indices in enumerate(clips):
                if c not in wanted:
                    continue
                while position < indices[0]:
                    capture.grab()
                    position += 1
                frames = []
                for i in indices:
                    ok, frame = capture.read()
                    if not ok:
                        raise VPCError(f"cannot decode frame {i} of {self.source}")
                    frames.append(frame)
                    position += 1
                yield c, frames
        finally:
            capture.release()


def _open_capture(path):
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VPCError(f"cannot open video file {path}")
    return capture


def split_dir(settings, data_root, split):
    if split not in SPLITS:
        raise VPCError(f"unknown split {split!r}; expected one of {SPLITS}")
    relative = settings.train_dir if split == "train" else settings.test_dir
    return Path(data_root) / settings.name / relative


def split_folder(settings, data_root, split):
    """The split's folder, which must exist (cheap: the commands check theirs before any model loads)."""
    folder = split_dir(settings, data_root, split)
    if not folder.is_dir():
        raise VPCError(f"{settings.name} {split} folder not found: {folder} (layout: DATA_README.md; "
                       f"set data_root in extra/config.py, $VPC_DATA_ROOT or --data_root)")
    return folder


def scan_split(settings, data_root, split):
    """All videos of a split in the dataset's order (short videos included: see usable_videos)."""
    folder = split_folder(settings, data_root, split)
    entries = video_entries(folder)
    if not entries:
        raise VPCError(f"no videos in {folder}: expected one folder of frames or one video file per video")
    return [open_video(entry, index, settings.skip_first_frame) for index, entry in enumerate(entries)]


def video_entries(folder):
    """The videos a folder holds, in natural order: its subfolders and video files (hidden ones, such
    as unfinished temporary files, left out)."""
    return sorted_naturally([p for p in Path(folder).iterdir() if not p.name.startswith(".")
                             and (p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS)])


def open_video(source, index=0, skip_first_frame=False):
    """One video from a folder of frame images or a video file, anywhere (no dataset layout needed)."""
    source = Path(source)
    if source.is_dir():
        frames = sorted_naturally([p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS])
        if not frames:
            raise VPCError(f"video folder {source} holds no frame images")
        return Video(name=source.name, index=index, source=source, skip_first_frame=skip_first_frame,
                     frame_paths=frames)
    if not source.is_file():
        raise VPCError(f"video not found: {source} (expected a video file or a folder of frames)")
    if source.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VPCError(f"{source} is not a video file ({', '.join(sorted(VIDEO_EXTENSIONS))}) nor a folder of frames")
    return Video(name=source.stem, index=index, source=source, skip_first_frame=skip_first_frame)


def usable_videos(videos, consecutive):
    """Drop, with a warning, the videos too short to give one clip of ``consecutive`` frames."""
    kept = []
    for video in videos:
        if video.n_clips(consecutive) == 0:
            warn(f"video {video.source} has {video.n_frames} usable frames, fewer than one clip of "
                 f"{consecutive}: skipped")
        else:
            kept.append(video)
    return kept


def list_videos(settings, data_root, split, consecutive):
    """The videos of a split that give at least one clip, in the dataset's order."""
    return usable_videos(scan_split(settings, data_root, split), consecutive)


def labelled_test_videos(settings, data_root, consecutive):
    """The test videos that give a clip, and the labels of every test video, keyed by name.

    The ground truth is checked against the whole split before short videos are dropped, so a
    file that lists every video (avenue.mat) still lines up with them.
    """
    videos = scan_split(settings, data_root, "test")
    labels = load_ground_truth(settings, data_root, videos)
    return usable_videos(videos, consecutive), labels


# --- ground truth -----------------------------------------------------------------------------

def load_ground_truth(settings, data_root, videos):
    """Per-frame 0/1 labels (uint8) of each test video, keyed by video name.

    ``videos`` is the whole test split as ``scan_split`` returns it. Each label vector covers
    every frame on disk (a skipped first frame included) and is checked against the frames.
    """
    path = Path(data_root) / settings.name / settings.gt_path
    if settings.gt_format == "avenue_mat":
        labels = _avenue_labels(path, videos)
    elif settings.gt_format in ("frame_masks", "per_video_npy"):
        labels = _npy_labels(path, videos, nested=settings.gt_format == "per_video_npy")
    else:
        raise VPCError(f"unknown ground-truth format {settings.gt_format!r}")
    for video in videos:
        if len(labels[video.name]) != video.n_raw_frames:
            raise VPCError(f"ground truth of video {video.name} has {len(labels[video.name])} frames "
                           f"but {video.source} has {video.n_raw_frames}")
    return labels


def intervals_to_labels(intervals, n_frames):
    """1-based inclusive [start; end] columns of a 2 x K array (or a length-2 vector) -> 0/1 labels."""
    intervals = np.asarray(intervals, dtype=np.int64).reshape(2, -1)
    labels = np.zeros(n_frames, dtype=np.uint8)
    for start, end in intervals.T:
        if not 1 <= start <= end <= n_frames:
            raise VPCError(f"anomaly interval [{start}, {end}] lies outside frames 1..{n_frames}")
        labels[start - 1:end] = 1
    return labels


def intervals_from_labels(labels):
    """0/1 labels -> 2 x K int array of 1-based inclusive [start; end] runs of ones."""
    padded = np.concatenate(([0], np.asarray(labels, np.int8), [0]))
    changes = np.diff(padded)
    starts = np.flatnonzero(changes == 1) + 1
    ends = np.flatnonzero(changes == -1)
    return np.stack([starts, ends]).astype(np.int64)


def _avenue_labels(path, videos):
    from scipy.io import loadmat

    if not path.is_file():
        raise VPCError(f"ground truth file not found: {path}")
    try:
        gt = loadmat(str(path))["gt"]
    except (KeyError, ValueError, OSError) as error:
        raise VPCError(f"cannot read variable 'gt' from {path}: {error}") from None
    per_video = list(np.asarray(gt, dtype=object).ravel())
    if len(per_video) != len(videos):
        raise VPCError(f"{path} describes {len(per_video)} videos but the test split has {len(videos)}")
    labels = {}
    for video, intervals in zip(videos, per_video):
        try:
            labels[video.name] = intervals_to_labels(intervals, video.n_raw_frames)
        except VPCError as error:
            raise VPCError(f"{path}, video {video.name}: {error}") from None
    return labels


def _npy_labels(folder, videos, nested):
    if not folder.is_dir():
        raise VPCError(f"ground truth folder not found: {folder}")
    files = {video.name: folder / video.name / f"{video.name}.npy" if nested else folder / f"{video.name}.npy"
             for video in videos}
    available = sorted(folder.glob("*/*.npy" if nested else "*.npy"))
    if len(available) != len(videos):
        raise VPCError(f"{folder} holds ground truth for {len(available)} videos but the test split has "
                       f"{len(videos)}")
    labels = {}
    for name, file in files.items():
        if not file.is_file():
            raise VPCError(f"ground truth file not found for video {name}: {file}")
        try:
            values = np.load(file, allow_pickle=False).ravel()
        except (ValueError, OSError, EOFError):
            raise VPCError(f"cannot read ground truth file {file}: not a readable .npy array") from None
        if not np.isin(values, (0, 1)).all():
            raise VPCError(f"{file} must hold 0/1 frame labels")
        labels[name] = values.astype(np.uint8)
    return labels
