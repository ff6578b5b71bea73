"""Patch vectors cut from one clip's features (SPEC section 4).

``lf`` is a clip's local features, (n_objects, c', d, 28, 28); ``gf`` its global features,
(1, C, d). Every function returns a 2-D tensor with one patch vector per row, on the input's
device, so the rows can go straight into a memory bank or a nearest-neighbour search.
"""
import torch.nn.functional as F

from extra.errors import VPCError
from Memorization.options import TEMPORAL_POOLING


def temporal_pooling(stage, mode="mismatched"):
    """Grid pooling ("avg" | "max") for temporal patches at ``stage`` ("train" | "test")."""
    if mode not in TEMPORAL_POOLING:
        raise VPCError(f"unknown temporal pooling mode {mode!r}: use one of {sorted(TEMPORAL_POOLING)}")
    if stage not in ("train", "test"):
        raise VPCError(f"unknown stage {stage!r}: use 'train' or 'test'")
    return TEMPORAL_POOLING[mode][stage]


def _check_local(lf, min_frames):
    if lf.ndim != 5:
        raise VPCError(f"local features must have shape (n_objects, c', d, H, W), got {tuple(lf.shape)}")
    if lf.shape[2] < min_frames:
        raise VPCError(f"these patches need clips of at least {min_frames} frames, got d = {lf.shape[2]}: "
                       f"use --consecutive {min_frames} or more")


def spatial_patches(lf, pool_for_sm=4):
    """Appearance patches, (n_objects * g * g, c') with g = H // pool_for_sm (7 for 28 and p = 4).

    The time axis is reduced by mean + max (summed), then the H x W grid is average-pooled
    adaptively to g x g. Row order: object-major, then the g x g grid row-major, i.e. row
    ``obj * g * g + i * g + j`` is cell (i, j) of object ``obj``.
    """
    _check_local(lf, min_frames=1)
    if not 1 <= pool_for_sm <= lf.shape[-2]:
        raise VPCError(f"pool_for_sm must be between 1 and {lf.shape[-2]}, got {pool_for_sm}")
    side = lf.shape[-2] // pool_for_sm
    appearance = lf.mean(dim=2) + lf.amax(dim=2)                   # (n, c', H, W)
    grid = F.adaptive_avg_pool2d(appearance, side)                  # (n, c', g, g)
    return grid.permute(0, 2, 3, 1).reshape(-1, lf.shape[1])


def temporal_differences(lf, absolute=False):
    """lf[:, :, t+1] - lf[:, :, t] for t = 0 .. d-2, (n, c', d-1, H, W).

    Signed as in the published code; ``absolute=True`` gives the slides' |lf_{t+1} - lf_t|.
    """
    _check_local(lf, min_frames=2)
    differences = lf[:, :, 1:] - lf[:, :, :-1]
    return differences.abs() if absolute else differences


def temporal_patches(lf, pooling, absolute=False):
    """Motion patches, (n_objects * (d-1), c'): each frame difference pooled over the grid.

    ``pooling`` is "avg" or "max" (see ``temporal_pooling`` for which one each stage uses).
    Row order: object-major, then time, i.e. row ``obj * (d-1) + t`` is difference t of ``obj``.
    """
    differences = temporal_differences(lf, absolute)
    if pooling == "avg":
        pooled = differences.mean(dim=(-2, -1))
    elif pooling == "max":
        pooled = differences.amax(dim=(-2, -1))
    else:
        raise VPCError(f"unknown temporal pooling {pooling!r}: use 'avg' or 'max'")
    return pooled.transpose(1, 2).reshape(-1, lf.shape[1])          # (n, c', d-1) -> rows


def highlevel_patches(gf):
    """Global-context patches from the temporal pyramid, (d, C) for gf of shape (1, C, d).

    f1 = max_pool1d(k=2, s=1)(gf), f2 = the same on f1, u = adaptive_max_pool1d(f2, d-1) + f1,
    out = adaptive_max_pool1d(u, d) + gf; row t is frame t. The pyramid needs f2 to be
    non-empty, so d >= 3 is required (d = 2 raises VPCError rather than inventing a variant).
    A leading batch of B clips gives (B * d, C), clip-major.
    """
    if gf.ndim != 3:
        raise VPCError(f"global features must have shape (1, C, d), got {tuple(gf.shape)}")
    frames = gf.shape[-1]
    if frames < 3:
        raise VPCError(f"high-level patches need clips of at least 3 frames, got d = {frames}: "
                       "use --consecutive 3 or more")
    f1 = F.max_pool1d(gf, kernel_size=2, stride=1)                  # length d-1
    f2 = F.max_pool1d(f1, kernel_size=2, stride=1)                  # length d-2
    upper = F.adaptive_max_pool1d(f2, frames - 1) + f1
    pyramid = F.adaptive_max_pool1d(upper, frames) + gf
    return pyramid.transpose(1, 2).reshape(-1, gf.shape[1])
