"""MNAD's input (MNAD/SPEC.md, data): windows of ``t_length`` consecutive frames of a video (extra.windows),
each frame resized to h x w, scaled to [-1, 1] (BGR, as OpenCV reads it) and stacked along channels,
(3 t, h, w).
"""
import numpy as np
import torch

from extra.datasets import normalize_frame
from extra.windows import Windows


def input_frame(frame):
    """A resized BGR frame (uint8, or float on 0..255) -> (3, h, w) float32 in [-1, 1]."""
    return normalize_frame(frame).transpose(2, 0, 1)


def stacked(frames):
    """Resized frames -> one window (3 t, h, w) float32 in [-1, 1], frame-major."""
    return torch.from_numpy(np.concatenate([input_frame(frame) for frame in frames], axis=0))


def mnad_windows(pieces, config):
    """The windows of ``pieces`` as MNAD reads them (``config``: t_length, h, w)."""
    return Windows(pieces, config.t_length, config.h, config.w, stacked)
