"""Scores (SPEC 6): nearest distances, powers, per-object and per-clip maxima, frame vectors."""
import numpy as np
import pytest
import torch

import Memorization.knn.exact as scoring
from extra.errors import VPCError
from Memorization.banks.scores import clip_scores, frame_scores, object_scores
from Memorization.knn.exact import nearest_distances

# Both precisions of the search are tested on every machine: bfloat16 (the default on CPUs that
# have it in hardware) and float32 (elsewhere, and on CUDA).
SEARCH_DTYPES = pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bfloat16", "float32"])

BANK = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
# nearest: (0,0) itself; (3,0) 3 from (0,0) vs 4 from (3,4); (6,8) 5 from (3,4); (1.5,2) 2.5 from both
PATCHES = torch.tensor([[0.0, 0.0], [3.0, 0.0], [6.0, 8.0], [1.5, 2.0]])


@SEARCH_DTYPES
def test_nearest_distances_by_hand(dtype):
    distances = nearest_distances(PATCHES, BANK, dtype=dtype)
    assert distances.dtype == torch.float32
    assert distances.tolist() == [0.0, 3.0, 5.0, 2.5]


def test_one_object_score_is_its_farthest_patch_to_the_power():
    assert object_scores(PATCHES, 1, BANK, 1).tolist() == [5.0]
    assert object_scores(PATCHES, 1, BANK, 2).tolist() == [25.0]
    assert object_scores(PATCHES, 1, BANK, 4).tolist() == [625.0]


def brute_force(patches, bank):
    """min over bank of the exact L2 distance, in float64 from the stored values."""
    differences = patches.double()[:, None, :] - bank.double()[None, :, :]
    return differences.pow(2).sum(-1).sqrt().amin(1)


@SEARCH_DTYPES
def test_chunking_matches_one_block_and_brute_force(dtype):
    generator = torch.Generator().manual_seed(0)
    patches, bank = torch.randn(37, 5, generator=generator), torch.randn(53, 5, generator=generator)
    whole = nearest_distances(patches, bank, chunk_size=10_000, dtype=dtype)
    for chunk in (1, 4, 16, 53):
        torch.testing.assert_close(nearest_distances(patches, bank, chunk_size=chunk, dtype=dtype), whole,
                                   rtol=0, atol=0)
    torch.testing.assert_close(whole.double(), brute_force(patches, bank), rtol=1e-6, atol=0)


def low_precision_expansion(patches, bank, dtype):
    """The search in ``dtype`` alone, uncentred: what the float64 recheck is there to correct."""
    patches, bank = patches.to(dtype), bank.to(dtype)
    squared = ((patches.float() ** 2).sum(1)[:, None] + (bank.float() ** 2).sum(1)[None, :]
               - 2 * (patches @ bank.T).float())
    return squared.amin(1).clamp_min(0).sqrt()


def two_clusters():
    """Two clusters far apart: centring on the bank's mean leaves norms of 30 for distances of
    0.01, where neither float32 nor bfloat16 can rank neighbours. (patches, bank, float64 answer)."""
    generator = torch.Generator().manual_seed(4)
    offsets = torch.tensor([30.0, -30.0]).repeat_interleave(300)[:, None]
    bank = (offsets + 0.01 * torch.randn(600, 8, generator=generator)).double()
    patches = bank[::7] + 0.003 * torch.randn(86, 8, generator=generator, dtype=torch.float64)
    return patches, bank, brute_force(patches, bank)


@SEARCH_DTYPES
def test_low_precision_search_is_rechecked_in_float64_where_it_cannot_tell(dtype):
    patches, bank, expected = two_clusters()
    torch.testing.assert_close(nearest_distances(patches, bank, chunk_size=64, dtype=dtype), expected,
                               rtol=1e-6, atol=0)
    wrong = low_precision_expansion(patches.float(), bank.float(), dtype).double()
    assert ((wrong - expected).abs() / expected).max() > 1e-3


@SEARCH_DTYPES
def test_without_the_error_bound_the_recheck_misses_the_nearest_row(dtype, monkeypatch):
    # The bound is what makes the true nearest row a candidate: with it set to zero only the
    # rows that tie the low-precision minimum are rechecked, and the answer is wrong.
    patches, bank, expected = two_clusters()
    monkeypatch.setattr(scoring, "search_error_bound", lambda norms, *_: torch.zeros_like(norms))
    monkeypatch.setattr(scoring, "output_widening", lambda _: 0.0)
    found = nearest_distances(patches, bank, chunk_size=64, dtype=dtype).double()
    assert ((found - expected).abs() / expected).max() > 1e-3


