"""Patch extraction (SPEC 4) on small tensors with values worked out by hand."""
import math

import pytest
import torch

from extra.errors import VPCError
from Memorization.banks.patches import (
    highlevel_patches, spatial_patches, temporal_differences, temporal_patches, temporal_pooling,
)


def block_image(value_of_cell, cell=4, grid=7):
    """28 x 28 image whose 4 x 4 block (i, j) is constant value_of_cell(i, j)."""
    values = torch.tensor([[float(value_of_cell(i, j)) for j in range(grid)] for i in range(grid)])
    return values.repeat_interleave(cell, 0).repeat_interleave(cell, 1)


def two_object_clip():
    """lf (2 objects, 2 channels, 2 frames, 28, 28) built from 4 x 4 blocks, v = 7 i + j.

    object 0: channel 0 = (v, 10) over the two frames, channel 1 = (-v, 0);
    object 1: twice object 0.
    """
    v = block_image(lambda i, j: 7 * i + j)
    obj = torch.stack([torch.stack([v, torch.full_like(v, 10.0)]), torch.stack([-v, torch.zeros_like(v)])])
    return torch.stack([obj, 2 * obj])


def test_spatial_hand_values_and_row_order():
    rows = spatial_patches(two_object_clip(), pool_for_sm=4)
    assert rows.shape == (2 * 49, 2)
    # obj 0, cell (0,0): v = 0 -> ch0 mean 5 + max 10 = 15; ch1 mean 0 + max 0 = 0
    assert rows[0].tolist() == [15.0, 0.0]
    # obj 0, cell (6,6): v = 48 -> ch0 29 + 48 = 77; ch1 mean -24 + max 0 = -24
    assert rows[48].tolist() == [77.0, -24.0]
    # obj 0, cell (0,1): v = 1 -> ch0 5.5 + 10 = 15.5; ch1 -0.5
    assert rows[1].tolist() == [15.5, -0.5]
    # obj 1, cell (1,2): v = 9, doubled -> frames 18 and 20: ch0 19 + 20 = 39; ch1 -9 + 0 = -9
    assert rows[49 + 7 + 2].tolist() == [39.0, -9.0]
    # every row against the same rule
    for obj, scale in enumerate((1, 2)):
        for i in range(7):
            for j in range(7):
                v = scale * (7 * i + j)
                expected = [(v + 10 * scale) / 2 + max(v, 10 * scale), -v / 2]
                assert rows[obj * 49 + i * 7 + j].tolist() == pytest.approx(expected)


def test_spatial_averages_inside_each_cell():
    columns = torch.arange(28.0).expand(28, 28)              # pixel value = its column
    lf = columns.reshape(1, 1, 1, 28, 28)
    rows = spatial_patches(lf, pool_for_sm=4)
    # d = 1: mean + max = 2 x; cell column j averages columns 4j .. 4j+3 -> 2 (4j + 1.5)
    assert rows[:, 0].tolist() == pytest.approx([8 * j + 3 for i in range(7) for j in range(7)])
    rows = spatial_patches(lf, pool_for_sm=14)
    assert rows[:, 0].tolist() == pytest.approx([13.0, 41.0, 13.0, 41.0])   # 2 * 6.5, 2 * 20.5


def test_spatial_grid_size_and_errors():
    lf = torch.randn(3, 5, 4, 28, 28)
    assert spatial_patches(lf, pool_for_sm=3).shape == (3 * 81, 5)
    assert spatial_patches(lf, pool_for_sm=7).shape == (3 * 16, 5)
    assert spatial_patches(torch.zeros(0, 5, 4, 28, 28)).shape == (0, 5)
    with pytest.raises(VPCError):
        spatial_patches(lf, pool_for_sm=0)
    with pytest.raises(VPCError):
        spatial_patches(lf, pool_for_sm=29)
    with pytest.raises(VPCError):
        spatial_patches(torch.zeros(1))                       # the no-object placeholder


def motion_clip():
    """lf (2 objects, 2 channels, 3 frames, 28, 28).

    object 0, channel 0: frames 0 | ones with pixel (5,5) = 10 | 0; channel 1: frame t = t.
    object 1 = -object 0.
    """
    bump = torch.ones(28, 28)
    bump[5, 5] = 10.0
    ch0 = torch.stack([torch.zeros(28, 28), bump, torch.zeros(28, 28)])
    ch1 = torch.stack([torch.full((28, 28), float(t)) for t in range(3)])
    obj = torch.stack([ch0, ch1])
    return torch.stack([obj, -obj])


MEAN_BUMP = (783 + 10) / 784


def assert_rows(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype))


