"""The dual-memory autoencoder's memory (DualMemory/SPEC.md, section 4): MemAE's read, with hard
shrinkage, as pure functions on tensors, and the module that holds one memory matrix.

Shapes: ``queries`` (N, F), one row per position of the bottleneck, **not** normalised; ``matrix``
(M, F), the memory slots, a trained parameter (no normalisation of its rows either). The functions
follow the official code's order of operations (``memAE.Memory``), so that the same weights and
queries give the same attention to the float.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

ENTROPY_EPS = 1e-12     # inside the log of the entropy: an attention weight of 0 adds 0, not NaN


def hard_shrink(attention, threshold, eps=1e-12):
    """MemAE's ReLU hard shrinkage: relu(a - l) a / (|a - l| + eps): 0 where a <= l, and (a - l) a /
    (a - l + eps), a to within eps, above it. Written with relu rather than a comparison so that the
    gradient flows through the kept weights (only meant for attention weights, a >= 0)."""
    return F.relu(attention - threshold) * attention / (torch.abs(attention - threshold) + eps)


def read(queries, matrix, shrink_thres):
    """Read the memory: the attention a = softmax over the M slots of q . m (a plain dot product,
    temperature 1), shrunk by ``shrink_thres`` and L1-renormalised per query (skipped when
    ``shrink_thres`` <= 0, as the official code does), then the read a M. Returns (output (N, F),
    attention (N, M)). A row whose weights are all at or below the threshold (only a uniform softmax
    can be) becomes all 0 and reads 0."""
    attention = F.softmax(F.linear(queries, matrix), dim=1)
    if shrink_thres > 0:
        attention = F.normalize(hard_shrink(attention, shrink_thres), p=1, dim=1)
    # the transposed view, as the official code writes it (its matrix product's rounding)
    return F.linear(attention, matrix.permute(1, 0)), attention


def attention_entropy(attention):
    """The mean over rows (queries) of the entropy sum_m -a_m log(a_m + 1e-12), a 0-d tensor. The
    official placeholder of an unused memory, ``torch.zeros(1, 1)``, gives exactly 0."""
    return torch.mean(torch.sum(-attention * torch.log(attention + ENTROPY_EPS), dim=1))


class Memory(nn.Module):
    """One memory (the official ``memAE.Memory``): its only parameter ``memMatrix`` (mem_dim, fea_dim),
    drawn uniform in +-1/sqrt(fea_dim) from torch's global generator when the module is built (so the
    network's construction order fixes which draws it gets)."""

    def __init__(self, mem_dim, fea_dim, shrink_thres):
        super().__init__()
        self.mem_dim, self.fea_dim, self.shrink_thres = mem_dim, fea_dim, shrink_thres
        self.memMatrix = nn.Parameter(torch.empty(mem_dim, fea_dim))
        bound = 1.0 / math.sqrt(fea_dim)
        with torch.no_grad():
            self.memMatrix.uniform_(-bound, bound)

    def forward(self, features):
        """Features (B, F, T, H, W) -> (the read, same shape, and the attention (N, M)), queries taken in
        batch, time, row, column order (N = B T H W)."""
        batch, channels, time, height, width = features.shape
        queries = features.permute(0, 2, 3, 4, 1).contiguous().view(-1, channels)
        output, attention = read(queries, self.memMatrix, self.shrink_thres)
        return output.view(batch, time, height, width, channels).permute(0, 4, 1, 2, 3), attention