@SEARCH_DTYPES
def test_the_error_bound_holds_for_every_value_of_the_product(dtype):
    # Far from the origin and close together (large norms, small distances), and around zero.
    generator = torch.Generator().manual_seed(7)
    for offset, spread in ((50.0, 0.05), (0.0, 1.0)):
        bank = offset + spread * torch.randn(300, 16, generator=generator)
        queries = torch.cat([bank[:20], offset + spread * torch.randn(40, 16, generator=generator)]).double()
        centre = scoring.bank_centre(bank, "cpu")
        centred = queries - centre.double()
        matrix, rows, error, widening, _ = scoring.search_in(dtype, bank, centre, centred, (centred ** 2).sum(1))
        values = (rows @ matrix.T).double()
        exact = torch.cdist(centred, bank.double() - centre.double(),
                            compute_mode="donot_use_mm_for_euclid_dist") ** 2
        bound = widening * values.abs() + error[:, None]
        assert ((values - exact).abs() <= bound).all()
        assert (values - exact).abs().max() > 0       # the products do round


@SEARCH_DTYPES
def test_patches_equal_to_bank_rows_are_at_distance_zero(dtype):
    # Squared distances near 0 come out of the product slightly negative, whose bits order
    # backwards: the minimum must still be found.
    generator = torch.Generator().manual_seed(8)
    bank = 3 + torch.randn(500, 32, generator=generator)
    patches = torch.cat([bank[::5], bank[3:4] + 1e-3])
    distances = nearest_distances(patches, bank, chunk_size=128, dtype=dtype)
    assert distances[:-1].tolist() == [0.0] * 100
    torch.testing.assert_close(distances.double(), brute_force(patches, bank), rtol=1e-6, atol=0)


def test_the_search_dtype_is_bfloat16_only_on_a_cpu_that_has_it(monkeypatch):
    monkeypatch.setattr(scoring, "native_bfloat16", lambda: True)
    assert scoring.search_dtype("cpu") == torch.bfloat16
    assert scoring.search_dtype("cuda") == torch.float32
    monkeypatch.setattr(scoring, "native_bfloat16", lambda: False)
    assert scoring.search_dtype("cpu") == torch.float32


@SEARCH_DTYPES
def test_low_precision_search_equals_a_float64_search_within_1e_6(dtype):
    generator = torch.Generator().manual_seed(5)
    bank = torch.rand(10_000, 64, generator=generator)
    patches = torch.rand(1_000, 64, generator=generator)
    expected = torch.cdist(patches.double(), bank.double(), compute_mode="donot_use_mm_for_euclid_dist").amin(1)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")     # a caller's TF32 / bfloat16 setting must not leak in
    try:
        distances = nearest_distances(patches, bank, chunk_size=512, dtype=dtype)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)
    torch.testing.assert_close(distances.double(), expected, rtol=1e-6, atol=0)


@SEARCH_DTYPES
def test_small_distances_far_from_the_origin_stay_exact(dtype):
    # Vectors of norm ~ 100 * sqrt(64) that differ by ~ 1e-2: float32 ||a||^2 + ||b||^2 - 2ab
    # would lose every digit here.
    generator = torch.Generator().manual_seed(1)
    bank = 100 + torch.randn(20, 64, generator=generator)
    patches = bank[:7] + 1e-2 * torch.randn(7, 64, generator=generator)
    torch.testing.assert_close(nearest_distances(patches, bank, dtype=dtype).double(), brute_force(patches, bank),
                               rtol=1e-5, atol=0)


def test_object_scores_take_each_objects_max():
    bank = torch.zeros(1, 2)
    # object 0: distances 1 2 3 -> 3; object 1: 0.5 4 1 -> 4
    patches = torch.tensor([[1.0, 0], [0, 2], [3, 0], [0, 0.5], [0, 4], [1, 0]])
    assert object_scores(patches, 2, bank, power=2).tolist() == [9.0, 16.0]
    assert object_scores(patches, 3, bank, power=1).tolist() == [2.0, 3.0, 4.0]
    assert object_scores(torch.zeros(0, 2), 0, bank, power=2).shape == (0,)
    with pytest.raises(VPCError):
        object_scores(patches, 4, bank, power=1)


