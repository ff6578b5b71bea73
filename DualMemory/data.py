"""The dual-memory model's input (DualMemory/SPEC.md, section 2): clips of 16 consecutive frames
(extra.windows), each frame resized to h x w and standardised on its own, (x - mean) / std over all its
pixels and channels (std with N - 1), stacked along time: (C, 16, h, w), channels BGR as OpenCV reads
them. A pseudo-anomalous clip takes every ``jump``-th frame (extra.pseudo_anomalies.skip_index).
"""
import numpy as np
import torch

from extra.pseudo_anomalies import skip_index
from extra.windows import Windows
from DualMemory.options import CLIP_LENGTH


def standardised(frame):
    """A resized BGR frame (h, w, 3) -> (3, h, w) float32, standardised over itself."""
    x = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1)
    return (x - x.mean()) / x.std()


def clip_input(frames):
    """Resized frames -> one clip (C, T, h, w), each frame standardised."""
    return torch.stack([standardised(frame) for frame in frames], dim=1)


def dual_windows(pieces, config):
    """The 16-frame clips of ``pieces`` as the model reads them (``config``: h, w)."""
    return Windows(pieces, CLIP_LENGTH, config.h, config.w, clip_input)


def skip_clip(windows, index, jump, rng, end):
    """The skip-frame pseudo-anomaly of clip ``index``: every ``jump``-th frame from its start, the end
    handled as ``end`` says (official: the start drawn again with ``rng``, then clamped)."""
    v, start = windows.starts[index]
    piece = windows.pieces[v]
    last = piece.video.first_frame + piece.stop - 1
    return clip_input(windows.frames(v, skip_index(start, windows.t_length, jump, last, end, rng)))


def pseudo_input(clip, skip, channels):
    """What replaces a normal clip that becomes pseudo-anomalous: the skip clip, or (official) its first
    channel copied into every channel (SPEC 2.2)."""
    return skip[:1].expand_as(clip).clone() if channels == "first" else skip
