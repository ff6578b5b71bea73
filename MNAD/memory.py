"""MNAD's memory (MNAD/SPEC.md, sections 4 to 7) as pure functions on tensors.

Shapes: ``queries`` (..., D), one L2-normalised vector per spatial position of the encoder's feature
maps: (N, D), or (B, h, w, D) as ``queries_of`` gives them (N = B h w, D = 512); ``items`` (M, D), the
memory items, L2-normalised rows. Nothing here holds state: the caller carries the items from one step
(or test frame) to the next. Every function follows the official code's order of operations, and the
model passes the queries in the official layout (a permuted view: torch multiplies it along another
path than a contiguous (N, D) copy, with other float rounding), so that results match the official
code to the bit.
"""
import math

import torch
import torch.nn.functional as F


def init_items(size=10, dim=512, seed=None):
    """Initial memory items: uniform noise in [0, 1), each row L2-normalised. ``seed`` None draws from
    torch's global generator, as the official Train.py does (it sets no seed)."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return F.normalize(torch.rand((size, dim), dtype=torch.float, generator=generator), dim=1)


def queries_of(features):
    """Encoder features (B, D, h, w) -> queries (B, h, w, D): normalised over channels, as a permuted view."""
    return F.normalize(features, dim=1).permute(0, 2, 3, 1)


def flat(queries):
    """Queries as rows (N, D), position-major (batch, then row, then column)."""
    return queries.contiguous().view(-1, queries.shape[-1])


def attention(queries, items):
    """The two softmaxes of the similarities q . p (N, M): over the queries (each item's column sums to 1,
    used by the update) and over the items (each query's row sums to 1, used by the read and losses)."""
    similarity = torch.matmul(queries, items.t()).view(-1, items.shape[0])
    return F.softmax(similarity, dim=0), F.softmax(similarity, dim=1)


def nearest_items(queries, items, k=1):
    """Indices (N, k) of each query's k most similar items, best first (top-k of the softmax over items,
    as the official code ranks them)."""
    return torch.topk(attention(queries, items)[1], k, dim=1)[1]


def read(queries, items):
    """Each query concatenated with its read of the memory (N, 2 D): the items averaged with the softmax
    over items as weights. The weights are detached, as in the official code: gradients reach the
    queries through their own half only."""
    weights = attention(queries, items)[1].detach()
    return torch.cat((flat(queries), torch.matmul(weights, items)), dim=1)


def update_items(queries, items, norm="all"):
    """The top-1 weighted update: each item plus the sum of the queries whose nearest item it is, each
    weighted by its softmax-over-queries score divided by the largest such score of the item's column
    (over *all* queries, not only the item's own: the official code), then every row L2-normalised.
    Detached. ``norm`` "assigned" divides by the largest score of the item's own queries (the paper)."""
    by_query = attention(queries, items)[0]
    nearest = nearest_items(queries, items, 1)[:, 0]
    rows, change = flat(queries), torch.zeros_like(items)
    for m in range(items.shape[0]):
        mine = torch.nonzero(nearest == m)[:, 0]
        if len(mine):
            # divide then multiply, row by row, and sum over the queries: the official order
            largest = torch.max(by_query[:, m] if norm == "all" else by_query[mine, m])
            change[m] = ((by_query[mine, m] / largest)[:, None] * rows[mine]).sum(dim=0)
    return F.normalize(change + items, dim=1).detach()


def compactness_loss(queries, items, ranked=1, reduction="mean"):
    """Feature compactness: mean squared difference between each query and its nearest item, averaged
    over all N x D elements (torch's MSELoss), the item detached. The nearest item is the first of the
    top ``ranked`` (the official prediction model ranks 2, the rest 1: the same item unless two
    similarities are exactly equal, where torch's top-k may order them differently). ``reduction`` "sum":
    the squared distances summed over the queries (the paper's wording; the scale alone changes)."""
    nearest = nearest_items(queries, items, ranked)[:, 0]
    return F.mse_loss(flat(queries), items[nearest].detach(), reduction=reduction)


def separateness_loss(queries, items, margin=1.0, reduction="mean"):
    """Feature separateness: the triplet loss max(|q - p1| - |q - p2| + margin, 0) with the nearest
    (p1) and second-nearest (p2) items, both detached, averaged over the queries (torch's
    TripletMarginLoss: L2 distance of q - p + 1e-6), or summed over them (``reduction`` "sum")."""
    nearest = nearest_items(queries, items, 2)
    return F.triplet_margin_loss(flat(queries), items[nearest[:, 0]].detach(), items[nearest[:, 1]].detach(),
                                 margin=margin, reduction=reduction)


def compactness_distance(queries, items):
    """A test frame's feature score: its compactness loss, as a Python float."""
    return compactness_loss(queries, items).item()


def _unit_range_error(output, target):
    """Squared error per element of two frames in [-1, 1], both mapped to [0, 1] first."""
    return F.mse_loss((output + 1) / 2, (target + 1) / 2, reduction="none")


def frame_mse(output, target):
    """Mean squared error of one frame (C, H, W) on the [0, 1] range, as a Python float."""
    return torch.mean(_unit_range_error(output, target)).item()


def frame_psnr(output, target, peak="one"):
    """PSNR of one frame on the [0, 1] range: 10 log10(peak / mse). ``peak`` "one": 1 (the official code);
    "frame_max": the output frame's largest value, not squared (the paper's formula as printed, SPEC 10).
    A perfect frame gives infinity (the official code raises ZeroDivisionError there), an all-black
    output with "frame_max" minus infinity."""
    mse = frame_mse(output, target)
    top = 1 if peak == "one" else ((output.max() + 1) / 2).item()
    if mse == 0:
        return math.inf
    return 10 * math.log10(top / mse) if top > 0 else -math.inf


def point_score(output, target, form="official"):
    """The test-time update's gate: the errors e of one frame (C, H, W) on [0, 1] averaged with weights
    1 - exp(-e), sum(w e) / sum(w), as a Python float (NaN for a perfect frame). ``form`` "official": e
    the squared error of each element (the official code); "paper": e per pixel, the L2 norm of the error
    over channels (the paper as we read it, SPEC 10; a larger scale than squared errors for the same --th)."""
    error = _unit_range_error(output, target)
    if form == "paper":
        error = torch.sqrt(torch.sum(error, dim=0))
    weights = 1 - torch.exp(-error)
    return (torch.sum(weights * error) / torch.sum(weights)).item()


def test_time_update(queries, items, score, threshold, norm="all"):
    """The items after a test frame, and whether they changed: updated with the frame's queries when its
    point score is strictly below ``threshold`` (a NaN score never updates)."""
    if score < threshold:
        return update_items(queries, items, norm), True
    return items, False