def test_clip_scores_max_per_clip_and_zero_without_objects():
    scores = torch.tensor([9.0, 16.0, 1.0, 4.0])
    assert clip_scores(scores, [2, 0, 1, 1]).tolist() == [16.0, 0.0, 1.0, 4.0]
    assert clip_scores(torch.zeros(0), [0]).tolist() == [0.0]
    with pytest.raises(VPCError):
        clip_scores(scores, [2, 1])


def test_errors():
    with pytest.raises(VPCError):
        nearest_distances(PATCHES, torch.zeros(0, 2))
    with pytest.raises(VPCError):
        nearest_distances(PATCHES, torch.zeros(3, 5))
    with pytest.raises(VPCError):
        object_scores(torch.zeros(3, 2), 2, BANK, 1)


def test_frame_scores_repeat_each_clip():
    expected = [1.5, 1.5, 1.5, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0]
    frames = frame_scores([1.5, 0.0, 2.0], 3)
    assert isinstance(frames, np.ndarray) and frames.dtype == np.float64
    assert frames.tolist() == expected
    assert frame_scores(torch.tensor([1.5, 0.0, 2.0]), 3).tolist() == expected
    assert frame_scores([], 4).shape == (0,)


def test_a_bank_is_prepared_once_and_forgotten_with_it(monkeypatch):
    import gc

    prepared = []
    original = scoring.search_matrix
    monkeypatch.setattr(scoring, "search_matrix", lambda *a: prepared.append(1) or original(*a))
    bank = torch.randn(50, 4, generator=torch.Generator().manual_seed(6))
    first = nearest_distances(PATCHES.repeat(1, 2), bank)
    assert torch.equal(nearest_distances(PATCHES.repeat(1, 2), bank), first) and len(prepared) == 1
    bank_id = id(bank)
    assert any(key[0] == bank_id for key in scoring._PREPARED)
    del bank
    gc.collect()
    assert not any(key[0] == bank_id for key in scoring._PREPARED)


def search_dtype_of(bank):
    return scoring._PREPARED[scoring._prepared_key(bank, "search dtype", "cpu")][0]


def test_bfloat16_gives_way_to_float32_where_it_would_recheck_too_many(monkeypatch):
    # Tight clusters far from the bank's mean: bfloat16's bound is wide compared with the
    # distances, so most rows of a cluster become candidates; the search goes on in float32
    # (same answer) and drops its bfloat16 copy of the bank.
    monkeypatch.setattr(scoring, "native_bfloat16", lambda: True)
    generator = torch.Generator().manual_seed(10)
    centres = 5 * torch.randn(64, 32, generator=generator)
    members = torch.randint(0, 64, (8192,), generator=generator)
    bank = centres[members] + 0.3 * torch.randn(8192, 32, generator=generator)
    patches = bank[::16] + 0.05 * torch.randn(512, 32, generator=generator)
    torch.testing.assert_close(nearest_distances(patches, bank, chunk_size=1024).double(),
                               brute_force(patches, bank), rtol=1e-6, atol=0)
    assert search_dtype_of(bank) == torch.float32
    assert scoring._prepared_key(bank, ("search matrix", torch.bfloat16), "cpu") not in scoring._PREPARED
    assert scoring._prepared_key(bank, ("search matrix", torch.float32), "cpu") in scoring._PREPARED


def test_bfloat16_is_kept_where_its_candidates_are_few(monkeypatch):
    # Gaussian rows, whose distances are comparable to their norms: bfloat16 stays.
    monkeypatch.setattr(scoring, "native_bfloat16", lambda: True)
    generator = torch.Generator().manual_seed(11)
    bank, patches = torch.randn(200_000, 64, generator=generator), torch.randn(400, 64, generator=generator)
    torch.testing.assert_close(nearest_distances(patches, bank, chunk_size=2048).double(),
                               torch.cdist(patches.double(), bank.double()).amin(1), rtol=1e-6, atol=0)
    assert search_dtype_of(bank) == torch.bfloat16


def test_a_bank_of_one_block_is_searched_in_float32(monkeypatch):
    monkeypatch.setattr(scoring, "native_bfloat16", lambda: True)
    bank = torch.randn(100, 8, generator=torch.Generator().manual_seed(12))
    nearest_distances(bank[:5], bank, chunk_size=100)
    assert search_dtype_of(bank) == torch.float32
