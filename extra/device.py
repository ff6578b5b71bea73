"""Where tensors run: CUDA when present, the CPU otherwise."""
import torch


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"
