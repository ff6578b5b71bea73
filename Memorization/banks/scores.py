"""Per-bank scoring (SPEC section 6): an item's score is its farthest patch row's nearest-neighbour
distance to the bank (Memorization.knn) to the power n; a clip's score is the max over its items (0
without any); every clip score covers its d frames.
"""
import numpy as np
import torch

from extra.errors import VPCError
from Memorization.banks.specs import STREAMS, stack_items


def item_scores(spec, items, bank, method, return_index=False):
    """Score of every item, (n_items,): its farthest row's distance to the bank, to the power n (with
    ``return_index``, and the bank row nearest that row: ``object_scores``)."""
    return object_scores(spec.patches(items, method, "test"), items.shape[0], bank, method.power_n,
                         search=method.search, return_index=return_index)


def score_clips(spec, clips, bank, method, device, items_out=None):
    """Per-frame scores (float64 numpy) of one video's clips for ``spec``; the bank is on ``device``.
    ``items_out``, a list, receives every item's score (numpy, clip order): the objects' own scores."""
    per_call = STREAMS[spec.stream].clips_per_call or max(len(clips), 1)
    scores = []
    for start in range(0, len(clips), per_call):
        chunk = clips[start:start + per_call]
        items, counts = stack_items(chunk)
        if items is None:
            scores.append(torch.zeros(len(chunk)))
            continue
        of_items = item_scores(spec, items.to(device), bank, method)
        scores.append(clip_scores(of_items, counts).cpu())
        if items_out is not None:
            items_out.extend(of_items.cpu().numpy().tolist())
    return frame_scores(torch.cat(scores), method.consecutive)


def object_scores(patches, n_objects, bank, power, chunk_size=None, search="exact", return_index=False):
    """Score of every object of a batch, (n_objects,), from one nearest-neighbour search (``search``:
    a name of Memorization.knn.search's, the exact one by default). With ``return_index``, also per
    object the index of the bank row nearest its farthest patch row (the first of equally far ones).

    ``patches`` holds the same number of rows per object, object-major (as made by
    ``patches.spatial_patches`` / ``temporal_patches``). Objects of several clips may be
    stacked in one call; ``clip_scores`` then takes the max per clip.
    """
    if n_objects == 0:
        scores = patches.new_zeros(0)
        return (scores, scores.long()) if return_index else scores
    if patches.shape[0] % n_objects:
        raise VPCError(f"{patches.shape[0]} patch rows cannot be split evenly over {n_objects} objects")
    from Memorization.knn.search import search_nearest  # it builds on this module

    if not return_index:
        return search_nearest(patches, bank, search, chunk_size).view(n_objects, -1).amax(dim=1) ** power
    distances, index = search_nearest(patches, bank, search, chunk_size, return_index=True)
    distances = distances.view(n_objects, -1)
    farthest = distances.argmax(dim=1, keepdim=True)        # argmax: the first of equals
    return distances.gather(1, farthest)[:, 0] ** power, index.view(n_objects, -1).gather(1, farthest)[:, 0]


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
