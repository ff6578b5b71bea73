"""Anomaly scores from memory banks (SPEC section 6)."""
import numpy as np
import torch

from extra.errors import VPCError

# Rows of patches and of bank per block. One block holds CHUNK_SIZE**2 float64 squared
# distances (128 MiB at 4096) plus the two float64 row chunks (2 * CHUNK_SIZE * D * 8 bytes).
CHUNK_SIZE = 4096


def nearest_distances(patches, bank, chunk_size=CHUNK_SIZE):
    """L2 distance from each row of ``patches`` (P, D) to its nearest row of ``bank`` (M, D).

    Returns (P,) in the patches' dtype, on the patches' device (bank chunks are moved there).
    Squared distances come from ||x||^2 + ||m||^2 - 2 x.m on blocks of at most
    ``chunk_size`` x ``chunk_size`` pairs, in float64 so the cancellation of that formula stays
    far below float32 precision; they are clamped at 0 before the square root. Extra memory:
    about 8 * (chunk_size**2 + 2 * chunk_size * D + P * (D + 1)) bytes, whatever M is.
    """
    if patches.ndim != 2 or bank.ndim != 2 or patches.shape[1] != bank.shape[1]:
        raise VPCError(f"patches {tuple(patches.shape)} and memory bank {tuple(bank.shape)} must be "
                       "(P, D) and (M, D) with the same D: was the bank built with the same settings?")
    if bank.shape[0] == 0:
        raise VPCError("the memory bank is empty: rebuild it from training patches")
    queries = patches.to(torch.float64)
    query_norms = (queries ** 2).sum(dim=1)
    nearest = torch.full_like(query_norms, float("inf"))
    for start in range(0, bank.shape[0], chunk_size):
        block = bank[start:start + chunk_size].to(device=queries.device, dtype=torch.float64)
        block_norms = (block ** 2).sum(dim=1)
        for row in range(0, queries.shape[0], chunk_size):
            rows = slice(row, row + chunk_size)
            squared = query_norms[rows, None] + block_norms[None, :] - 2.0 * queries[rows] @ block.T
            nearest[rows] = torch.minimum(nearest[rows], squared.amin(dim=1))
    return nearest.clamp_min(0).sqrt().to(patches.dtype)


def object_scores(patches, n_objects, bank, power, chunk_size=CHUNK_SIZE):
    """Score of every object of a batch, (n_objects,), from one nearest-neighbour search.

    ``patches`` holds the same number of rows per object, object-major (as made by
    ``patches.spatial_patches`` / ``temporal_patches``). Objects of several clips may be
    stacked in one call; ``clip_scores`` then takes the max per clip.
    """
    if n_objects == 0:
        return patches.new_zeros(0)
    if patches.shape[0] % n_objects:
        raise VPCError(f"{patches.shape[0]} patch rows cannot be split evenly over {n_objects} objects")
    distances = nearest_distances(patches, bank, chunk_size).view(n_objects, -1)
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
