"""MNAD's input (MNAD/SPEC.md, data): windows of ``t_length`` consecutive frames of a video, each frame
resized to h x w, scaled to [-1, 1] (BGR, as OpenCV reads it) and stacked along channels, (3 t, h, w).

Videos come from the shared data layer (extra.datasets: the datasets' layouts, frame folders or video
files). A video of n usable frames gives n - t_length + 1 windows, one starting at each frame; a frame
folder is read window by window as the official loader does, a video file is decoded once and its
frames kept resized, as uint8 (seeking a compressed file per window would decode it over and over).
Windows are read from pieces of videos (``Piece``): whole videos, or what training keeps when
``--hold_out`` sets footage apart for the label-free calibration (``hold_out_pieces``).
"""
from typing import NamedTuple

import numpy as np
import torch

from extra.datasets import normalize_frame
from extra.errors import VPCError


def resized(frame, height, width):
    """A BGR uint8 frame resized to h x w (bilinear), before any scaling, as the official loader does."""
    import cv2

    return cv2.resize(frame, (width, height))


def input_frame(frame):
    """A resized BGR frame (uint8, or float on 0..255) -> (3, h, w) float32 in [-1, 1]."""
    return normalize_frame(frame).transpose(2, 0, 1)


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


class Windows(torch.utils.data.Dataset):
    """Every window of ``t_length`` frames of ``pieces`` (Piece, or whole videos: ``whole``), in piece then
    frame order."""

    def __init__(self, pieces, t_length, height, width):
        self.pieces, self.t_length, self.height, self.width = list(pieces), t_length, height, width
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
        return stacked(self.frames(v, range(start, start + self.t_length)))


def stacked(frames):
    """Resized frames -> one window (3 t, h, w) float32 in [-1, 1], frame-major."""
    return torch.from_numpy(np.concatenate([input_frame(frame) for frame in frames], axis=0))
