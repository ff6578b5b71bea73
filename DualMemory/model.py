"""The dual-memory autoencoder (DualMemory/SPEC.md, sections 3 to 7): the official ``ML_MemAE_SC``
network with its normal and anomaly memories, its training loss, one training step and a test clip's
PSNR.

    model = DualMemoryAE(num_in_ch=3)                       # after torch.manual_seed(seed), as train.py
    optimizer = official_optimizer(model, lr=1e-3)
    losses = train_step(model, optimizer, batch, pseudo)    # batch (B, C, 16, H, W), pseudo [bool] * B
    model.eval(); psnr = clip_psnr(model, clip)             # clip (1, C, 16, H, W)

The modules carry the official names and Sequential indices (``in_conv.conv.conv1.0.weight``,
``mem3.memMatrix``, ``up_2.up.weight``, ...) and are built in the official order, so an official state
dict loads with strict=True and the same seed draws the same initial weights.
"""
import math
from contextlib import contextmanager
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from DualMemory.memory import Memory, attention_entropy
from DualMemory.options import MEM_LOSSES, REDUCTIONS, ROUTINGS, SCORED_FRAME
from extra.errors import VPCError

NORMAL, ANOMALY = "normal", "anomaly"
SIGNS = {NORMAL: 1.0, ANOMALY: -1.0}    # the entropy term: minimised for the normal memory, maximised for the anomaly one
SKIP_OPS = ("none", "concat", "none")   # train.py's; the first drives up_1, the last up_3 (SPEC 3, 10.13)
SKIP_CHOICES = ("none", "concat")


def _conv(cin, cout, **kwargs):
    return nn.Conv3d(cin, cout, kernel_size=3, padding=1, **kwargs)


class DoubleConv(nn.Module):
    """(3-D conv 3x3x3, BN, ReLU) twice, under the official name ``conv1`` (indices 0-5)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Sequential(_conv(cin, cout), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
                                   _conv(cout, cout), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.conv1(x)


class InConv(nn.Module):
    """The first block (official ``inconv``): a double conv at full size."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = DoubleConv(cin, cout)

    def forward(self, x):
        return self.conv(x)


class Down(nn.Module):
    """A stride-2 conv (no BN, no ReLU) halving T, H and W, then a double conv (official ``down``)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.mpconv = nn.Sequential(_conv(cin, cout, stride=2), DoubleConv(cout, cout))

    def forward(self, x):
        return self.mpconv(x)


class Up(nn.Module):
    """A transposed conv doubling T, H and W to half the channels, then a double conv (official ``up``).
    ``op`` "concat" puts the encoder's skip **in front** of the upsampled tensor (double conv from
    ``cin`` channels); "none" convolves the upsampled tensor alone (from ``cout`` = cin / 2)."""

    def __init__(self, cin, cout, op):
        super().__init__()
        self.op = op
        self.up = nn.ConvTranspose3d(cin, cin // 2, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.conv = DoubleConv(cin, cout) if op == "concat" else DoubleConv(cout, cout)

    def forward(self, x, skip=None):
        x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1) if self.op == "concat" else x)


class OutConv(nn.Module):
    """A 1x1x1 conv to the input's channels, linear (official ``outconv``): the frames are standardised,
    not in a bounded range."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


class Output(NamedTuple):
    """A forward pass: the reconstruction (B, C, T, H, W), the attention of the memory read (N, M; None
    without a memory) and which memory that was ("normal", "anomaly" or None)."""

    recon: torch.Tensor
    attention: Optional[torch.Tensor]
    path: Optional[str]


