"""Scores (SPEC 6): nearest distances, powers, per-object and per-clip maxima, frame vectors."""
import numpy as np
import pytest
import torch

from extra.errors import VPCError
from Memorization.scoring import clip_scores, frame_scores, nearest_distances, object_scores

BANK = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
# nearest: (0,0) itself; (3,0) 3 from (0,0) vs 4 from (3,4); (6,8) 5 from (3,4); (1.5,2) 2.5 from both
PATCHES = torch.tensor([[0.0, 0.0], [3.0, 0.0], [6.0, 8.0], [1.5, 2.0]])


def test_nearest_distances_by_hand():
    distances = nearest_distances(PATCHES, BANK)
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


def test_chunking_matches_one_block_and_brute_force():
    generator = torch.Generator().manual_seed(0)
    patches, bank = torch.randn(37, 5, generator=generator), torch.randn(53, 5, generator=generator)
    whole = nearest_distances(patches, bank, chunk_size=10_000)
    for chunk in (1, 4, 16, 53):
        torch.testing.assert_close(nearest_distances(patches, bank, chunk_size=chunk), whole, rtol=0, atol=0)
    torch.testing.assert_close(whole.double(), brute_force(patches, bank), rtol=1e-6, atol=0)


def float32_expansion(patches, bank):
    """The float32 search alone, uncentred: what the float64 recheck is there to correct."""
    squared = (patches ** 2).sum(1)[:, None] + (bank ** 2).sum(1)[None, :] - 2 * patches @ bank.T
    return squared.amin(1).clamp_min(0).sqrt()


def test_float32_search_is_rechecked_in_float64_where_float32_cannot_tell():
    # Two clusters far apart: centring on the bank's mean leaves norms of 30 for distances of
    # 0.01, where float32 cannot rank neighbours; the recheck must give the float64 answer.
    generator = torch.Generator().manual_seed(4)
    offsets = torch.tensor([30.0, -30.0]).repeat_interleave(300)[:, None]
    bank = (offsets + 0.01 * torch.randn(600, 8, generator=generator)).double()
    patches = bank[::7] + 0.003 * torch.randn(86, 8, generator=generator, dtype=torch.float64)
    expected = brute_force(patches, bank)
    torch.testing.assert_close(nearest_distances(patches, bank, chunk_size=64), expected, rtol=1e-6, atol=0)
    wrong = float32_expansion(patches.float(), bank.float()).double()
    assert ((wrong - expected).abs() / expected).max() > 1e-3


def test_float32_search_equals_a_float64_search_within_1e_6():
    generator = torch.Generator().manual_seed(5)
    bank = torch.rand(10_000, 64, generator=generator)
    patches = torch.rand(1_000, 64, generator=generator)
    expected = torch.cdist(patches.double(), bank.double(), compute_mode="donot_use_mm_for_euclid_dist").amin(1)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")     # a caller's TF32 / bfloat16 setting must not leak in
    try:
        distances = nearest_distances(patches, bank, chunk_size=512)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)
    torch.testing.assert_close(distances.double(), expected, rtol=1e-6, atol=0)


def test_small_distances_far_from_the_origin_stay_exact():
    # Vectors of norm ~ 100 * sqrt(64) that differ by ~ 1e-2: float32 ||a||^2 + ||b||^2 - 2ab
    # would lose every digit here.
    generator = torch.Generator().manual_seed(1)
    bank = 100 + torch.randn(20, 64, generator=generator)
    patches = bank[:7] + 1e-2 * torch.randn(7, 64, generator=generator)
    torch.testing.assert_close(nearest_distances(patches, bank).double(), brute_force(patches, bank),
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

    import Memorization.scoring as scoring

    prepared = []
    original = scoring.search_matrix
    monkeypatch.setattr(scoring, "search_matrix", lambda *a: prepared.append(1) or original(*a))
    bank = torch.randn(50, 4, generator=torch.Generator().manual_seed(6))
    first = nearest_distances(PATCHES.repeat(1, 2), bank)
    assert torch.equal(nearest_distances(PATCHES.repeat(1, 2), bank), first) and len(prepared) == 1
    entries = len(scoring._PREPARED)
    del bank
    gc.collect()
    assert len(scoring._PREPARED) == entries - 1
