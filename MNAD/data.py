"""MNAD's input (MNAD/SPEC.md, data): windows of ``t_length`` consecutive frames of a video, each frame
resized to h x w, scaled to [-1, 1] (BGR, as OpenCV reads it) and stacked along channels, (3 t, h, w).

Videos come from the shared data layer (extra.datasets: the datasets' layouts, frame folders or video
files). A video of n usable frames gives n - t_length + 1 windows, one starting at each frame; a frame
folder is read window by window as the official loader does, a video file is decoded once and its
frames kept resized, as uint8 (seeking a compressed file per window would decode it over and over).
"""
import numpy as np
import torch

from extra.datasets import normalize_frame
from extra.errors import VPCError


def resized(frame, height, width):
    """A BGR uint8 frame resized to h x w (bilinear), before any scaling, as the official loader does."""
    import cv2

    return cv2.resize(frame, (width, height))


def input_frame(frame):
    """A resized BGR uint8 frame -> (3, h, w) float32 in [-1, 1]."""
    return normalize_frame(frame).transpose(2, 0, 1)


class Windows(torch.utils.data.Dataset):
    """Every window of ``t_length`` frames of ``videos`` (extra.datasets.Video), in video then frame order."""

    def __init__(self, videos, t_length, height, width):
        self.videos, self.t_length, self.height, self.width = list(videos), t_length, height, width
        self.starts = [(v, video.first_frame + i) for v, video in enumerate(self.videos)
                       for i in range(max(video.n_frames - t_length + 1, 0))]
        if not self.starts:
            raise VPCError(f"no video has the {t_length} frames one window needs")
        self._decoded = {}

    def windows_of(self, v):
        """How many windows video ``v`` gives."""
        return max(self.videos[v].n_frames - self.t_length + 1, 0)

    def __len__(self):
        return len(self.starts)

    def _frames(self, v, indices):
        video = self.videos[v]
        if not video.is_file:
            return [resized(frame, self.height, self.width) for frame in video.frames_at(indices)]
        if v not in self._decoded:
            self._decoded[v] = [resized(frame, self.height, self.width)
                                for frame in video.frames_at(range(video.n_raw_frames))]
        return [self._decoded[v][i] for i in indices]

    def __getitem__(self, index):
        v, start = self.starts[index]
        frames = self._frames(v, range(start, start + self.t_length))
        return torch.from_numpy(np.concatenate([input_frame(frame) for frame in frames], axis=0))
