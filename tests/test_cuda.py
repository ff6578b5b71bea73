"""What only a GPU can show: the fp16 encoder, the fast precisions (--precision fp16 / bf16), the coreset
and the nearest-neighbour search on CUDA against the CPU. Skipped without CUDA; ``benchmarks/gpu_check.sh``
runs them on a GPU machine.

Tolerances: the fp16 encoder's taps within 1e-2 relative (root mean square of the difference over
that of the taps) of the float32 CPU taps, folded or not, and at --precision fp16; the bfloat16 ones
(--precision bf16) within 2e-2; coreset indices identical; nearest distances within 1e-6 relative of
the CPU's.
"""
import pytest
import torch

from Memorization.banks.coreset import greedy_coreset_indices
from Memorization.encoders.registry import load_backbone
from Memorization.knn.exact import nearest_distances

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def relative_rms(a, b):
    return (torch.linalg.vector_norm(a.float().cpu() - b) / torch.linalg.vector_norm(b)).item()


@pytest.fixture(scope="module")
def images():
    return torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("form", ["published", "folded"])
def test_fp16_encoder_on_cuda_matches_the_cpu(images, form):
    cpu = load_backbone("RN101", device="cpu", random_weights=True, form="published")
    cuda = load_backbone("RN101", device="cuda", random_weights=True, form=form)
    assert cuda.conv1.weight.dtype == torch.float16           # fp16 compute, as the published code on a GPU
    with torch.no_grad():
        expected = cpu(images)
        taps = cuda(images.cuda())
    for tap, reference in zip(taps, expected):
        assert tap.dtype == torch.float32 and tap.is_cuda
        assert relative_rms(tap, reference) < 1e-2


@pytest.mark.parametrize("precision, dtype, tolerance",
                         [("fp16", torch.float16, 1e-2), ("bf16", torch.bfloat16, 2e-2)])
def test_fast_precisions_on_cuda_match_the_cpu(images, precision, dtype, tolerance):
    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("no bfloat16 tensor cores on this GPU (--precision bf16 is refused here)")
    cpu = load_backbone("RN101", device="cpu", random_weights=True)
    cuda = load_backbone("RN101", device="cuda", random_weights=True, precision=precision)
    assert cuda.folded and cuda.conv1.weight.dtype == dtype and cuda.identity() == cpu.identity()
    with torch.no_grad():
        expected = cpu(images)
        taps = cuda(images.cuda())
    for tap, reference in zip(taps, expected):
        assert tap.dtype == torch.float32 and tap.is_cuda
        assert relative_rms(tap, reference) < tolerance


def test_coreset_on_cuda_chooses_the_cpu_indices():
    points = torch.randn(20_000, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(greedy_coreset_indices(points.cuda(), 500), greedy_coreset_indices(points, 500))


def test_nearest_distances_on_cuda_match_the_cpu():
    generator = torch.Generator().manual_seed(2)
    bank, patches = torch.rand(50_000, 64, generator=generator), torch.rand(3_000, 64, generator=generator)
    on_cuda = nearest_distances(patches.cuda(), bank.cuda()).cpu()
    torch.testing.assert_close(on_cuda.double(), nearest_distances(patches, bank).double(), rtol=1e-6, atol=0)
