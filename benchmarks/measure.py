"""What the benchmarks measure besides time (a library module of benchmarks/, not a script)."""
import threading
import time
from contextlib import contextmanager

import psutil
import torch


class PeakMemory:
    """Peak resident memory of this process while a block runs (sampled), and CUDA's peak."""

    def __init__(self, interval=0.01):
        self.interval, self.process = interval, psutil.Process()

    @contextmanager
    def measure(self, result):
        peak, stop = [self.process.memory_info().rss], threading.Event()

        def sample():
            while not stop.wait(self.interval):
                peak[0] = max(peak[0], self.process.memory_info().rss)

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            result["rss_mib"] = max(peak[0], self.process.memory_info().rss) / 2 ** 20
            if torch.cuda.is_available():
                result["cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20


def timed(function):
    """(seconds, value) of ``function()``, CUDA's queued work included when there is a GPU."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, value
