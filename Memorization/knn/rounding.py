"""Bounds on floating-point rounding, for searches that run fast in low precision and recheck
only what the bound cannot decide."""
import torch


def gamma(n, dtype):
    """Higham's gamma_n = n u / (1 - n u) for ``dtype`` (u = half its machine epsilon): a sum or dot
    product of n terms computed in ``dtype``, in any order, is off by at most gamma_n times the sum
    of the terms' absolute values."""
    unit_roundoff = torch.finfo(dtype).eps / 2
    return n * unit_roundoff / (1 - n * unit_roundoff)
