"""The index of the nearest bank row (Memorization.knn, ``return_index``): the brute-force float64
argmin on small banks, in every block layout and search dtype, ties to the lowest row; and per object
the row nearest its farthest patch row (Memorization.banks.scores)."""
import pytest
import torch

from Memorization.banks.scores import object_scores
from Memorization.knn.exact import nearest_distances
from Memorization.knn.search import search_nearest


def brute_force(patches, bank):
    """Float64 nearest distance and its row (the first of equals), pair by pair."""
    distances = torch.cdist(patches.double(), bank.double(), compute_mode="donot_use_mm_for_euclid_dist")
    return distances.min(dim=1).values, distances.argmin(dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [None, 7])        # one block; blocks of 7 rows on both sides
def test_the_nearest_row_is_the_brute_force_one(dtype, chunk_size):
    generator = torch.Generator().manual_seed(1)
    bank = torch.randn(50, 6, generator=generator) + 3          # off the origin: the centring matters
    patches = torch.randn(40, 6, generator=generator) + 3
    distances, index = nearest_distances(patches, bank, chunk_size, dtype, return_index=True)
    expected, rows = brute_force(patches, bank)
    assert index.dtype == torch.long and index.shape == (40,)
    assert torch.equal(index, rows)
    torch.testing.assert_close(distances.double(), expected, rtol=1e-6, atol=0)
    # the same distances as without the index
    assert torch.equal(distances, nearest_distances(patches, bank, chunk_size, dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_equally_near_rows_give_the_lowest_index_across_blocks(dtype):
    generator = torch.Generator().manual_seed(2)
    base = torch.randn(5, 4, generator=generator)
    far = torch.randn(3, 4, generator=generator) + 100
    # rows 3..7 are base, then base again twice: with blocks of 4 every copy lies in another block
    # than the one before it, and the first copy starts inside the first block's tail
    bank = torch.cat([far, base, base, base])
    patches = torch.cat([base, base + 0.01 * torch.randn(5, 4, generator=generator)])
    distances, index = nearest_distances(patches, bank, 4, dtype, return_index=True)
    assert index.tolist() == [3, 4, 5, 6, 7] * 2
    assert distances[:5].tolist() == [0.0] * 5
    expected, rows = brute_force(patches, bank)
    assert torch.equal(index, rows)


def test_a_later_block_with_a_nearer_row_replaces_the_index():
    # the first block's best row is 1 away, the second block's 0.5 then the third block's equal one again
    bank = torch.tensor([[1.0, 0.0], [5.0, 5.0], [0.5, 0.0], [6.0, 6.0], [-0.5, 0.0], [7.0, 7.0]])
    distances, index = nearest_distances(torch.zeros(1, 2), bank, 2, torch.float32, return_index=True)
    assert index.tolist() == [2] and distances.tolist() == [0.5]


def test_search_nearest_passes_the_index_on():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    patches = torch.tensor([[0.0, 1.0], [9.0, 0.0], [3.0, 5.0]])
    distances, index = search_nearest(patches, bank, "exact", return_index=True)
    assert index.tolist() == [0, 2, 1] and distances.tolist() == [1.0, 1.0, 1.0]
    assert torch.equal(search_nearest(patches, bank, "exact"), distances)


def test_faiss_flat_gives_the_row_it_found():
    pytest.importorskip("faiss")
    generator = torch.Generator().manual_seed(3)
    bank = torch.randn(60, 8, generator=generator)
    patches = torch.randn(30, 8, generator=generator)
    distances, index = search_nearest(patches, bank, "faiss-flat", return_index=True)
    expected, rows = brute_force(patches, bank)
    assert torch.equal(index, rows)
    torch.testing.assert_close(distances.double(), expected, rtol=1e-6, atol=0)   # float32 out


def test_each_object_gets_the_row_nearest_its_farthest_patch_row():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    # object 0: (0, 1) is 1 from row 0, (9, 0) 1 from row 2: equally far, the first patch row counts;
    # object 1: (3, 5) is 1 from row 1, (3, 8) 4 from row 1: the farthest is the second
    patches = torch.tensor([[0.0, 1.0], [9.0, 0.0], [3.0, 5.0], [3.0, 8.0]])
    scores, rows = object_scores(patches, 2, bank, power=2, return_index=True)
    assert scores.tolist() == [1.0, 16.0] and rows.tolist() == [0, 1]
    assert torch.equal(object_scores(patches, 2, bank, power=2), scores)
    empty, none = object_scores(torch.zeros(0, 2), 0, bank, power=2, return_index=True)
    assert empty.shape == none.shape == (0,) and none.dtype == torch.long


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_nearest_row_on_cuda_is_the_brute_force_one():
    generator = torch.Generator().manual_seed(4)
    base = torch.randn(300, 16, generator=generator)
    bank = torch.cat([base, base])                               # every row twice: the first copy wins
    patches = torch.randn(500, 16, generator=generator)
    distances, index = nearest_distances(patches.cuda(), bank.cuda(), chunk_size=128, return_index=True)
    expected, rows = brute_force(patches, bank)
    assert index.device.type == "cuda" and torch.equal(index.cpu(), rows)
    torch.testing.assert_close(distances.cpu().double(), expected, rtol=1e-6, atol=0)
