"""Where the time goes: the Memorization stage step by step, the encoder against the machine's
matrix-product rate, and the official code's style against ours, all in one run on the same data.

    python benchmarks/bench_speed.py [--quick] [--threads 2] [--bank_rows N] [--n_frames N] [--consecutive d]

1. Generates an Avenue-layout demo dataset (2 training and 2 test videos), detects objects with
   the motion detector, then runs the whole Memorization stage (``run_memorization``: features,
   coreset, label-free calibration, scoring, evaluation) with CLIP RN101 taps with random weights,
   timing the library calls it makes. Each row counts its own time only: a wrapped call made
   inside another (the encoder inside the calibration, HDF5 reads inside ``fit``) counts to its
   own row, and the "incl. nested" column gives each row's time with what it called.
2. Images/s of the taps at batch sizes 1, 4 and 16 (224 x 224, float32), their FLOP rate
   (``FlopCounterMode``) beside the best float32 2048^3 matmul rate of the machine.
3. Official style vs ours: the full CLIP visual tower (layer4 and attention pool included, taps
   hooked on layer2/layer3) vs ``ResNetTaps``; the per-object ``torch.cdist`` scoring loop vs
   ``object_scores``; a Python-loop greedy coreset vs ``greedy_coreset_indices``.

``--quick`` (10-frame videos, clips of 5, a 100,000-row bank) takes about 45 s on 2 idle CPU
threads (AMD EPYC) and up to about 3 minutes when other jobs share the cores; the full run (40-frame
videos, Avenue's clips of 10, a 1,000,000-row bank) takes about 3.5 minutes there, three quarters
of it the encoder.
"""
import argparse
import contextlib
import functools
import io
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import torch  # noqa: E402
from clip.model import ModifiedResNet, convert_weights  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import extra.datasets  # noqa: E402
import Memorization.backbone  # noqa: E402
import Memorization.pipeline  # noqa: E402
import Memorization.pseudo  # noqa: E402
from extra.cli import RunContext  # noqa: E402
from extra.config import DATASETS  # noqa: E402
from extra.device import device_description  # noqa: E402
from extra.make_demo import make_demo  # noqa: E402
from extra.store import ClipFile, ClipFileWriter  # noqa: E402
from Memorization import features  # noqa: E402
from Memorization.coreset import greedy_coreset_indices  # noqa: E402
from Memorization.evaluation import FusionWeights  # noqa: E402
from Memorization.model import VideoPatchCore  # noqa: E402
from Memorization.options import ARCHITECTURES, PUBLISHED_BANKS, MemorizationRun, MethodConfig  # noqa: E402
from Memorization.pipeline import run_memorization  # noqa: E402
from Memorization.scoring import object_scores  # noqa: E402
from ObjectDetection.pipeline import DetectionOptions, run_object_detection  # noqa: E402

SIZE = features.INPUT_SIZE


# --- 1. the Memorization stage, step by step --------------------------------------------------------

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
        self.description, self.identity = backbone.description, backbone.identity

    def forward(self, images):
        self.images += images.shape[0]
        with self.timer.step(ENCODER):
            return self.backbone(images)


ENCODER = "encoder forward (ResNetTaps)"
# (owner, attribute, step): the library calls timed in the stage; order = the table's order.
STEPS = (
    (Memorization.backbone, "load_backbone", "backbone load (random RN101, fp16-rounded)"),
    (extra.datasets, "read_frame", "reading frames (cv2.imread)"),
    (features, "frames_to_input", "global input prep (frames_to_input: resize, scale)"),
    (features, "local_feature_set", "local input prep (crops to float, 64 -> 224 interpolate)"),
    (None, None, ENCODER),
    (features, "tapped_maps", "pooling / compression after the encoder"),
    (features, "compress_channels", "pooling / compression after the encoder"),
    (features, "_object_major", "pooling / compression after the encoder"),
    (features, "global_features", "pooling / compression after the encoder"),
    (Memorization.pseudo, "global_features", "pooling / compression after the encoder"),
    (features, "write_clip_file", "HDF5 writes (files, clips, checksums)"),
    (ClipFileWriter, "add", "HDF5 writes (files, clips, checksums)"),
    (ClipFile, "__init__", "HDF5 reads (records, clips, checksums)"),
    (ClipFile, "clip", "HDF5 reads (records, clips, checksums)"),
    (VideoPatchCore, "fit", "coreset (VideoPatchCore.fit; calibration's held-out coresets)"),
    (Memorization.pseudo, "subsample", "coreset (VideoPatchCore.fit; calibration's held-out coresets)"),
    (VideoPatchCore, "score_banks", "scoring (score_banks; calibration's score_clips)"),
    (Memorization.pseudo, "score_clips", "scoring (score_banks; calibration's score_clips)"),
    (Memorization.pseudo, "label_free_calibration", "label-free calibration (recipes, calibrate)"),
    (Memorization.pipeline, "evaluate", "evaluation grid (evaluate)"),
)


