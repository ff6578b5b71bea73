"""What the benchmarks share: peak memory, a timer that waits for CUDA, ShanghaiTech's sizes for
runs at its scale, the step timer, the official computation reimplemented from SPEC.md, the generated
stage data (a library module of benchmarks/, not a script; the library loads only where used)."""
import contextlib
import dataclasses
import functools
import io
import shutil
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from unittest import mock

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


# --- the step timer ------------------------------------------------------------------------------------

class StepTimer:
    """Seconds per named step of wrapped calls: self time (nested wrapped calls subtracted) and
    inclusive time (counted once when a step is nested in itself)."""

    def __init__(self):
        self.own, self.inclusive, self.calls, self.stack = defaultdict(float), defaultdict(float), defaultdict(int), []

    @contextlib.contextmanager
    def step(self, name):
        frame = [name, 0.0]                      # [step, time of the wrapped calls nested in it]
        self.stack.append(frame)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.stack.pop()
            self.own[name] += elapsed - frame[1]
            self.calls[name] += 1
            if all(outer[0] != name for outer in self.stack):
                self.inclusive[name] += elapsed
            if self.stack:
                self.stack[-1][1] += elapsed

    def timed(self, name, function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            with self.step(name):
                return function(*args, **kwargs)
        return call

    def timed_context(self, name, function):
        """A context-manager factory whose entering and leaving count to ``name`` (not its body)."""
        @contextlib.contextmanager
        def call(*args, **kwargs):
            manager = function(*args, **kwargs)
            with self.step(name):
                value = manager.__enter__()
            try:
                yield value
            except BaseException as error:
                manager.__exit__(type(error), error, error.__traceback__)
                raise
            with self.step(name):
                manager.__exit__(None, None, None)
        return call


class TimedBackbone(torch.nn.Module):
    """The backbone with every forward call timed as the "encoder forward" step."""

    def __init__(self, backbone, timer):
        super().__init__()
        self.backbone, self.timer, self.images = backbone, timer, 0
        self.device, self.name, self.random_weights = backbone.device, backbone.name, backbone.random_weights
        self.layout = backbone.layout
        self.description, self.identity = backbone.description, backbone.identity

    def forward(self, images):
        self.images += images.shape[0]
        with self.timer.step(ENCODER):
            return self.backbone(images)


ENCODER = "encoder forward"


# --- the official computation, reimplemented from SPEC.md ----------------------------------------------

class OfficialTower(torch.nn.Module):
    """CLIP's whole ModifiedResNet (RN101: layer4, attention pool) holding the taps' weights up to
    layer3 (the rest random), BatchNorm unfolded, with hooks keeping the layer2 and layer3 outputs,
    as the official code taps them; it answers to the library as a backbone does."""

    def __init__(self, taps):
        from clip.model import ModifiedResNet, convert_weights

        from Memorization.encoders.clip_resnet import ARCHITECTURES, INPUT_SIZE

        super().__init__()
        layers, width = ARCHITECTURES["RN101"]
        self.tower = ModifiedResNet(layers=(*layers, 3), output_dim=512, heads=width * 32 // 64,
                                    input_resolution=INPUT_SIZE, width=width)
        convert_weights(self.tower)
        self.tower.float().eval()
        self.tower.load_state_dict(taps.state_dict(), strict=False)
        self.taps = {}
        for name in ("layer2", "layer3"):
            getattr(self.tower, name).register_forward_hook(
                lambda _, __, out, name=name: self.taps.__setitem__(name, out))
        self.device, self.name, self.random_weights = taps.device, taps.name, taps.random_weights
        self.layout = taps.layout
        self.description, self.identity = taps.description, taps.identity

    def forward(self, images):
        self.tower(images.type(self.tower.conv1.weight.dtype))
        return self.taps["layer2"].float(), self.taps["layer3"].float()


def cdist_scores(patches, n_objects, bank, power=1, **_):
    """The official per-object loop: each object's max over patches of the min cdist to the bank."""
    if n_objects == 0:
        return patches.new_zeros(0)
    return torch.stack([torch.cdist(rows, bank).min(dim=1).values.max() ** power
                        for rows in patches.view(n_objects, -1, patches.shape[1])])


def python_greedy(points, n_select, *_):
    """The official-style greedy coreset: distances to the newest centre with torch.linalg.norm, a
    running min vector, the argmax taken to Python every step."""
    chosen = [0]
    nearest = torch.linalg.norm(points - points[0], dim=1)
    for _ in range(max(n_select, 1) - 1):
        index = int(torch.argmax(nearest))
        chosen.append(index)
        nearest = torch.minimum(nearest, torch.linalg.norm(points - points[index], dim=1))
    return torch.tensor(chosen)


@contextlib.contextmanager
def official_computation():
    """The stage's encoder, scoring and coreset replaced by the official code's, for its duration."""
    import Memorization.banks.coreset
    import Memorization.banks.scores
    import Memorization.encoders.registry

    load = Memorization.encoders.registry.load_backbone

    def load_official(*args, **kwargs):
        return OfficialTower(load(*args, **{**kwargs, "form": "published"}))

    with mock.patch.object(Memorization.encoders.registry, "load_backbone", load_official), \
            mock.patch.object(Memorization.banks.scores, "object_scores", cdist_scores), \
            mock.patch.object(Memorization.banks.coreset, "greedy_coreset_indices", python_greedy):
        yield


# --- the stage on generated data -----------------------------------------------------------------

def demo_data(root, args):
    """The generated dataset with objects detected, and a run of the published method (random
    weights, no label-free calibration) in ``root / work``; ``args``: videos (training, and as many test
    ones), n_frames, width, height, consecutive, ratio."""
    from extra.cli import RunContext
    from extra.config import DATASETS
    from extra.evaluation.fusion import FusionWeights
    from extra.make_demo import make_demo
    from Memorization.options import PUBLISHED_BANKS, MemorizationRun, MethodConfig
    from ObjectDetection.pipeline import DetectionOptions, run_object_detection

    settings, d = DATASETS["avenue"], args.consecutive
    make_demo(root / "data", "avenue", seed=0, n_train=args.videos, n_test=args.videos, n_frames=args.n_frames,
              width=args.width, height=args.height)
    context = RunContext(settings=settings, consecutive=d, data_root=root / "data", work_dir=root / "work")
    run_object_detection(context, DetectionOptions(detector="motion"))
    method = MethodConfig(settings.name, d, settings.cnl_pool, settings.pool_for_sm,
                          settings.power_n, ratios=dict.fromkeys(PUBLISHED_BANKS, args.ratio),
                          backbone="RN101", random_weights=True)
    return MemorizationRun(context, method, FusionWeights.chosen(0.5, 0.5, 0), label_free=False)


@contextlib.contextmanager
def quiet():
    """The library's progress lines and results kept out of the report (shown if something fails)."""
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    except BaseException:
        print(log.getvalue(), file=sys.stderr)
        raise


def fresh_work(run, name):
    """The same run in a copy of its working directory as detection left it (features, banks and
    results made anew)."""
    work_dir = run.context.work_dir.parent / name
    shutil.copytree(run.context.work_dir, work_dir)
    return dataclasses.replace(run, context=dataclasses.replace(run.context, work_dir=work_dir))


def best_seconds(function, repeats):
    """Best wall time of ``repeats`` calls, after one warm-up call."""
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best
