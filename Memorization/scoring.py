"""Anomaly scores from memory banks (SPEC section 6)."""
import weakref

import numpy as np
import torch

from extra.errors import VPCError
from Memorization.rounding import gamma

# Rows of patches and of bank per block. On a CPU a block's float32 values (4 MiB at 1024) stay in
# cache; on a GPU larger blocks (1 GiB at 16384) keep the kernels busy and the Python loop short.
CHUNK_SIZE = {"cpu": 1024, "cuda": 16384}
# Bank rows per step when centring it, and (patch, bank row) pairs per step of the float64 recheck.
PREPARE_ROWS = 65536
RECHECK_PAIRS = 65536


def float32_error_bound(query_norms, bank_norm_max, dim):
    """Bound on the float32 error of ||m||^2 - 2 x.m for centred x and m, per query.

    gamma_n with n = 2 D + 8: D products in the dot product, D in ||m||^2, and the roundings of x,
    m and ||m||^2 to float32; the terms sum to at most (||x|| + ||m||)^2.
    """
    return gamma(2 * dim + 8, torch.float32) * (query_norms.sqrt() + bank_norm_max) ** 2


def bank_centre(bank, device):
    """The bank's mean (summed in float64) rounded to float32, on ``device``: searches work on rows
    centred on it, whose smaller norms round less."""
    return (bank.sum(dim=0, dtype=torch.float64) / bank.shape[0]).to(device, torch.float32)


def search_matrix(bank, device):
    """(centre: ``bank_centre``, float32 rows [-2 m, ||m||^2] for m = bank row - centre, largest
    ||m||): with a query row [x, 1], one matrix product gives ||m||^2 - 2 x.m, the squared distance
    less ||x||^2."""
    centre = bank_centre(bank, device)
    matrix = torch.empty(bank.shape[0], bank.shape[1] + 1, dtype=torch.float32, device=device)
    norm_max = torch.zeros((), dtype=torch.float32, device=device)
    for start in range(0, bank.shape[0], PREPARE_ROWS):
        rows = matrix[start:start + PREPARE_ROWS]
        torch.sub(bank[start:start + PREPARE_ROWS].to(device, torch.float32), centre, out=rows[:, :-1])
        norms = torch.linalg.vector_norm(rows[:, :-1], dim=1)
        norm_max = torch.maximum(norm_max, norms.max())
        rows[:, :-1] *= -2
        rows[:, -1] = norms ** 2
    return centre, matrix, norm_max.double() * (1 + 1e-5)       # rounded up: it only enters the bound


# (id of a bank tensor, what, device) -> what was prepared from it; dropped with the bank.
_PREPARED = {}


def prepared_for(bank, what, device, prepare):
    """``prepare()`` once per bank tensor, ``what`` and device (banks are never changed in place): a
    bank scored video after video is centred and copied once."""
    key = (id(bank), what, str(device))
    if key not in _PREPARED:
        _PREPARED[key] = prepare()
        weakref.finalize(bank, _PREPARED.pop, key, None)
    return _PREPARED[key]


def pair_squared_distances(queries, bank, centre, pairs):
    """||x - m||^2 in float64 for (query index, bank index) pairs, from the stored values: ``queries``
    are float64 rows already less ``centre`` (float64), which the bank rows are centred on too."""
    out = torch.empty(pairs.shape[0], dtype=torch.float64, device=queries.device)
    for start in range(0, pairs.shape[0], RECHECK_PAIRS):
        rows, columns = pairs[start:start + RECHECK_PAIRS].unbind(1)
        rows_of_bank = bank[columns.to(bank.device)].to(queries.device, torch.float64) - centre
        out[start:start + RECHECK_PAIRS] = ((queries[rows] - rows_of_bank) ** 2).sum(dim=1)
    return out


def check_search(patches, bank):
    """One-line errors for patches and a bank that cannot be searched together (every search's)."""
    if patches.ndim != 2 or bank.ndim != 2 or patches.shape[1] != bank.shape[1]:
        raise VPCError(f"patches {tuple(patches.shape)} and memory bank {tuple(bank.shape)} must be "
                       "(P, D) and (M, D) with the same D: was the bank built with the same settings?")
    if bank.shape[0] == 0:
        raise VPCError("the memory bank is empty: rebuild it from training patches")