def instrumented(timer, stack, encoders):
    """Wrap every call of STEPS for the duration of ``stack``; loaded backbones land in ``encoders``."""
    for owner, attribute, name in STEPS:
        if owner is None:
            continue
        original = getattr(owner, attribute)
        if attribute == "load_backbone":
            def load(*args, _original=original, _name=name, **kwargs):
                with timer.step(_name):
                    backbone = _original(*args, **kwargs)
                encoders.append(TimedBackbone(backbone, timer))
                return encoders[-1]
            wrapper = load
        elif attribute == "write_clip_file":
            wrapper = timer.timed_context(name, original)
        else:
            wrapper = timer.timed(name, original)
        stack.enter_context(mock.patch.object(owner, attribute, wrapper))


def demo_data(root, args):
    """The generated dataset, its context and a run of the published method with random weights."""
    settings, d = DATASETS["avenue"], args.consecutive
    make_demo(root / "data", "avenue", seed=0, n_train=2, n_test=2, n_frames=args.n_frames, width=args.width,
              height=args.height)
    context = RunContext(settings=settings, consecutive=d, data_root=root / "data", work_dir=root / "work")
    method = MethodConfig(settings.name, d, settings.cnl_pool, settings.pool_for_sm,
                          settings.power_n, ratios=dict.fromkeys(PUBLISHED_BANKS, settings.coreset_ratio),
                          backbone="RN101", random_weights=True)
    return context, MemorizationRun(context, method, FusionWeights.chosen(0.5, 0.5, 0))


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


def stage_breakdown(root, args):
    """(detection seconds, stage seconds, StepTimer, images through the encoder) on generated data."""
    with quiet():
        context, run = demo_data(root, args)
        start = time.perf_counter()
        run_object_detection(context, DetectionOptions(detector="motion"))
        detection = time.perf_counter() - start
        timer, encoders = StepTimer(), []
        with contextlib.ExitStack() as stack:
            instrumented(timer, stack, encoders)
            start = time.perf_counter()
            run_memorization(run)
            stage = time.perf_counter() - start
    return detection, stage, timer, sum(encoder.images for encoder in encoders)


def print_breakdown(detection, stage, timer, images, args):
    print(f"## 1. Memorization stage on generated data: {stage:.1f} s\n")
    print(f"2 training + 2 test videos of {args.n_frames} frames ({args.width} x {args.height}), clips of "
          f"{args.consecutive}; motion detection before it: {detection:.1f} s; "
          f"{images} images through the encoder.\n")
    print("| step | seconds | share of the stage | calls | seconds incl. nested |")
    print("|---|---|---|---|---|")
    names = list(dict.fromkeys(name for _, _, name in STEPS))
    for name in names:
        print(f"| {name} | {timer.own[name]:.2f} | {timer.own[name] / stage:.1%} | {timer.calls[name]} | "
              f"{timer.inclusive[name]:.2f} |")
    other = stage - sum(timer.own[name] for name in names)
    print(f"| other (model file + weights hash, results files, regions, file checks, Python glue) | "
          f"{other:.2f} | {other / stage:.1%} | | |")
    print(f"| **stage total** | {stage:.2f} | 100% | | |\n")


# --- 2. encoder throughput against the matrix-product rate -----------------------------------------

def best_seconds(function, repeats):
    """Best wall time of ``repeats`` calls, after one warm-up call."""
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(n=2048, repeats=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, repeats) / 1e9


def forward_flops(model, images):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    return counter.get_total_flops()


@torch.no_grad()
def throughput(model, batch, repeats):
    """Images/s of ``model`` on a random float32 batch, best of ``repeats``."""
    images = torch.randn(batch, 3, SIZE, SIZE)
    return batch / best_seconds(lambda: model(images), repeats)


def print_encoder(taps, args):
    flops = forward_flops(taps, torch.randn(1, 3, SIZE, SIZE))
    peak = matmul_gflops()
    print("## 2. Encoder throughput (ResNetTaps RN101, 224 x 224 float32, random weights)\n")
    print(f"one image: {flops / 1e9:.2f} GFLOP (FlopCounterMode); float32 2048^3 matmul: {peak:.1f} GFLOP/s "
          f"(best of 5)\n")
    print("| batch | images/s | GFLOP/s | share of matmul rate |")
    print("|---|---|---|---|")
    for batch in (1, 4, 16):
        rate = throughput(taps, batch, args.repeats)
        achieved = rate * flops / 1e9
        print(f"| {batch} | {rate:.2f} | {achieved:.1f} | {achieved / peak:.0%} |")
    print()


# --- 3. official style vs ours ----------------------------------------------------------------------

def full_tower(taps):
    """CLIP's whole ModifiedResNet (RN101: layer4, attention pool) holding the taps' weights up to
    layer3 (the rest random), with hooks keeping layer2 and layer3 outputs, as the official code taps them."""
    layers, width = ARCHITECTURES["RN101"]
    tower = ModifiedResNet(layers=(*layers, 3), output_dim=512, heads=width * 32 // 64, input_resolution=SIZE,
                           width=width)
    convert_weights(tower)
    tower.float().eval()
    tower.load_state_dict(taps.state_dict(), strict=False)
    tower.taps = {}
    for name in ("layer2", "layer3"):
        getattr(tower, name).register_forward_hook(lambda _, __, out, name=name: tower.taps.__setitem__(name, out))
    return tower


