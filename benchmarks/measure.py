"""What the benchmarks share: peak memory, a timer that waits for CUDA, and ShanghaiTech's sizes for
runs at its scale (a library module of benchmarks/, not a script)."""
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


# ShanghaiTech at the published settings (d = 4), per bank: rows per object (or clip), dimension,
# training patches of all videos and test patches. 274,515 training frames = 68,629 clips of 4 with
# about 4.8 objects each (16 M spatial patches of 49 per object); 40,791 test frames, about 2.6 M
# spatial test patches.
SHANGHAI_BANKS = {
    "spatial": (49, 64, 16_000_000, 2_600_000),
    "temporal": (3, 64, 16_000_000 * 3 // 49, 2_600_000 * 3 // 49),
    "highlevel": (4, 1536, 274_515, 40_791),
}
SHANGHAI_TRAIN_VIDEOS = 330
SHANGHAI_TEST_FRAMES = 40_791
