"""Where tensors run: CUDA when present, the CPU otherwise."""
import platform

import torch


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_description(device):
    """The device in words, for timings: the CUDA device's name, or the CPU model and its threads."""
    if torch.device(device).type == "cuda":
        return f"CUDA {torch.cuda.get_device_name(torch.device(device))}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {model} ({torch.get_num_threads()} threads)"
