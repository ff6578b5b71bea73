"""The nearest-neighbour search of the scores: exact (default), or a faiss index, whose error is measured.

``search_nearest`` is the one dispatcher. "exact" is ``Memorization.knn.exact.nearest_distances`` (the
float64 nearest distance). "faiss-flat" (IndexFlatL2) finds the nearest row in float32, "faiss-ivf"
(IndexIVFFlat, ``ivf_lists`` lists, ``IVF_NPROBE`` probed) an approximately nearest one; both then
recompute the distance to the row found in float64, so their only error is a wrong row. faiss is
optional (requirements-faiss.txt) and imported only when asked for. ``measure_search`` compares an
approximate search with the exact one (Memorization.banks.search_check gathers the sample).
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from extra.errors import VPCError
from Memorization.knn.exact import (
    bank_centre, check_search, nearest_distances, pair_squared_distances, prepared_for,
)
from Memorization.options import SEARCHES

IVF_NPROBE = 16


CHECK_ROWS = 2000            # test patches of the error measurement per bank: an exact search of them is cheap


CHECK_SEED = 0


# A row found counts as the nearest when its distance is the exact one to this relative tolerance:
# the two float64 computations round differently, and an equally near row is as good.
RECALL_TOLERANCE = 1e-9


def faiss_module():
    """faiss, or a one-line error saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise VPCError("the faiss searches need faiss: pip install -r requirements-faiss.txt "
                       "(make install-faiss)") from None
    return faiss


def ivf_lists(bank_rows):
    """IVF lists of a bank: about sqrt(M), and at least 39 rows per list to train k-means on."""
    return max(1, min(round(math.sqrt(bank_rows)), bank_rows // 39))


def describe(search, bank_rows):
    """The search's name, with the IVF's lists and probes."""
    if search == "faiss-ivf":
        return f"faiss-ivf (nlist {ivf_lists(bank_rows)}, nprobe {IVF_NPROBE})"
    return search


def build_index(bank, search, device):
    """(a faiss index of the bank centred on ``bank_centre``, on the GPU when ``device`` is CUDA and faiss
    is a GPU build; that centre; the GPU resources the index needs alive, or None)."""
    faiss = faiss_module()
    centre = bank_centre(bank, "cpu")
    rows = np.ascontiguousarray((bank.detach().cpu().float() - centre).numpy())
    dim = rows.shape[1]
    if search == "faiss-flat":
        index = faiss.IndexFlatL2(dim)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, ivf_lists(len(rows)))
        index.train(rows)            # k-means with faiss's fixed seed: the same lists every run
        index.nprobe = IVF_NPROBE
    index.add(rows)
    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(resources, device.index or 0, index), centre, resources
    return index, centre, None


def faiss_nearest(patches, bank, search):
    """Float64 distance from each patch to the bank row a faiss index finds for it, and that row's index,
    both (P,) on the patches' device."""
    # Built once per bank tensor (banks are never changed in place), with its centre.
    index, centre, _ = prepared_for(bank, search, patches.device, lambda: build_index(bank, search, patches.device))
    centre = centre.double()
    queries = patches.detach().cpu().double() - centre
    # Every probed list holds rows (faiss's k-means splits empty clusters), so a row is always found.
    found = torch.from_numpy(index.search(np.ascontiguousarray(queries.float().numpy()), 1)[1][:, 0])
    pairs = torch.stack([torch.arange(len(found)), found], dim=1)
    distances = pair_squared_distances(queries, bank, centre, pairs).sqrt()
    return distances.to(patches.device), found.to(patches.device)


def search_nearest(patches, bank, search, chunk_size=None, return_index=False):
    """Distance from each row of ``patches`` to the nearest row of ``bank`` that ``search`` finds,
    (P,) in the patches' dtype and on their device; with ``return_index``, also that row's index
    ((P,) long: the exact search's lowest of equally near rows, or the row faiss found)."""
    if search == "exact":
        return nearest_distances(patches, bank, chunk_size, return_index=return_index)
    if search not in SEARCHES:
        raise VPCError(f"unknown search {search!r}; choose one of: {', '.join(SEARCHES)}")
    check_search(patches, bank)
    distances, index = faiss_nearest(patches, bank, search)
    return (distances.to(patches.dtype), index) if return_index else distances.to(patches.dtype)


@dataclass(frozen=True)
class SearchError:
    """An approximate search against the exact one on some objects' patches."""

    search: str                  # with its settings (``describe``)
    rows: int
    objects: int
    recall: float                # share of patches whose row found is a nearest one
    score_change: float          # largest |approximate - exact| / exact of an object's score

    def line(self, bank):
        return (f"{bank} bank, {self.search} search: recall@1 {self.recall:.4f}, max relative change of an "
                f"object's score {self.score_change:.3g} (against the exact search, {self.rows} test patches "
                f"of {self.objects} objects, seed {CHECK_SEED})")

    def record(self):
        return {"search": self.search, "recall_at_1": self.recall, "max_relative_score_change": self.score_change,
                "patches": self.rows, "objects": self.objects, "seed": CHECK_SEED}


def recall_at_1(approximate, exact):
    """Share of the patches whose approximate distance is the exact nearest one (ties count as found)."""
    return float((approximate <= exact * (1 + RECALL_TOLERANCE)).double().mean())


def score_change(approximate, exact, n_objects, power):
    """Largest relative change of an object's score (max over its rows of the distance, ** power)."""
    approximate = approximate.view(n_objects, -1).amax(dim=1) ** power
    exact = exact.view(n_objects, -1).amax(dim=1) ** power
    change = torch.where(approximate == exact, 0.0, (approximate - exact).abs() / exact)
    return float(change.max())


def measure_search(patches, n_objects, bank, search, power, chunk_size=None):
    """``SearchError`` of ``search`` on ``patches`` (object-major, the same rows per object)."""
    exact = nearest_distances(patches, bank, chunk_size).double()
    approximate = search_nearest(patches, bank, search, chunk_size).double()
    return SearchError(describe(search, len(bank)), len(patches), n_objects, recall_at_1(approximate, exact),
                       score_change(approximate, exact, n_objects, power))