def nearest_distances(patches, bank, chunk_size=None):
    """L2 distance from each row of ``patches`` (P, D) to its nearest row of ``bank`` (M, D).

    Returns (P,) in the patches' dtype, on the patches' device. Both sides are centred on the
    bank's mean rounded to float32 (distances do not change; the norms, and so the cancellation in
    ||x||^2 + ||m||^2 - 2 x.m, shrink). Blocks of ``chunk_size`` x ``chunk_size`` pairs (default
    by device: ``CHUNK_SIZE``) are searched with float32 matrix products (TF32 and bfloat16 off).
    Every bank row whose float32
    value comes within twice the float32 error bound of the patch's float32 minimum so far is a
    candidate, and its distance is recomputed in float64 as a sum of squared differences. The true
    nearest row is always a candidate, so the result is the float64 nearest distance; on typical
    data a patch has a handful of candidates (about the logarithm of the number of blocks).
    Extra memory: a float32 copy of the bank (M x (D + 1)) plus about
    4 * chunk_size**2 + 8 * (P * (D + 4) + RECHECK_PAIRS * D) bytes.
    """
    check_search(patches, bank)
    device = patches.device
    chunk_size = chunk_size or CHUNK_SIZE.get(device.type, CHUNK_SIZE["cpu"])
    centre32, search, bank_norm_max = prepared_for(bank, "search matrix", device, lambda: search_matrix(bank, device))
    centre = centre32.double()
    queries = patches.to(torch.float64) - centre
    query_norms = (queries ** 2).sum(dim=1)
    margin = 2 * float32_error_bound(query_norms, bank_norm_max, patches.shape[1])
    queries32 = torch.cat([queries, torch.ones_like(query_norms[:, None])], dim=1).float()
    approximate = torch.full_like(query_norms, float("inf"))      # float32 minima of ||m||^2 - 2 x.m
    nearest = torch.full_like(query_norms, float("inf"))          # float64 squared distances
    infinity = torch.tensor(float("inf"), device=device)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        for row in range(0, queries.shape[0], chunk_size):
            rows = slice(row, row + chunk_size)
            for start in range(0, bank.shape[0], chunk_size):
                values = queries32[rows] @ search[start:start + chunk_size].T
                block_minima = values.amin(dim=1)
                approximate[rows] = torch.minimum(approximate[rows], block_minima.double())
                # Candidates: values <= threshold (rounded up to float32), looked for only in the
                # rows whose block minimum is one.
                threshold = (approximate[rows] + margin[rows]).float().nextafter(infinity)
                near = torch.nonzero(block_minima <= threshold).squeeze(1)
                if near.numel():
                    found = torch.nonzero(values[near] <= threshold[near, None])
                    pairs = torch.stack([row + near[found[:, 0]], start + found[:, 1]], dim=1)
                    nearest.scatter_reduce_(0, pairs[:, 0], pair_squared_distances(queries, bank, centre, pairs),
                                            reduce="amin")
    finally:
        torch.set_float32_matmul_precision(previous)
    return nearest.sqrt().to(patches.dtype)


def object_scores(patches, n_objects, bank, power, chunk_size=None, search="exact"):
    """Score of every object of a batch, (n_objects,), from one nearest-neighbour search (``search``:
    a name of Memorization.search's, the exact one by default).

    ``patches`` holds the same number of rows per object, object-major (as made by
    ``patches.spatial_patches`` / ``temporal_patches``). Objects of several clips may be
    stacked in one call; ``clip_scores`` then takes the max per clip.
    """
    if n_objects == 0:
        return patches.new_zeros(0)
    if patches.shape[0] % n_objects:
        raise VPCError(f"{patches.shape[0]} patch rows cannot be split evenly over {n_objects} objects")
    from Memorization.search import search_nearest     # it builds on this module

    distances = search_nearest(patches, bank, search, chunk_size).view(n_objects, -1)
    return distances.amax(dim=1) ** power


def clip_scores(scores_of_objects, objects_per_clip):
    """Score of each clip, (n_clips,): the max over its objects, 0 for a clip with none.

    ``scores_of_objects`` lists the objects of all clips in clip order; ``objects_per_clip``
    gives how many belong to each clip. Scores are >= 0, so a max started at 0 is exact.
    """
    counts = torch.as_tensor(objects_per_clip, dtype=torch.long, device=scores_of_objects.device)
    if int(counts.sum()) != scores_of_objects.shape[0]:
        raise VPCError(f"{scores_of_objects.shape[0]} object scores do not match "
                       f"{int(counts.sum())} objects in the clips")
    clip_of_object = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    return scores_of_objects.new_zeros(len(counts)).scatter_reduce(
        0, clip_of_object, scores_of_objects, reduce="amax", include_self=True)


def frame_scores(scores_of_clips, d):
    """Per-frame scores of a video (float64 numpy): every clip score repeated ``d`` times."""
    if torch.is_tensor(scores_of_clips):
        scores_of_clips = scores_of_clips.detach().cpu().numpy()
    return np.repeat(np.asarray(scores_of_clips, dtype=np.float64), d)
