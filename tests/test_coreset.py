"""Greedy coreset and memory banks (SPEC 5) on point sets whose greedy order is known."""
import pytest
import torch
from sklearn.random_projection import SparseRandomProjection

import Memorization.banks.coreset
from extra.errors import VPCError
from Memorization.banks.coreset import Coreset, build_memory_bank, coreset_size, greedy_coreset_indices, subsample

LINE_X = [0.0, 10.0, 4.0, 7.0, 1.0, 2.0]


def on_line(xs):
    """Points (x, 0) of the plane."""
    return torch.tensor([[x, 0.0] for x in xs])


def test_greedy_order_on_a_line():
    # from x=0: farthest 10 (idx 1); then min dists 0 0 4 3 1 2 -> 4 (idx 2);
    # then 0 0 0 3 1 2 -> 7 (idx 3); then 0 0 0 0 1 2 -> 2 (idx 5); then 1 (idx 4)
    points = on_line(LINE_X)
    assert greedy_coreset_indices(points, 6).tolist() == [0, 1, 2, 3, 5, 4]
    assert greedy_coreset_indices(points, 3).tolist() == [0, 1, 2]
    assert greedy_coreset_indices(points, 2).dtype == torch.long


def test_greedy_in_two_dimensions():
    # from (0,0): (0,3) at 3, (3,4) at 5, (4,0) at 4 -> (3,4);
    # nearest chosen: (0,3) min(3, sqrt 10) = 3, (4,0) min(4, sqrt 17) = 4 -> (4,0); then (0,3)
    points = torch.tensor([[0.0, 0.0], [0.0, 3.0], [3.0, 4.0], [4.0, 0.0]])
    assert greedy_coreset_indices(points, 4).tolist() == [0, 2, 3, 1]


def test_greedy_zero_or_one_item_and_ties():
    points = on_line(LINE_X)
    assert greedy_coreset_indices(points, 0).tolist() == [0]
    assert greedy_coreset_indices(points, 1).tolist() == [0]
    # 5 and -5 are equally far from 0: the lower index wins
    assert greedy_coreset_indices(on_line([0.0, 5.0, -5.0]), 3).tolist() == [0, 1, 2]


def published_greedy(points, n_select):
    """The published loop: sums of squared differences to each new centre, a running minimum, argmax."""
    chosen = [0]
    nearest = ((points - points[0]) ** 2).sum(dim=1)
    for _ in range(n_select - 1):
        chosen.append(int(torch.argmax(nearest)))
        nearest = torch.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(dim=1))
    return chosen


def point_sets():
    generator = torch.Generator().manual_seed(7)
    yield "gaussian", torch.randn(3000, 16, generator=generator)
    yield "positive, far from the origin", torch.relu(torch.randn(3000, 64, generator=generator)) + 50
    # Small integers: many exactly equal distances, so the order rests on the lowest-index rule.
    yield "integer lattice", torch.randint(0, 3, (800, 8), generator=generator).float()
    yield "float64", torch.randn(2000, 8, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name, points", list(point_sets()), ids=lambda v: v if isinstance(v, str) else "")
def test_product_form_gives_the_published_order(name, points, monkeypatch):
    recomputed = []
    original = Memorization.banks.coreset.squared_distances
    monkeypatch.setattr(Memorization.banks.coreset, "squared_distances",
                        lambda *a: recomputed.append(1) or original(*a))
    monkeypatch.setattr(Memorization.banks.coreset, "RECHECK_ELEMENTS", 1000)      # the recheck in pieces
    assert greedy_coreset_indices(points, 400).tolist() == published_greedy(points, 400)
    if name == "integer lattice":
        assert recomputed          # ties were decided by the published values, not the product form


def test_greedy_errors():
    with pytest.raises(VPCError):
        greedy_coreset_indices(on_line(LINE_X), 7)
    with pytest.raises(VPCError):
        greedy_coreset_indices(torch.zeros(0, 2), 1)
    with pytest.raises(VPCError):
        greedy_coreset_indices(torch.zeros(5), 1)


def test_coreset_size():
    assert coreset_size(0.01, 250) == 2
    assert coreset_size(0.25, 10) == 2
    assert coreset_size(0.1, 5) == 0          # greedy still keeps one item
    assert coreset_size(1, 7) == 7
    assert coreset_size(2.5, 7) == 7
    with pytest.raises(VPCError):
        coreset_size(0, 7)


def test_random_projection_path():
    torch.manual_seed(0)
    features = torch.randn(40, 300)
    chosen = greedy_coreset_indices(features, 10, random_projection=True, eps=0.9, seed=3)
    assert chosen[0] == 0 and len(set(chosen.tolist())) == 10
    assert all(0 <= i < 40 for i in chosen.tolist())
    assert torch.equal(chosen, greedy_coreset_indices(features, 10, random_projection=True, eps=0.9, seed=3))
    # distances are measured on scikit-learn's projection with that seed
    projected = SparseRandomProjection(eps=0.9, random_state=3).fit_transform(features.numpy())
    assert projected.shape[1] < 300
    assert torch.equal(chosen, greedy_coreset_indices(torch.tensor(projected, dtype=torch.float32), 10))


def test_subsample_keeps_everything_at_ratio_one():
    points = on_line(LINE_X)
    assert torch.equal(subsample(points, 1.0, device="cpu"), points)
    assert torch.equal(subsample(points, 3, device="cpu"), points)
    assert subsample(points, 0.5, device="cpu")[:, 0].tolist() == [0.0, 10.0, 4.0]


VIDEO_B = [3.0, -1.0, 8.0, 100.0]


def test_bank_subsample_then_concat():
    # video A, l = 3: x = 0 10 4; video B, l = 2: start 3, farthest 100
    videos = [on_line(LINE_X), torch.zeros(0, 2), on_line(VIDEO_B)]
    bank = build_memory_bank(videos, Coreset(0.5), device="cpu", progress=False)
    assert bank[:, 0].tolist() == [0.0, 10.0, 4.0, 3.0, 100.0]
    everything = build_memory_bank(videos, Coreset(1.0), device="cpu", progress=False)
    assert everything[:, 0].tolist() == LINE_X + VIDEO_B


def test_bank_concat_then_subsample():
    # 10 points, l = 5: 0, then 100, then 10, then 4, then 7 (min dists A 0 0 0 3 1 2, B 1 1 2 0)
    videos = [on_line(LINE_X), on_line(VIDEO_B)]
    bank = build_memory_bank(videos, Coreset(0.5, "concat_then_subsample"), device="cpu", progress=False)
    assert bank[:, 0].tolist() == [0.0, 100.0, 10.0, 4.0, 7.0]


def test_bank_errors():
    with pytest.raises(VPCError):
        build_memory_bank([torch.zeros(0, 2)], Coreset(0.5), device="cpu", progress=False)
    with pytest.raises(VPCError):
        build_memory_bank([on_line(LINE_X)], Coreset(0.5, "shuffle"), device="cpu", progress=False)