@torch.no_grad()
def compare_towers(taps, batch, repeats):
    tower = full_tower(taps)
    images = torch.randn(batch, 3, SIZE, SIZE)
    official = best_seconds(lambda: tower(images), repeats)        # the hooks keep the last call's taps
    ours = best_seconds(lambda: taps(images), repeats)
    layer2, layer3 = taps(images)
    difference = max((layer2 - tower.taps["layer2"]).abs().max().item(),
                     (layer3 - tower.taps["layer3"]).abs().max().item())
    one = images[:1]
    return official, ours, difference, forward_flops(tower, one) / forward_flops(taps, one)


def cdist_scores(patches, n_objects, bank):
    """The official per-object loop: each object's max over patches of the min cdist to the bank."""
    return torch.stack([torch.cdist(rows, bank).min(dim=1).values.max()
                        for rows in patches.view(n_objects, -1, patches.shape[1])])


def python_greedy(points, n_select):
    """The official-style greedy coreset: distances to the newest centre with torch.linalg.norm, a
    running min vector, the argmax taken to Python every step."""
    chosen = [0]
    nearest = torch.linalg.norm(points - points[0], dim=1)
    for _ in range(n_select - 1):
        index = int(torch.argmax(nearest))
        chosen.append(index)
        nearest = torch.minimum(nearest, torch.linalg.norm(points - points[index], dim=1))
    return torch.tensor(chosen)


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def print_comparisons(taps, args):
    generator = torch.Generator().manual_seed(0)
    print("## 3. Official style vs ours (same inputs)\n")
    print("| comparison | official style | ours | official / ours | agreement |")
    print("|---|---|---|---|---|")

    official, ours, difference, flop_ratio = compare_towers(taps, args.tower_batch, args.repeats)
    print(f"| (a) encoder, batch {args.tower_batch}: full CLIP RN101 tower vs ResNetTaps (images/s) | "
          f"{args.tower_batch / official:.2f} | {args.tower_batch / ours:.2f} | {official / ours:.2f} | "
          f"taps max abs diff {difference:.1e}; FLOP ratio {flop_ratio:.2f} |")

    n_objects, per_object = 40, 49
    bank = torch.randn(args.bank_rows, 64, generator=generator)
    patches = torch.randn(n_objects * per_object, 64, generator=generator)
    official, reference = timed(lambda: cdist_scores(patches, n_objects, bank))
    ours, scores = timed(lambda: object_scores(patches, n_objects, bank, power=1))
    relative = ((scores.double() - reference.double()).abs() / reference.double()).max().item()
    print(f"| (b) scoring {n_objects} objects x {per_object} patches, bank {args.bank_rows} x 64: cdist loop vs "
          f"object_scores (s) | {official:.2f} | {ours:.2f} | {official / ours:.2f} | "
          f"max rel diff {relative:.1e} |")

    points = torch.randn(args.coreset_rows, 64, generator=generator)
    n_select = int(0.01 * args.coreset_rows)
    official, reference = timed(lambda: python_greedy(points, n_select))
    ours, indices = timed(lambda: greedy_coreset_indices(points, n_select))
    print(f"| (c) greedy coreset {n_select} of {args.coreset_rows} x 64: Python loop vs greedy_coreset_indices (s) | "
          f"{official:.2f} | {ours:.2f} | {official / ours:.2f} | "
          f"indices identical: {'yes' if torch.equal(reference, indices) else 'NO'} |\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, a smaller bank and coreset input")
    parser.add_argument("--threads", type=int, default=2, help="torch (and OpenCV) threads")
    parser.add_argument("--n_frames", type=int, default=None, help="frames per generated video (40; --quick 10)")
    parser.add_argument("--consecutive", type=int, default=None,
                        help="frames per clip (Avenue's 10; --quick 5: the calibration needs 2 clips per video)")
    parser.add_argument("--width", type=int, default=640, help="generated frame width (Avenue's)")
    parser.add_argument("--height", type=int, default=360, help="generated frame height (Avenue's)")
    parser.add_argument("--bank_rows", type=int, default=None, help="synthetic bank rows (1000000; --quick 100000)")
    args = parser.parse_args()
    args.n_frames = args.n_frames or (10 if args.quick else 40)
    args.consecutive = args.consecutive or (5 if args.quick else DATASETS["avenue"].consecutive)
    args.bank_rows = args.bank_rows or (100_000 if args.quick else 1_000_000)
    args.coreset_rows = 20_000 if args.quick else 100_000
    args.repeats, args.tower_batch = (1, 8) if args.quick else (3, 16)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    print(f"# Speed: {device_description('cpu')}; torch {torch.__version__}\n")
    with tempfile.TemporaryDirectory(prefix="vpc_speed_") as folder:
        print_breakdown(*stage_breakdown(Path(folder), args), args)
    with quiet():
        taps = Memorization.backbone.load_backbone("RN101", device="cpu", random_weights=True)
    print_encoder(taps, args)
    print_comparisons(taps, args)


if __name__ == "__main__":
    main()
