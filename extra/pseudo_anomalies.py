"""Pseudo-anomalies: how a stretch of normal video is made anomalous, seeded (the idea of the
pseudo-anomaly synthesizer of the dual-memory paper in ../shared/seeds). Pure functions on frame
indices, frames or crops that every method's label-free calibration uses (VideoPatchCore's on its
object crops and frames, Memorization.calibration.recipes; MNAD's on its input windows, MNAD.calibration).

- temporal: ``reverse`` (played backwards), ``freeze`` (the middle frame repeated to the end), ``skip``
  (frames taken with a stride of 2 to 5: a sudden speed-up);
- spatial: ``paste`` (a piece of another normal video pasted in with a soft edge), ``shuffle`` (a
  region cut into a 4 x 4 grid whose cells are shuffled);
- global: ``swap`` (part of the frame, at a seeded place, taken from the video half its length away).

torch and OpenCV are imported by the transforms that use them, so the names below cost nothing to
import (the commands' --help).
"""
import numpy as np

RECIPES = ("reverse", "freeze", "skip", "paste", "shuffle", "swap")
TEMPORAL_RECIPES = ("reverse", "freeze", "skip")     # nothing to alter in a single frame
SEGMENT_FRACTION = 0.25     # of a held-out sequence made pseudo-anomalous
GRID = 4                    # cells per side of the shuffled grid


def freeze_index(d):
    """Frame order of a clip frozen on its middle frame: 0 .. d//2 - 1, then d//2 repeated."""
    import torch

    return torch.tensor([min(t, d // 2) for t in range(d)])


SKIP_ENDS = ("lower_stride", "clamp")
SKIP_RETRIES = 10       # the dual-memory loader's redraws of a start too close to the end


def skip_index(start, length, stride, last, end=SKIP_ENDS[0], rng=None):
    """Frame indices of a sped-up clip (the skip-frame pseudo-anomaly): ``length`` frames from ``start``,
    every ``stride``-th, within frames 0..``last``. Where the clip would run past ``last``:

    - ``lower_stride``: the stride is lowered until the clip ends by ``last``;
    - ``clamp`` (the dual-memory model's official loader): while it would pass the end by more than one
      frame (``last + 1 < start + (length - 1) stride``), the start is drawn again, uniformly over 0..last
      with ``rng``, at most SKIP_RETRIES times; then every index is clamped to ``last``.
    """
    if end == "lower_stride":
        while stride > 1 and start + stride * (length - 1) > last:
            stride -= 1
        return [start + stride * k for k in range(length)]
    if end != "clamp":
        raise ValueError(f"unknown skip end {end!r}")
    retries = 0
    while last + 1 < start + stride * (length - 1) and retries < SKIP_RETRIES:
        start, retries = int(rng.integers(0, last + 1)), retries + 1
    return [min(start + stride * k, last) for k in range(length)]


def shuffled_grid(crops, rng):
    """Crops (n, 3, d, H, W) with their GRID x GRID cells permuted (the same permutation for all)."""
    import torch

    n, c, d, h, w = crops.shape
    ch, cw = h // GRID, w // GRID
    cells = crops[..., :ch * GRID, :cw * GRID].reshape(n, c, d, GRID, ch, GRID, cw).permute(0, 1, 2, 3, 5, 4, 6)
    cells = cells.reshape(n, c, d, GRID * GRID, ch, cw)[:, :, :, torch.from_numpy(rng.permutation(GRID * GRID))]
    out = crops.clone()
    out[..., :ch * GRID, :cw * GRID] = cells.reshape(n, c, d, GRID, GRID, ch, cw).permute(0, 1, 2, 3, 5, 4, 6) \
        .reshape(n, c, d, ch * GRID, cw * GRID)
    return out


def soft_square(size, side, corner):
    """A (size, size) alpha mask: 1 inside the square of ``side`` at ``corner``, blurred at its edge."""
    import cv2
    import torch

    mask = np.zeros((size[0], size[1]), np.float32)
    mask[corner[0]:corner[0] + side, corner[1]:corner[1] + side] = 1
    blur = max(side // 4 * 2 + 1, 3)
    return torch.from_numpy(cv2.GaussianBlur(mask, (blur, blur), 0))


def pasted(crops, donor, rng):
    """Each object of ``crops`` with the first object of ``donor`` (another video's crops), shrunk to
    half the crop's side, blended in with a soft edge at a seeded place, frame by frame."""
    import torch
    import torch.nn.functional as F

    n, _, d, h, w = crops.shape
    side = min(h, w) // 2
    corner = (int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)))
    donor_frames = donor[0].permute(1, 0, 2, 3)                                  # (d, 3, H', W')
    small = F.interpolate(donor_frames, size=(side, side), mode="bilinear", align_corners=False)
    patch = torch.zeros(d, 3, h, w)
    patch[:, :, corner[0]:corner[0] + side, corner[1]:corner[1] + side] = small
    alpha = soft_square((h, w), side, corner)
    return crops * (1 - alpha) + patch.permute(1, 0, 2, 3).unsqueeze(0) * alpha


def swapped(frames, partners, rng):
    """Frames with a third of their area (a seeded rectangle) taken from the partner frames."""
    h, w = frames[0].shape[:2]
    rh, rw = h // 2, w * 2 // 3
    y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    out = [frame.copy() for frame in frames]
    for frame, partner in zip(out, partners):
        frame[y:y + rh, x:x + rw] = partner[y:y + rh, x:x + rw]
    return out
