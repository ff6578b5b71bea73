"""Greedy coreset subsampling and memory banks (SPEC section 5)."""
import warnings
from dataclasses import dataclass

import torch

from extra.device import default_device
from extra.errors import VPCError
from extra.progress import progress as progress_of
from Memorization.options import BANK_ORDERS


def coreset_size(ratio, n_items):
    """Items kept from a set of ``n_items``: int(ratio * n_items); ratio >= 1 keeps them all."""
    if ratio <= 0:
        raise VPCError(f"coreset ratio must be positive, got {ratio}")
    return n_items if ratio >= 1 else int(ratio * n_items)


def _sparse_projection(features, eps, seed):
    """Features seen through scikit-learn's SparseRandomProjection, as a tensor on their device."""
    from sklearn.random_projection import SparseRandomProjection

    projector = SparseRandomProjection(eps=eps, random_state=seed)
    with warnings.catch_warnings():
        # With few features the Johnson-Lindenstrauss size exceeds D; the projection then only
        # rotates, as in the published code, so the warning says nothing useful.
        warnings.simplefilter("ignore")
        projected = projector.fit_transform(features.detach().cpu().numpy())
    return torch.as_tensor(projected, dtype=features.dtype, device=features.device)


def greedy_coreset_indices(features, n_select, random_projection=False, eps=0.9, seed=0):
    """Indices (CPU LongTensor, in the order chosen) of a greedy k-center coreset of ``features``.

    Starts with item 0, keeps every item's distance to its nearest chosen item, and takes the
    item farthest from the chosen set ``n_select - 1`` times (one item when ``n_select`` is 0
    or 1). Ties go to the lowest index. Distances are squared L2 (same order as L2), computed
    as an exact sum of squared differences against the one new centre per step, on the
    features' device. ``random_projection`` measures distances on a sparse random projection
    (``eps``, ``seed``) instead; the indices refer to the original rows either way.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise VPCError(f"coreset input must be a non-empty (N, D) tensor, got {tuple(features.shape)}")
    n_items = features.shape[0]
    if n_select > n_items:
        raise VPCError(f"cannot select {n_select} items from {n_items}: use a coreset ratio <= 1")
    n_select = max(n_select, 1)
    if n_select == 1:
        return torch.zeros(1, dtype=torch.long)
    points = _sparse_projection(features, eps, seed) if random_projection else features
    chosen = torch.zeros(n_select, dtype=torch.long, device=points.device)
    nearest = ((points - points[0]) ** 2).sum(dim=1)
    for step in range(1, n_select):
        # The index stays a device tensor: no host synchronisation inside the loop.
        farthest = torch.argmax(nearest)
        chosen[step] = farthest
        centre = points.index_select(0, farthest.view(1))
        nearest = torch.minimum(nearest, ((points - centre) ** 2).sum(dim=1))
    return chosen.cpu()


def subsample(features, ratio, random_projection=False, eps=0.9, seed=0, device=None):
    """Coreset rows of ``features`` for ``ratio`` (all rows, unchanged, when ratio >= 1).

    The greedy search runs on ``device`` (default: CUDA when available); the rows returned stay
    where ``features`` is.
    """
    n_select = coreset_size(ratio, features.shape[0])
    if ratio >= 1:
        return features
    points = features.to(device or default_device())
    return features[greedy_coreset_indices(points, n_select, random_projection, eps, seed)]


@dataclass(frozen=True)
class Coreset:
    """How a memory bank is subsampled: the ratio, the memorising order, the distance space."""

    ratio: float
    order: str = BANK_ORDERS[0]
    random_projection: bool = False
    eps: float = 0.9
    seed: int = 0


def build_memory_bank(per_video_patches, coreset, device=None, progress=True):
    """Memory bank (M, D) from the patch sets of the training videos, in video order.

    "subsample_then_concat" (published code): a coreset per video, concatenated.
    "concat_then_subsample" (slides, Table 7): one coreset of all patches together.
    Videos without patches contribute nothing. The bank is on the patches' device.
    """
    if coreset.order not in BANK_ORDERS:
        raise VPCError(f"unknown memory bank order {coreset.order!r}: use one of {', '.join(BANK_ORDERS)}")
    non_empty = [patches for patches in per_video_patches if patches.shape[0] > 0]
    if not non_empty:
        raise VPCError("no training patches to memorise: check that object detection found "
                       "objects in the training videos")
    options = dict(random_projection=coreset.random_projection, eps=coreset.eps, seed=coreset.seed, device=device)
    if coreset.order == "concat_then_subsample":
        return subsample(torch.cat(non_empty), coreset.ratio, **options)
    videos = progress_of(non_empty, "coreset per training video") if progress else non_empty
    return torch.cat([subsample(patches, coreset.ratio, **options) for patches in videos])