def test_temporal_signed_avg_and_max():
    lf = motion_clip()
    avg = temporal_patches(lf, "avg")
    # rows: obj0 t0, obj0 t1, obj1 t0, obj1 t1
    assert_rows(avg, [[MEAN_BUMP, 1], [-MEAN_BUMP, 1], [-MEAN_BUMP, -1], [MEAN_BUMP, -1]])
    mx = temporal_patches(lf, "max")
    assert_rows(mx, [[10, 1], [-1, 1], [-1, -1], [10, -1]])


def test_temporal_absolute_option():
    lf = motion_clip()
    assert_rows(temporal_patches(lf, "avg", absolute=True), [[MEAN_BUMP, 1]] * 4)
    assert_rows(temporal_patches(lf, "max", absolute=True), [[10, 1]] * 4)
    diffs = temporal_differences(lf)
    assert diffs.shape == (2, 2, 2, 28, 28)
    assert diffs[0, 0, 1, 5, 5] == -10 and diffs[0, 0, 1, 0, 0] == -1
    assert temporal_differences(lf, absolute=True)[0, 0, 1, 5, 5] == 10


def test_temporal_errors():
    with pytest.raises(VPCError):
        temporal_patches(torch.zeros(1, 2, 1, 28, 28), "avg")     # one frame: no difference
    with pytest.raises(VPCError):
        temporal_patches(motion_clip(), "median")


def test_temporal_pooling_convention():
    assert (temporal_pooling("train"), temporal_pooling("test")) == ("avg", "max")
    assert (temporal_pooling("train", "avg"), temporal_pooling("test", "avg")) == ("avg", "avg")
    assert (temporal_pooling("train", "max"), temporal_pooling("test", "max")) == ("max", "max")
    with pytest.raises(VPCError):
        temporal_pooling("train", "sum")
    with pytest.raises(VPCError):
        temporal_pooling("val")


def test_highlevel_d4_by_hand():
    # channel 0: gf = 5 1 0 3 -> f1 = 5 1 3, f2 = 5 3; f2 to 3 bins [0] [0,1] [1] = 5 5 3;
    # u = 10 6 6; u to 4 bins [0] [0,1] [1,2] [2] = 10 10 6 6; + gf = 15 11 6 9.
    # channel 1: gf = -5 -1 0 -3 -> f1 = -1 0 0, f2 = 0 0; u = -1 0 0 -> -1 0 0 0; + gf.
    gf = torch.tensor([[[5.0, 1, 0, 3], [-5, -1, 0, -3]]])
    assert highlevel_patches(gf).tolist() == [[15, -6], [11, -1], [6, 0], [9, -3]]


def test_highlevel_d10_by_hand():
    # gf  = 3 1 4 1 5 9 2 6 5 3
    # f1  = 3 4 4 5 9 9 6 6 5          f2 = 4 4 5 9 9 9 6 6
    # f2 -> 9 (bins floor(8i/9) .. ceil(8(i+1)/9)) = 4 4 5 9 9 9 9 6 6
    # u   = 7 8 9 14 18 18 15 12 11
    # u -> 10 (bins floor(9i/10) .. ceil(9(i+1)/10)) = 7 8 9 14 18 18 18 15 12 11
    # out = 10 9 13 15 23 27 20 21 17 14
    gf = torch.tensor([[[3.0, 1, 4, 1, 5, 9, 2, 6, 5, 3]]])
    assert highlevel_patches(gf)[:, 0].tolist() == [10, 9, 13, 15, 23, 27, 20, 21, 17, 14]


def reference_pyramid(sequence):
    """The pyramid of one channel, step by step, with plain Python lists."""
    def pairwise_max(xs):
        return [max(a, b) for a, b in zip(xs, xs[1:])]

    def adaptive_max(xs, length):
        n = len(xs)
        return [max(xs[(i * n) // length: math.ceil((i + 1) * n / length)]) for i in range(length)]

    d = len(sequence)
    f1 = pairwise_max(sequence)
    f2 = pairwise_max(f1)
    upper = [a + b for a, b in zip(adaptive_max(f2, d - 1), f1)]
    return [a + b for a, b in zip(adaptive_max(upper, d), sequence)]


@pytest.mark.parametrize("d", [3, 4, 10])
def test_highlevel_matches_step_by_step_reference(d):
    gf = torch.randint(-20, 20, (1, 6, d)).double()
    out = highlevel_patches(gf)
    assert out.shape == (d, 6)
    for channel in range(6):
        assert out[:, channel].tolist() == reference_pyramid(gf[0, channel].tolist())


def test_highlevel_shape_and_errors():
    assert highlevel_patches(torch.randn(1, 1536, 4)).shape == (4, 1536)
    with pytest.raises(VPCError):
        highlevel_patches(torch.randn(1, 8, 2))        # d = 2: f2 would be empty
    with pytest.raises(VPCError):
        highlevel_patches(torch.randn(8, 4))
