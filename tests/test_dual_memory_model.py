"""The dual-memory autoencoder (DualMemory/SPEC.md, sections 3 to 7): the memory read and the loss terms
against arithmetic done by hand, the network's official names and shapes, the memory routing of a
training step, and the PSNR of a test clip."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from DualMemory import memory
from DualMemory.model import (
    ANOMALY, NORMAL, DualMemoryAE, Output, clip_psnr, official_optimizer, train_step, training_loss,
)
from extra.errors import VPCError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def shrunk(a, threshold, eps=1e-12):
    """The hard shrinkage of one weight, in Python floats."""
    return max(a - threshold, 0.0) * a / (abs(a - threshold) + eps)


def tiny_model(seed=0, mem_dim=8, num_in_ch=1):
    torch.manual_seed(seed)
    return DualMemoryAE(num_in_ch=num_in_ch, features_root=4, mem_dim=mem_dim)


def batch_of(size, seed=1, channels=1):
    return torch.randn(size, channels, 16, 16, 16, generator=torch.Generator().manual_seed(seed))


def official_names():
    """The official ML_MemAE_SC's state dict keys, written from its layer lists (basic_modules.py, memAE.py)."""
    def conv(prefix):
        return [f"{prefix}.weight", f"{prefix}.bias"]

    def bn(prefix):
        return [f"{prefix}.{x}" for x in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    def double(prefix):
        return conv(f"{prefix}.conv1.0") + bn(f"{prefix}.conv1.1") + conv(f"{prefix}.conv1.3") + bn(f"{prefix}.conv1.4")

    names = double("in_conv.conv")
    for k in (1, 2, 3):
        names += conv(f"down_{k}.mpconv.0") + double(f"down_{k}.mpconv.1")
    names += ["mem3.memMatrix", "mem3_ano.memMatrix"]
    for k in (3, 2, 1):
        names += conv(f"up_{k}.up") + double(f"up_{k}.conv")
    return names + conv("out_conv.conv")


# --- memory ------------------------------------------------------------------------------------------

def test_hard_shrink_zeroes_weights_at_or_below_the_threshold():
    weights = [0.0, 0.0004, 0.0005, 0.0006, 0.5]
    out = memory.hard_shrink(t(weights), 0.0005)
    assert out[:3].tolist() == [0.0, 0.0, 0.0]                      # below and at the threshold
    # above it: (a - l) a / (a - l + 1e-12), a to within 1e-8 relative at 0.0006
    assert out[3].item() == pytest.approx(0.0006 * 1e-4 / (1e-4 + 1e-12), rel=1e-12)
    assert out[3].item() != 0.0006 and out[3].item() == pytest.approx(0.0006, rel=1e-7)
    assert out.tolist() == pytest.approx([shrunk(a, 0.0005) for a in weights], rel=1e-12)


def test_read_by_hand_softmax_shrink_renormalise_read():
    matrix = t([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])      # M = 3 slots, F = 2
    queries = t([[2.0, 0.0], [0.0, 0.0]])
    # q1: logits (2, 0, -2); q2: (0, 0, 0), a uniform 1/3
    z = math.exp(2) + 1 + math.exp(-2)
    soft = [[math.exp(2) / z, 1 / z, math.exp(-2) / z], [1 / 3] * 3]
    assert soft[0][2] < 0.05 < soft[0][1]                  # the third slot of q1 falls below the threshold
    kept = [[shrunk(a, 0.05) for a in row] for row in soft]
    attention = [[a / sum(row) for a in row] for row in kept]
    assert attention[0][2] == 0 and attention[1] == pytest.approx([1 / 3] * 3)
    read = [[row[0] - row[2], row[1]] for row in attention]      # a . slots
    output, got = memory.read(queries, matrix, 0.05)
    assert got.tolist()[0] == pytest.approx(attention[0], rel=1e-12) and got[1].tolist() == pytest.approx(attention[1])
    assert output.tolist()[0] == pytest.approx(read[0], rel=1e-12) and output[1].tolist() == pytest.approx([0, 1 / 3])
    # a threshold at or above a uniform row's 1/3 leaves that row all 0, and it reads 0
    output, got = memory.read(queries, matrix, 0.5)
    assert got[1].tolist() == [0.0, 0.0, 0.0] and output[1].tolist() == [0.0, 0.0]
    assert got[0].tolist() == [1.0, 0.0, 0.0]              # q1's first weight 0.87 alone survives 0.5
    # no shrinkage at threshold 0: the plain softmax
    assert memory.read(queries, matrix, 0.0)[1].tolist()[0] == pytest.approx(soft[0], rel=1e-12)


def test_entropy_by_hand():
    attention = t([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    # row 1: 2 x -0.5 log(0.5 + 1e-12) = log 2; row 2: -log(1 + 1e-12) = -1e-12; weights of 0 add 0
    expected = (-math.log(0.5 + 1e-12) - math.log(1 + 1e-12)) / 2
    assert memory.attention_entropy(attention).item() == pytest.approx(expected, rel=1e-12)
    assert memory.attention_entropy(torch.zeros(1, 1)).item() == 0.0        # the official placeholder


def test_memory_module_reads_queries_in_batch_time_row_column_order():
    torch.manual_seed(3)
    module = memory.Memory(mem_dim=5, fea_dim=4, shrink_thres=0.01)
    assert [name for name, _ in module.named_parameters()] == ["memMatrix"] and module.memMatrix.shape == (5, 4)
    assert module.memMatrix.abs().max() <= 0.5                     # uniform in +-1/sqrt(4)
    torch.manual_seed(3)
    assert torch.equal(module.memMatrix, torch.empty(5, 4).uniform_(-0.5, 0.5))    # one draw from the global generator
    features = torch.randn(2, 4, 3, 2, 5)      # (B, F, T, H, W), T, H and W all different
    output, attention = module(features)
    assert output.shape == features.shape and attention.shape == (2 * 3 * 2 * 5, 5)
    row = 0
    for b in range(2):                          # query rows in batch, time, row, column order
        for time in range(3):
            for y in range(2):
                for x in range(5):
                    alone, weights = memory.read(features[b, :, time, y, x][None], module.memMatrix, 0.01)
                    assert torch.allclose(attention[row], weights[0]), (b, time, y, x)
                    assert torch.allclose(output[b, :, time, y, x], alone[0]), (b, time, y, x)
                    row += 1


# --- losses ------------------------------------------------------------------------------------------

RECON, TARGET = t([1.0, 2.0, 3.0]), t([0.0, 0.0, 1.0])       # squared errors 1, 4, 4: sum 9, K = 3 elements
ATTENTION = t([[0.5, 0.5]])                                    # entropy log 2 (to 1e-12)
M_USED, M_OTHER = t([[1.0, -2.0], [0.5, 0.0]]), t([[0.0, 1.0], [0.5, 3.0]])    # sum |M| 3.5; sum |M - O| 7
LOG2 = -math.log(0.5 + 1e-12)


def test_summed_loss_scales_the_entropy_by_the_element_count_and_signs_it_per_path():
    for path, sign in ((NORMAL, 1), (ANOMALY, -1)):
        total, parts = training_loss(RECON, TARGET, ATTENTION, path, M_USED, loss_m_weight=0.1, mem_weight=0.01)
        assert total.item() == pytest.approx(9 + 3 * 0.1 * sign * LOG2 - 0.01 * 3.5, rel=1e-12)
        assert parts == pytest.approx((9.0, LOG2, -0.035), rel=1e-12)
    # the official weights on a (1, 1, 2, 2, 2) clip: K w = 8 x 0.0002
    recon, target = torch.ones(1, 1, 2, 2, 2, dtype=torch.float64), torch.zeros(1, 1, 2, 2, 2, dtype=torch.float64)
    total, _ = training_loss(recon, target, ATTENTION, NORMAL, M_USED)
    assert total.item() == pytest.approx(8 + 8 * 0.0002 * LOG2 - 2e-5 * 3.5, rel=1e-12)


def test_mean_loss_averages_each_term_over_its_own_elements():
    for path, sign in ((NORMAL, 1), (ANOMALY, -1)):
        total, parts = training_loss(RECON, TARGET, ATTENTION, path, M_USED, loss_m_weight=0.1, mem_weight=0.01,
                                     reduction="mean")
        assert total.item() == pytest.approx(3 + 0.1 * sign * LOG2 - 0.01 * 3.5 / 4, rel=1e-12)
        assert parts == pytest.approx((3.0, LOG2, -0.01 * 3.5 / 4), rel=1e-12)


def test_memory_term_official_uses_one_matrix_between_uses_both():
    official, parts = training_loss(RECON, TARGET, ATTENTION, NORMAL, M_USED, M_OTHER, 0.1, 0.01)
    assert parts.memory == pytest.approx(-0.035, rel=1e-12)       # the other matrix is ignored
    between, parts = training_loss(RECON, TARGET, ATTENTION, NORMAL, M_USED, M_OTHER, 0.1, 0.01, mem_loss="between")
    assert parts.memory == pytest.approx(-0.07, rel=1e-12)        # |1 - 0| + |-2 - 1| + |0.5 - 0.5| + |0 - 3|
    assert between.item() - official.item() == pytest.approx(-0.035, rel=1e-9)
    with pytest.raises(ValueError):
        training_loss(RECON, TARGET, ATTENTION, NORMAL, M_USED, mem_loss="between")
    with pytest.raises(ValueError):
        training_loss(RECON, TARGET, ATTENTION, "both", M_USED)


def test_memory_term_pushes_the_used_matrix_outward():
    used = M_USED.clone().requires_grad_()
    total, _ = training_loss(RECON, TARGET, ATTENTION, NORMAL, used, loss_m_weight=0.1, mem_weight=0.01)
    total.backward()
    assert used.grad.tolist() == [[-0.01, 0.01], [-0.01, 0.0]]     # -0.01 sign(M): descent grows |M|


# --- network -----------------------------------------------------------------------------------------

def test_network_names_shapes_and_paths():
    torch.manual_seed(0)
    model = DualMemoryAE(num_in_ch=3, features_root=32, mem_dim=8)
    state = model.state_dict()
    assert list(state) == official_names()
    shapes = {"in_conv.conv.conv1.0.weight": (32, 3, 3, 3, 3), "down_3.mpconv.0.weight": (256, 128, 3, 3, 3),
              "mem3.memMatrix": (8, 256), "mem3_ano.memMatrix": (8, 256), "up_3.up.weight": (256, 128, 3, 3, 3),
              "up_3.conv.conv1.0.weight": (128, 128, 3, 3, 3), "up_2.conv.conv1.0.weight": (64, 128, 3, 3, 3),
              "up_1.conv.conv1.0.weight": (32, 32, 3, 3, 3), "out_conv.conv.weight": (3, 32, 1, 1, 1)}
    assert {name: tuple(state[name].shape) for name in shapes} == shapes
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert isinstance(out, Output) and out.recon.shape == x.shape and out.path == NORMAL
        assert out.attention.shape == (1 * 2 * 4 * 4, 8)
        assert torch.allclose(out.attention.sum(dim=1), torch.ones(32))
        ano = model(x, mem=False, mem_ano=True)
        assert ano.path == ANOMALY and not torch.equal(ano.recon, out.recon)
        assert model(x, mem=False).attention is None
    with pytest.raises(ValueError):
        model(x, mem=True, mem_ano=True)


def test_the_skip_is_concatenated_in_front_of_the_upsampled_tensor():
    # up_2 reads cat(x1, upsampled): with its first conv blind to the last 8 channels (the upsampled
    # memory read), the reconstruction no longer depends on which memory was read
    model = tiny_model()
    with torch.no_grad():
        model.up_2.conv.conv1[0].weight[:, 8:] = 0
        x = batch_of(2)
        assert torch.equal(model(x).recon, model(x, mem=False, mem_ano=True).recon)
        model.up_2.conv.conv1[0].weight[:, 8:] = 1e-2
        assert not torch.equal(model(x).recon, model(x, mem=False, mem_ano=True).recon)


def test_config_rebuilds_the_model_and_evaluate_skips_change_up_3():
    model = tiny_model()
    assert model.config() == {"num_in_ch": 1, "features_root": 4, "mem_dim": 8, "shrink_thres": 0.0005,
                              "skip_ops": ["none", "concat", "none"]}
    torch.manual_seed(0)
    rebuilt = DualMemoryAE(**model.config())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))
    assert DualMemoryAE(features_root=4, mem_dim=8).config()["num_in_ch"] == 3
    evaluate = DualMemoryAE(1, 4, 8, skip_ops=["none", "concat", "concat"])      # evaluate.py's default skips
    assert evaluate.up_3.conv.conv1[0].weight.shape == (16, 32, 3, 3, 3)
    with pytest.raises(VPCError):
        DualMemoryAE(1, 4, 8, skip_ops=["none", "add", "none"])


def official_draws(channels, root, mem_dim):
    """The initial parameters of the official ML_MemAE_SC in its __init__'s order (memAE.py), built from
    plain torch layers after the caller's seed: every conv draws its weight then its bias, a memory one
    uniform (M, F) matrix, batch norm nothing."""
    def conv(cin, cout, **kwargs):
        return list(torch.nn.Conv3d(cin, cout, **kwargs).parameters())

    def double(cin, cout):
        return (conv(cin, cout, kernel_size=3, padding=1) + list(torch.nn.BatchNorm3d(cout).parameters())
                + conv(cout, cout, kernel_size=3, padding=1) + list(torch.nn.BatchNorm3d(cout).parameters()))

    def up(cin, cout, concat):
        upsample = list(torch.nn.ConvTranspose3d(cin, cin // 2, 3, stride=2, padding=1, output_padding=1).parameters())
        return upsample + double(cin if concat else cout, cout)

    params = double(channels, root)
    for k in (1, 2, 3):
        cin, cout = root * 2 ** (k - 1), root * 2 ** k
        params += conv(cin, cout, kernel_size=3, stride=2, padding=1) + double(cout, cout)
    bound = 1 / math.sqrt(root * 8)
    params += [torch.empty(mem_dim, root * 8).uniform_(-bound, bound) for _ in range(2)]
    params += up(root * 8, root * 4, False) + up(root * 4, root * 2, True) + up(root * 2, root, False)
    return params + conv(root, channels, kernel_size=1)


def test_seeded_build_draws_in_the_official_order():
    model = tiny_model(seed=11, num_in_ch=3)
    torch.manual_seed(11)
    expected = official_draws(3, 4, 8)
    got = list(model.parameters())
    assert [tuple(p.shape) for p in got] == [tuple(p.shape) for p in expected]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert not torch.equal(model.mem3.memMatrix, model.mem3_ano.memMatrix)


# --- training step -----------------------------------------------------------------------------------

def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]


def reference_loss(model, x, path, **kwargs):
    """The loss of one training-mode forward of ``x`` through ``path``'s memory, on a copy of the model."""
    out = copy.deepcopy(model)(x, mem=path == NORMAL, mem_ano=path == ANOMALY)
    other = model.memory(ANOMALY if path == NORMAL else NORMAL).memMatrix
    return training_loss(out.recon, x, out.attention, path, model.memory(path).memMatrix, other, **kwargs)[0].item()


@pytest.mark.parametrize("pseudo, used", [([True, False, False], NORMAL), ([False, False, True], ANOMALY)])
def test_last_sample_routes_the_whole_batch_through_the_last_samples_memory(pseudo, used):
    model = tiny_model()
    batch = batch_of(3)
    other = ANOMALY if used == NORMAL else NORMAL
    expected, wrong = reference_loss(model, batch, used), reference_loss(model, batch, other)
    first_mean = model.in_conv.conv.conv1[0](batch).mean(dim=(0, 2, 3, 4)).detach()
    before = {path: model.memory(path).memMatrix.detach().clone() for path in (NORMAL, ANOMALY)}
    losses = train_step(model, official_optimizer(model, 1e-3), batch, pseudo)
    assert losses.total == pytest.approx(expected, rel=1e-6) and losses.total != pytest.approx(wrong, rel=1e-6)
    assert (losses.entropy > 0) == (used == NORMAL) and (losses.entropy_ano > 0) == (used == ANOMALY)
    assert min(losses.entropy, losses.entropy_ano) == 0.0
    # the batch norm statistics move once per sample: B = 3 updates with momentum 0.1 from 0
    assert all(bn.num_batches_tracked.item() == 3 for bn in batch_norms(model))
    assert torch.allclose(model.in_conv.conv.conv1[1].running_mean, (1 - 0.9 ** 3) * first_mean, atol=1e-6)
    # only the used memory is trained: the other has no gradient and Adam skips it
    assert not torch.equal(model.memory(used).memMatrix, before[used])
    assert torch.equal(model.memory(other).memMatrix, before[other])


def test_per_sample_sends_each_sample_through_its_own_memory():
    model = tiny_model()
    batch = batch_of(3)
    expected = reference_loss(model, batch[[0, 2]], NORMAL) + reference_loss(model, batch[[1]], ANOMALY)
    before = {path: model.memory(path).memMatrix.detach().clone() for path in (NORMAL, ANOMALY)}
    losses = train_step(model, official_optimizer(model, 1e-3), batch, [False, True, False],
                        memory_routing="per_sample")
    assert losses.total == pytest.approx(expected, rel=1e-6)
    assert losses.entropy > 0 and losses.entropy_ano > 0
    assert all(bn.num_batches_tracked.item() == 2 for bn in batch_norms(model))       # one forward per group
    assert all(not torch.equal(model.memory(path).memMatrix, before[path]) for path in (NORMAL, ANOMALY))
    # an all-normal batch makes one forward through the normal memory only
    model = tiny_model()
    before = model.mem3_ano.memMatrix.detach().clone()
    losses = train_step(model, official_optimizer(model, 1e-3), batch, [False] * 3, memory_routing="per_sample")
    assert losses.entropy_ano == 0.0 and torch.equal(model.mem3_ano.memMatrix, before)
    assert all(bn.num_batches_tracked.item() == 1 for bn in batch_norms(model))


def test_per_sample_counts_the_between_term_once():
    model = tiny_model()
    distance = (model.mem3.memMatrix - model.mem3_ano.memMatrix).abs().sum().item()
    losses = train_step(model, official_optimizer(model, 1e-3), batch_of(2), [True, False],
                        memory_routing="per_sample", mem_loss="between")
    assert losses.memory == pytest.approx(-2e-5 * distance, rel=1e-5)
    model = tiny_model()
    official = train_step(model, official_optimizer(model, 1e-3), batch_of(2), [True, False],
                          memory_routing="per_sample")
    own = sum(m.abs().sum().item() for m in (tiny_model().mem3.memMatrix, tiny_model().mem3_ano.memMatrix))
    assert official.memory == pytest.approx(-2e-5 * own, rel=1e-5)      # each used memory's own term


def test_one_forward_with_compounded_momentum_matches_repeated_forwards():
    repeated, once = tiny_model(), tiny_model()
    batch = batch_of(2)
    a = train_step(repeated, official_optimizer(repeated, 1e-3), batch, [False, False])
    b = train_step(once, official_optimizer(once, 1e-3), batch, [False, False], repeat_forward=False)
    assert a == pytest.approx(b, rel=1e-6)
    for x, y in zip(batch_norms(repeated), batch_norms(once)):
        assert torch.allclose(x.running_mean, y.running_mean, atol=1e-6)
        assert torch.allclose(x.running_var, y.running_var, atol=1e-6)
        assert (x.num_batches_tracked.item(), y.num_batches_tracked.item(), y.momentum) == (2, 1, 0.1)
    with pytest.raises(ValueError):
        train_step(once, official_optimizer(once, 1e-3), batch, [False])


# --- testing -----------------------------------------------------------------------------------------

def test_clip_psnr_scores_the_ninth_frame_with_the_normal_memory():
    model = tiny_model(num_in_ch=3).eval()
    clip = torch.zeros(1, 3, 16, 2, 2)
    recon = clip.clone()
    recon[0, 0, 8] += 0.1           # frame 8: 4 of its 12 elements off by 0.1, mse 0.04 / 12
    recon[0, :, 3] += 5.0           # another frame, not scored
    calls = []

    def fake(x, mem=True, mem_ano=False):
        calls.append((mem, mem_ano))
        return Output(recon, None, NORMAL)

    model.forward = fake
    assert clip_psnr(model, clip) == pytest.approx(10 * math.log10(300), rel=1e-6)
    assert calls == [(True, False)]
    assert clip_psnr(model, clip, score_frame=3) == pytest.approx(10 * math.log10(1 / 25), rel=1e-6)
    assert clip_psnr(model, clip, score_frame=0) == math.inf
    with pytest.raises(RuntimeError):
        clip_psnr(model.train(), clip)


def test_clip_psnr_of_the_real_network():
    model = tiny_model().eval()
    clip = batch_of(1)
    with torch.no_grad():
        recon = model(clip).recon
    mse = F.mse_loss(recon[0, :, 8], clip[0, :, 8]).item()
    assert clip_psnr(model, clip) == 10 * math.log10(1 / mse)
