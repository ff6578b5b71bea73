"""Greedy coreset subsampling and memory banks (SPEC section 5)."""
import warnings
from dataclasses import dataclass

import torch

from extra.device import default_device
from extra.errors import VPCError
from extra.progress import progress as progress_of
from Memorization.knn.rounding import gamma
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


# Elements of the (contenders, centres, D) differences held at once when recomputing the published way.
RECHECK_ELEMENTS = 1 << 24


def squared_distances(points, centres):
    """(len(points), len(centres)) squared L2 distances as sums of squared differences in the points'
    dtype: the published computation, whose values decide the greedy order."""
    return ((points[:, None, :] - centres[None, :, :]) ** 2).sum(dim=-1)


def published_nearest(points, centres):
    """Each point's smallest ``squared_distances`` to ``centres``, in bounded memory."""
    step = max(1, RECHECK_ELEMENTS // max(1, points.shape[0] * points.shape[1]))
    return torch.stack([squared_distances(points, centres[start:start + step]).amin(dim=1)
                        for start in range(0, centres.shape[0], step)]).amin(dim=0)


def greedy_coreset_indices(features, n_select, random_projection=False, eps=0.9, seed=0):
    """Indices (CPU LongTensor, in the order chosen) of a greedy k-center coreset of ``features``.

    Starts with item 0, keeps every item's distance to its nearest chosen item, and takes the
    item farthest from the chosen set ``n_select - 1`` times (one item when ``n_select`` is 0
    or 1). Ties go to the lowest index. The order is that of squared L2 distances computed as sums
    of squared differences in the features' dtype (``squared_distances``), on their device.
    ``random_projection`` measures distances on a sparse random projection (``eps``, ``seed``)
    instead; the indices refer to the original rows either way.

    Each step costs one matrix-vector product: distances to the new centre come from
    ||p||^2 + ||c||^2 - 2 p.c on centred points with precomputed norms. Where other running
    distances come closer to the largest than the rounding bounds allow to tell apart, these
    contenders' distances are computed the published way (and kept, so that a contender seen again
    is brought up to date with the centres chosen since), so the indices are those of the
    published loop.
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
    centred = points - points.mean(dim=0)
    norms = (centred.double() ** 2).sum(dim=1).to(points.dtype)     # correctly rounded: error u ||c||^2
    # |product form - exact| <= gamma_D ||c_i|| ||c_j|| (the dot product) + u (||c_i||^2 + ||c_j||^2)
    # (norms) + 8 u R^2 (two additions) + 8 u R^2 (the centring's rounding moves the points), with R
    # the largest centred norm; the published sums are within gamma_(D+3) of the value itself.
    dim, unit_roundoff = points.shape[1], torch.finfo(points.dtype).eps / 2
    radius_squared = float(norms.max()) * (1 + 1e-3)
    product_error = (gamma(dim, points.dtype) + 18 * unit_roundoff) * radius_squared
    published_error = gamma(dim + 3, points.dtype)
    published = torch.full_like(norms, float("inf"))     # published nearest distances, as of ...
    published_until = torch.zeros(n_items, dtype=torch.long, device=points.device)   # ... this many centres
    chosen = torch.zeros(n_select, dtype=torch.long, device=points.device)
    centres = points.new_empty(n_select, dim)      # the chosen points, in order, for the rechecks
    centres[0] = points[0]

    def distances_to(index):      # product form: ||c_i||^2 + ||c_index||^2 - 2 c_i.c_index for every i
        return torch.addmv(norms, centred, centred[index], alpha=-2).add_(norms[index])

    nearest = distances_to(0)
    for step in range(1, n_select):
        farthest = torch.argmax(nearest)
        largest = float(nearest[farthest])
        undecided = 2 * (product_error + published_error * (largest + product_error))
        contenders = torch.nonzero(nearest >= largest - undecided).squeeze(1)
        if contenders.numel() > 1:
            since = int(published_until[contenders].min())      # centres some contender has not seen
            published[contenders] = torch.minimum(published[contenders],
                                                  published_nearest(points[contenders], centres[since:step]))
            published_until[contenders] = step
            farthest = contenders[torch.argmax(published[contenders])]      # first of equals: the lowest index
        chosen[step] = farthest
        centres[step] = points[farthest]
        nearest = torch.minimum(nearest, distances_to(farthest))
    return chosen.cpu()


def coreset_rows(features, ratio, random_projection=False, eps=0.9, seed=0, device=None):
    """Indices of the rows of ``features`` that ``subsample`` keeps (CPU LongTensor, in its order)."""
    if ratio >= 1:
        return torch.arange(coreset_size(ratio, features.shape[0]))
    points = features.to(device or default_device())
    return greedy_coreset_indices(points, coreset_size(ratio, features.shape[0]), random_projection, eps, seed)


def subsample(features, ratio, random_projection=False, eps=0.9, seed=0, device=None):
    """Coreset rows of ``features`` for ``ratio`` (all rows, unchanged, when ratio >= 1).

    The greedy search runs on ``device`` (default: CUDA when available); the rows returned stay
    where ``features`` is.
    """
    if ratio >= 1:
        return features
    return features[coreset_rows(features, ratio, random_projection, eps, seed, device)]


@dataclass(frozen=True)
class Coreset:
    """How a memory bank is subsampled: the ratio, the memorising order, the distance space."""

    ratio: float
    order: str = BANK_ORDERS[0]
    random_projection: bool = False
    eps: float = 0.9
    seed: int = 0


def build_memory_bank(per_video_patches, coreset, device=None, progress=True, with_rows=False):
    """Memory bank (M, D) from the patch sets of the training videos, in video order; ``with_rows``:
    (the bank, (M, 2) CPU long: per bank row, the number of its video in ``per_video_patches`` and
    the row of that video's patches it is).

    "subsample_then_concat" (published code): a coreset per video, concatenated.
    "concat_then_subsample" (slides, Table 7): one coreset of all patches together.
    Videos without patches contribute nothing. The bank is on the patches' device.
    """
    if coreset.order not in BANK_ORDERS:
        raise VPCError(f"unknown memory bank order {coreset.order!r}: use one of {', '.join(BANK_ORDERS)}")
    numbers = [number for number, patches in enumerate(per_video_patches) if patches.shape[0] > 0]
    if not numbers:
        raise VPCError("no training patches to memorise: check that object detection found "
                       "objects in the training videos")
    non_empty = [per_video_patches[number] for number in numbers]
    options = dict(random_projection=coreset.random_projection, eps=coreset.eps, seed=coreset.seed, device=device)
    if coreset.order == "concat_then_subsample":
        everything = torch.cat(non_empty)
        kept = coreset_rows(everything, coreset.ratio, **options)
        bank = everything if coreset.ratio >= 1 else everything[kept]
        return (bank, joined_rows([len(patches) for patches in non_empty], numbers, kept)) if with_rows else bank
    videos = progress_of(non_empty, "coreset per training video") if progress else non_empty
    kept = [coreset_rows(patches, coreset.ratio, **options) for patches in videos]
    bank = torch.cat([patches if coreset.ratio >= 1 else patches[k] for patches, k in zip(non_empty, kept)])
    if not with_rows:
        return bank
    return bank, torch.cat([torch.stack([torch.full_like(k, number), k], dim=1) for number, k in zip(numbers, kept)])


def joined_rows(sizes, numbers, kept):
    """(video number, row in its patches) of the rows ``kept`` of the videos' patches joined, the videos
    having ``sizes`` rows and ``numbers``."""
    position, row = group_positions(sizes, kept)
    return torch.stack([torch.tensor(numbers)[position], row], dim=1)


def group_positions(sizes, flat):
    """(group, position within it) of each index of ``flat`` into groups of ``sizes`` laid end to end
    (empty groups hold none): how a bank row or a patch row is traced back to its video, clip or item."""
    sizes = torch.as_tensor(sizes, dtype=torch.long)
    ends = sizes.cumsum(0)
    group = torch.searchsorted(ends, flat, right=True)
    return group, flat - (ends - sizes)[group]
