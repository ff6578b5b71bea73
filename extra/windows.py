"""Windows of consecutive frames, what the frame-level (training-based) methods read: a window starts at
each frame of a video and holds ``t_length`` frames, each resized to the model's input size.

Videos come from the shared data layer (extra.datasets: the datasets' layouts, frame folders or video
files). A video of n usable frames gives n - t_length + 1 windows; a frame folder is read window by
window as the official loaders do, a video file is decoded once and its frames kept resized, as uint8
(seeking a compressed file per window would decode it over and over). Windows are read from pieces of
videos (``Piece``): whole videos, or what training keeps when some footage is held out for the
label-free calibration (``hold_out_pieces``).
"""
from typing import NamedTuple

import numpy as np

from extra.errors import VPCError


def resized(frame, height, width):
    """A BGR uint8 frame resized to h x w (bilinear), before any scaling, as the official loader does."""
    import cv2

    return cv2.resize(frame, (width, height))


class Piece(NamedTuple):
    """A stretch of a video's usable frames, [start, stop) counted from its first usable frame: a whole
    video, or one half of the only one."""

    name: str
    video: object       # extra.datasets.Video
    start: int
    stop: int


def whole(videos):
    """Each video as one piece."""
    return [Piece(video.name, video, 0, video.n_frames) for video in videos]


def hold_out_pieces(videos, hold_out, t_length):
    """(training pieces, held-out pieces) of the training videos: ``hold_out`` videos spread evenly over
    the split are held out of training (the label-free calibration scores them), or, with a single
    video, its second half. None held out when ``hold_out`` is 0."""
    if hold_out == 0:
        return whole(videos), []
    if len(videos) == 1:
        (video,) = videos
        half = video.n_frames // 2
        if half < t_length + 1 or video.n_frames - half < t_length:
            raise VPCError(f"--hold_out with one training video holds out its second half: {video.name} has "
                           f"{video.n_frames} frames, too few for two halves of windows of {t_length} (--t_length)")
        return [Piece(f"{video.name} (first half)", video, 0, half)], \
            [Piece(f"{video.name} (second half)", video, half, video.n_frames)]
    if hold_out >= len(videos):
        raise VPCError(f"--hold_out {hold_out} leaves no training video: hold out at most {len(videos) - 1} of the "
                       f"{len(videos)}")
    chosen = set(np.linspace(0, len(videos) - 1, hold_out).round().astype(int).tolist())
    if len(chosen) < hold_out:      # linspace rounds two onto one video only when hold_out is near len(videos)
        chosen |= set(sorted(set(range(len(videos))) - chosen)[:hold_out - len(chosen)])
    pieces = whole(videos)
    return [p for i, p in enumerate(pieces) if i not in chosen], [p for i, p in enumerate(pieces) if i in chosen]


class Windows:
    """Every window of ``t_length`` frames of ``pieces`` (Piece, or whole videos: ``whole``), in piece then
    frame order, each frame resized to height x width; ``to_input`` makes a method's input tensor of a
    window's resized frames (a torch Dataset's ``__getitem__``)."""

    def __init__(self, pieces, t_length, height, width, to_input):
        self.pieces, self.t_length, self.height, self.width = list(pieces), t_length, height, width
        self.to_input = to_input
        self.starts = [(v, piece.video.first_frame + i) for v, piece in enumerate(self.pieces)
                       for i in range(piece.start, max(piece.stop - t_length + 1, piece.start))]
        if not self.starts:
            raise VPCError(f"no video has the {t_length} frames one window needs")
        self._decoded = {}

    def windows_of(self, v):
        """How many windows piece ``v`` gives."""
        piece = self.pieces[v]
        return max(piece.stop - piece.start - self.t_length + 1, 0)

    def first_window(self, v):
        """The index of piece ``v``'s first window."""
        return sum(self.windows_of(u) for u in range(v))

    def __len__(self):
        return len(self.starts)

    def frames(self, v, indices):
        """Frames of piece ``v``'s video at raw ``indices``, resized (BGR uint8)."""
        video = self.pieces[v].video
        if not video.is_file:
            return [resized(frame, self.height, self.width) for frame in video.frames_at(indices)]
        if video.name not in self._decoded:
            self._decoded[video.name] = [resized(frame, self.height, self.width)
                                         for frame in video.frames_at(range(video.n_raw_frames))]
        return [self._decoded[video.name][i] for i in indices]

    def __getitem__(self, index):
        v, start = self.starts[index]
        return self.to_input(self.frames(v, range(start, start + self.t_length)))


def training_videos(settings, data_root, t_length):
    """The training videos long enough for a window (a shorter one is skipped with a warning)."""
    from extra.datasets import scan_split, usable_videos

    videos = usable_videos(scan_split(settings, data_root, "train"), t_length)
    if not videos:
        raise VPCError(f"no training video has the {t_length} frames one window needs")
    return videos


def test_videos(settings, data_root, t_length):
    """(test videos, labels by name) for a method scoring windows of ``t_length`` frames, each video
    normalised over its own windows: a video must give two windows or more."""
    from extra.datasets import labelled_test_videos

    videos, labels = labelled_test_videos(settings, data_root, t_length)
    if not videos:
        raise VPCError(f"no test video has the {t_length} frames one window needs")
    for video in videos:
        if video.n_frames == t_length:
            raise VPCError(f"test video {video.source} has {video.n_frames} frames, one window of {t_length}: the "
                           f"per-video min-max normalisation needs 2 windows or more")
    return videos, labels


def run_record(config, videos, held_out):
    """The settings a trained model depends on (``config.training_record()``), with the training videos
    (names and frames) of the split and the pieces of them held out of training."""
    return {**config.training_record(), "videos": {video.name: video.n_frames for video in videos},
            "held_out": [piece.name for piece in held_out]}


def held_out_again(config, names, model_path):
    """The pieces a model was trained without (``names``, as its training record lists them), found again
    in the training split (``config``: settings, data_root, t_length, hold_out); refused when the split
    has changed since."""
    if not names:
        return []
    videos = training_videos(config.settings, config.data_root, config.t_length)
    _, held_out = hold_out_pieces(videos, config.hold_out, config.t_length)
    if [piece.name for piece in held_out] != names:
        raise VPCError(f"the training split has changed since {model_path} was trained: it held out "
                       f"{', '.join(names)}, the split now gives {', '.join(p.name for p in held_out)}; train again "
                       f"with --overwrite")
    return held_out