class DualMemoryAE(nn.Module):
    """The official ``ML_MemAE_SC`` as train.py builds it (``mem_usage`` [False, False, False, True],
    ``hard_shrink_opt`` True): a 3-D conv encoder to (B, 8 root, T/8, H/8, W/8), one of two memories
    at that bottleneck (``mem3`` normal, ``mem3_ano`` anomaly), a 3-D conv decoder with the skips of
    ``skip_ops``. T, H and W must be multiples of 8."""

    def __init__(self, num_in_ch=3, features_root=32, mem_dim=2000, shrink_thres=0.0005, skip_ops=SKIP_OPS):
        super().__init__()
        skip_ops = tuple(skip_ops)
        if len(skip_ops) != 3 or any(op not in SKIP_CHOICES for op in skip_ops):
            raise VPCError(f"skip_ops {list(skip_ops)}: give three of {', '.join(SKIP_CHOICES)} "
                           f"(for up_1, up_2, up_3; the default is {','.join(SKIP_OPS)})")
        self.num_in_ch, self.features_root, self.mem_dim = num_in_ch, features_root, mem_dim
        self.shrink_thres, self.skip_ops = shrink_thres, skip_ops
        root = features_root
        # the official construction order: each layer draws its initial weights from the global generator
        self.in_conv = InConv(num_in_ch, root)
        self.down_1 = Down(root, root * 2)
        self.down_2 = Down(root * 2, root * 4)
        self.down_3 = Down(root * 4, root * 8)
        self.mem3 = Memory(mem_dim, root * 8, shrink_thres)
        self.mem3_ano = Memory(mem_dim, root * 8, shrink_thres)
        self.up_3 = Up(root * 8, root * 4, skip_ops[-1])
        self.up_2 = Up(root * 4, root * 2, skip_ops[-2])
        self.up_1 = Up(root * 2, root, skip_ops[-3])
        self.out_conv = OutConv(root, num_in_ch)

    def config(self):
        """The constructor's arguments, as a JSON-ready dict (``DualMemoryAE(**config)`` rebuilds the model)."""
        return {"num_in_ch": self.num_in_ch, "features_root": self.features_root, "mem_dim": self.mem_dim,
                "shrink_thres": self.shrink_thres, "skip_ops": list(self.skip_ops)}

    def memory(self, path):
        """The memory module of a path: "normal" ``mem3``, "anomaly" ``mem3_ano``."""
        if path not in SIGNS:
            raise ValueError(f"unknown memory path {path!r}")
        return self.mem3 if path == NORMAL else self.mem3_ano

    def forward(self, x, mem=True, mem_ano=False):
        """``x`` (B, C, T, H, W). ``mem`` reads the normal memory, ``mem_ano`` the anomaly memory (training
        sends a batch through one of them; testing uses the normal one); neither skips the memory. Both
        at once (the official code would chain them, and never does) is refused."""
        if mem and mem_ano:
            raise ValueError("read one memory: mem and mem_ano are both True")
        x0 = self.in_conv(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        path = NORMAL if mem else ANOMALY if mem_ano else None
        attention = None
        if path is not None:
            x3, attention = self.memory(path)(x3)
        recon = self.up_3(x3, x2 if self.skip_ops[-1] != "none" else None)
        recon = self.up_2(recon, x1 if self.skip_ops[-2] != "none" else None)
        recon = self.up_1(recon, x0 if self.skip_ops[-3] != "none" else None)
        return Output(self.out_conv(recon), attention, path)


def official_optimizer(model, lr):
    """train.py's optimiser: Adam over every parameter, both memories included (betas 0.9, 0.999, eps
    1e-8, no weight decay); no scheduler."""
    return torch.optim.Adam(model.parameters(), lr=lr)


# --- losses ------------------------------------------------------------------------------------------

class LossParts(NamedTuple):
    """The terms of a training loss, as Python floats: the squared error (summed, or its mean), the
    entropy E of the used memory's attention (unsigned, unweighted) and the memory term as added."""

    mse: float
    entropy: float
    memory: float


def training_loss(recon, target, attention, path, memory_matrix, other_matrix=None, loss_m_weight=0.0002,
                  mem_weight=2e-5, reduction="sum", mem_loss="official"):
    """train.py's loss of one forward through the memory of ``path`` (s = +1 "normal", -1 "anomaly"),
    with w = ``loss_m_weight`` and E the attention's entropy. Returns (total, a 0-d tensor; LossParts).

    ``reduction`` "sum" (official): sum over the K elements of ((r - x)^2 + w s E), the scalar broadcast
    onto every element before the sum (so the entropy weighs K w), plus ``mem_weight`` times the sum of
    the memory term. "mean": every term averaged over its own elements instead: mean (r - x)^2 + w s E
    + ``mem_weight`` times the mean of the memory term; the squared error and the entropy keep the
    official balance (the sum divided by K), the memory term is divided by M F (not K).
    ``mem_loss`` "official": the term -|M_used| elementwise (it inflates the used memory's entries; the
    other memory is a zero placeholder in the code); "between": -|M_normal - M_anomaly| (the paper's
    wording: it pushes the two memories apart), which needs ``other_matrix``."""
    if path not in SIGNS:
        raise ValueError(f"unknown memory path {path!r}")
    if reduction not in REDUCTIONS or mem_loss not in MEM_LOSSES:
        raise ValueError(f"unknown loss form: reduction {reduction!r}, mem_loss {mem_loss!r}")
    squared = F.mse_loss(recon, target, reduction="none")
    entropy = attention_entropy(attention)
    if mem_loss == "official":
        distance = torch.abs(memory_matrix)
    else:
        if other_matrix is None:
            raise ValueError('mem_loss "between" needs the other memory\'s matrix')
        distance = torch.abs(memory_matrix - other_matrix)
    weighted = loss_m_weight * (SIGNS[path] * entropy)
    if reduction == "sum":
        data, mse = (squared + weighted).sum(), squared.sum()
        memory = (distance * -1.0).sum() * mem_weight
    else:
        mse = squared.mean()
        data = mse + weighted
        memory = (distance * -1.0).mean() * mem_weight
    total = data + memory
    return total, LossParts(mse.item(), entropy.item(), memory.item())


# --- training ----------------------------------------------------------------------------------------

class StepLosses(NamedTuple):
    """The losses of one training step, as Python floats: the total, the squared error, the entropy of
    each memory's attention (0 for a memory the step did not use, as the official placeholder gives)
    and the memory term. With per-sample routing each is the sum over the two paths."""

    total: float
    mse: float
    entropy: float
    entropy_ano: float
    memory: float


def _path_of(is_pseudo):
    return ANOMALY if is_pseudo else NORMAL


def _forward(model, x, path):
    return model(x, mem=path == NORMAL, mem_ano=path == ANOMALY)


@contextmanager
def _batch_norm_momentum(model, repeats):
    """Batch norm's momentum m set to 1 - (1 - m)^repeats: one update moves the running statistics as
    ``repeats`` updates with the same batch would (up to rounding)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 1 - (1 - layer.momentum) ** repeats
    try:
        yield
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum


def _forwards(model, batch, pseudo, memory_routing, repeat_forward):
    """The (input, Output) pairs whose losses a step sums."""
    if memory_routing == "last_sample":
        paths = [_path_of(p) for p in pseudo]
        if not repeat_forward:
            with _batch_norm_momentum(model, len(paths)):
                return [(batch, _forward(model, batch, paths[-1]))]
        # train.py runs the whole batch once per sample, each call overwriting the last: the earlier calls
        # only move the batch norm statistics, so they need no graph
        with torch.no_grad():
            for path in paths[:-1]:
                _forward(model, batch, path)
        return [(batch, _forward(model, batch, paths[-1]))]
    pairs = []
    for path in (NORMAL, ANOMALY):
        rows = [b for b, p in enumerate(pseudo) if _path_of(p) == path]
        if rows:
            x = batch[rows]
            pairs.append((x, _forward(model, x, path)))
    return pairs


def train_step(model, optimizer, batch, pseudo, loss_m_weight=0.0002, mem_weight=2e-5, reduction="sum",
               mem_loss="official", memory_routing="last_sample", repeat_forward=True):
    """One training step of train.py on ``batch`` (B, C, 16, H, W), the pseudo-anomalous clips already
    substituted into it, ``pseudo`` saying which (one bool per sample): forward, loss, zero_grad,
    backward, Adam step. Returns StepLosses. The model is used in its current (training) mode.

    ``memory_routing`` "last_sample" (official): the whole batch goes through the memory of its **last**
    sample (the anomaly memory iff that sample is pseudo-anomalous); train.py calls the model B times,
    once per sample's path, and keeps the last output, so batch norm's running statistics move B times
    (``repeat_forward`` False: one call, with momentum 1 - 0.9^B, the same statistics but
    ``num_batches_tracked`` + 1). "per_sample": the normal and the pseudo-anomalous samples each go once
    through their own memory (batch norm normalises each group with its own statistics and updates once
    per group) and the two losses are summed; the "between" memory term, the same for both paths, is
    counted once. ``loss_m_weight``, ``mem_weight``, ``reduction``, ``mem_loss``: as training_loss."""
    pseudo = [bool(p) for p in pseudo]
    if len(pseudo) != batch.shape[0]:
        raise ValueError(f"{len(pseudo)} pseudo flags for a batch of {batch.shape[0]}")
    if memory_routing not in ROUTINGS:
        raise ValueError(f"unknown memory routing {memory_routing!r}")
    pairs = _forwards(model, batch, pseudo, memory_routing, repeat_forward)
    totals, mse, entropy, memory = [], 0.0, {NORMAL: 0.0, ANOMALY: 0.0}, 0.0
    for index, (x, out) in enumerate(pairs):
        other = ANOMALY if out.path == NORMAL else NORMAL
        weight = mem_weight if mem_loss == "official" or index == 0 else 0.0
        total, parts = training_loss(out.recon, x, out.attention, out.path, model.memory(out.path).memMatrix,
                                     model.memory(other).memMatrix, loss_m_weight, weight, reduction, mem_loss)
        totals.append(total)
        mse, memory = mse + parts.mse, memory + parts.memory
        entropy[out.path] += parts.entropy
    loss = totals[0] if len(totals) == 1 else totals[0] + totals[1]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return StepLosses(loss.item(), mse, entropy[NORMAL], entropy[ANOMALY], memory)


# --- testing -----------------------------------------------------------------------------------------

@torch.no_grad()
def clip_psnr(model, clip, score_frame=SCORED_FRAME):
    """evaluate.py's score of one clip (1, C, 16, H, W), on the scale it is given in (standardised
    frames): a forward through the normal memory (the anomaly memory never scores), the mean squared
    error over the C x H x W elements of frame ``score_frame`` in float32 (``.item()``), and PSNR =
    10 log10(1 / mse) in float64 (peak 1 although the frames are not in [0, 1]); infinity for a perfect
    frame (where the official code raises ZeroDivisionError). The model must be in eval mode."""
    if model.training:
        raise RuntimeError("clip_psnr needs model.eval(): batch norm would use the clip's own statistics")
    if clip.dim() != 5 or clip.shape[0] != 1:
        raise RuntimeError(f"clip_psnr scores one clip (1, C, T, H, W), not {tuple(clip.shape)}")   # a bug
    recon = model(clip).recon
    mse = torch.mean(F.mse_loss(recon[0, :, score_frame], clip[0, :, score_frame], reduction="none")).item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)
