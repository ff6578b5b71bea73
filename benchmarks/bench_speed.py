"""Where the time goes, and how much faster than the official code's computation: the Memorization
stage both ways on the same generated data, step by step, the encoder against the machine's
matrix-product rate, scoring and the coreset against the official loops, all in one run.

    python benchmarks/bench_speed.py [--quick] [--stage_only] [--threads 2] [--bank_rows N] [--n_frames N]
                                     [--videos N] [--consecutive d] [--ratio r]

1. The official computation, reimplemented here from SPEC.md on the library's own glue: the
   whole CLIP RN101 visual tower (layer4 and attention pool included, taps hooked on
   layer2/layer3, BatchNorm unfolded), per-object ``torch.cdist`` scoring and the Python-loop
   greedy coreset; then ours (the folded taps, the blocked search in bfloat16 where the CPU has
   it, with its float64 recheck, the product-form coreset). Both run the published method (no
   label-free calibration) on an Avenue-layout demo dataset (``--videos`` training and as many test
   videos, 2 by default; clips of Avenue's 10 frames and its coreset ratio 0.01 unless
   ``--consecutive`` / ``--ratio`` say otherwise) with CLIP RN101 random weights; the stage's
   seconds, the speed-up and both AUROCs are printed.
2. Our run step by step. Each row counts its own time only: a wrapped call made inside another
   (HDF5 reads inside ``fit``) counts to its own row, and the "incl. nested" column gives each
   row's time with what it called.
3. Images/s of the encoder at batch sizes 1, 4 and 16 (224 x 224, float32): the official tower,
   our taps in the published layer sequence and folded; their FLOP rate (``FlopCounterMode``)
   beside the best float32 2048^3 matmul rate of the machine.
4. Scoring 40 objects of 49 patches against a ShanghaiTech-sized spatial bank (4,000,000 x 64):
   the per-object ``torch.cdist`` loop vs ``object_scores``; a greedy coreset of 1 % of
   100,000 x 64: the Python loop vs ``greedy_coreset_indices`` (same indices).

``--quick`` (10-frame videos, clips of 5, a 200,000-row bank, a 20,000-row coreset input) takes
about 2 minutes on 2 idle CPU threads; the full run (40-frame videos, Avenue's clips of 10) about
12 minutes, most of it the official stage and the official scoring loop.
"""
import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import torch  # noqa: E402
from measure import (  # noqa: E402
    ENCODER,
    OfficialTower,
    StepTimer,
    TimedBackbone,
    best_seconds,
    cdist_scores,
    demo_data,
    fresh_work,
    official_computation,
    python_greedy,
    quiet,
    timed,
)
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import extra.datasets  # noqa: E402
import Memorization.encoders.registry  # noqa: E402
import Memorization.pipeline  # noqa: E402
from extra.config import DATASETS  # noqa: E402
from extra.device import device_description  # noqa: E402
from extra.store import ClipFile, ClipFileWriter  # noqa: E402
from Memorization import features  # noqa: E402
from Memorization.banks.coreset import greedy_coreset_indices  # noqa: E402
from Memorization.banks.scores import object_scores  # noqa: E402
from Memorization.encoders.clip_resnet import INPUT_SIZE  # noqa: E402
from Memorization.model import VideoPatchCore  # noqa: E402
from Memorization.pipeline import run_memorization  # noqa: E402

SIZE = INPUT_SIZE


# (owner, attribute, step): the library calls timed in the stage; order = the table's order.
STEPS = (
    (Memorization.encoders.registry, "load_backbone", "backbone load (random RN101, fp16-rounded, folded)"),
    (extra.datasets, "read_frame", "reading frames (cv2.imread)"),
    (features, "frames_to_input", "global input prep (frames_to_input: resize, scale)"),
    (features, "local_feature_set", "local input prep (crops to float, 64 -> 224 interpolate)"),
    (None, None, ENCODER),
    (features, "tapped_maps", "pooling / compression after the encoder"),
    (features, "compressed_maps", "pooling / compression after the encoder"),
    (features, "_object_major", "pooling / compression after the encoder"),
    (features, "global_features", "pooling / compression after the encoder"),
    (features, "write_clip_file", "HDF5 writes (files, clips, checksums)"),
    (ClipFileWriter, "add", "HDF5 writes (files, clips, checksums)"),
    (ClipFile, "__init__", "HDF5 reads (records, clips, checksums)"),
    (ClipFile, "clip", "HDF5 reads (records, clips, checksums)"),
    (VideoPatchCore, "fit", "coreset (VideoPatchCore.fit)"),
    (VideoPatchCore, "score_banks", "scoring (VideoPatchCore.score_banks)"),
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


# --- 1 and 2. the Memorization stage both ways, ours step by step -------------------------------------

def timed_stage(run, stack_setup):
    """(seconds, results, StepTimer, images through the encoder) of the stage run under ``stack_setup``."""
    timer, encoders = StepTimer(), []
    with quiet(), contextlib.ExitStack() as stack:
        stack_setup(stack)
        instrumented(timer, stack, encoders)
        start = time.perf_counter()
        results = run_memorization(run)
        seconds = time.perf_counter() - start
    return seconds, results, timer, sum(encoder.images for encoder in encoders)


def micro_total(results):
    return results["protocol"]["total"]["auroc"]


def print_stages(official, ours, args):
    print("## 1. The Memorization stage, official computation vs ours (same data, weights and threads)\n")
    print(f"{args.videos} training + {args.videos} test videos of {args.n_frames} frames ({args.width} x "
          f"{args.height}), clips of {args.consecutive}, coreset ratio {args.ratio}; CLIP RN101 with random weights; {ours[3]} images through the encoder; "
          f"no label-free calibration.\n")
    print("| run | seconds | encoder images/s | protocol AUROC (micro, total) |")
    print("|---|---|---|---|")
    for title, (seconds, results, timer, images) in (("official computation", official), ("ours", ours)):
        print(f"| {title} | {seconds:.1f} | {images / timer.own[ENCODER]:.2f} | {micro_total(results):.4%} |")
    print(f"\nspeed-up: {official[0] / ours[0]:.2f}x end to end; AUROC difference "
          f"{abs(micro_total(official[1]) - micro_total(ours[1])):.1e}\n")


def print_breakdown(stage, timer):
    print(f"## 2. Our stage step by step: {stage:.1f} s\n")
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


# --- 3. encoder throughput against the matrix-product rate -----------------------------------------

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


def print_encoder(published, folded, args):
    encoders = (("official tower (whole RN101, BatchNorm)", OfficialTower(published)),
                ("taps, published layers", published), ("taps, folded, channels-last", folded))
    one = torch.randn(1, 3, SIZE, SIZE)
    flops = {title: forward_flops(model, one) for title, model in encoders}
    with torch.no_grad():
        difference = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(folded(one), published(one)))
    peak = matmul_gflops()
    print("## 3. Encoder throughput (RN101, 224 x 224 float32, random weights)\n")
    print(f"GFLOP per image: official tower {flops[encoders[0][0]] / 1e9:.2f}, taps {flops[encoders[1][0]] / 1e9:.2f} "
          f"(FlopCounterMode); float32 2048^3 matmul: {peak:.1f} GFLOP/s (best of 5); folded taps vs published: "
          f"max relative difference {difference:.1e}\n")
    print("| encoder | batch | images/s | GFLOP/s | share of matmul rate |")
    print("|---|---|---|---|---|")
    for title, model in encoders:
        for batch in (1, 4, 16):
            rate = throughput(model, batch, args.repeats)
            achieved = rate * flops[title] / 1e9
            print(f"| {title} | {batch} | {rate:.2f} | {achieved:.1f} | {achieved / peak:.0%} |")
    print()


# --- 4. scoring and coreset against the official loops --------------------------------------------

def print_search(args):
    generator = torch.Generator().manual_seed(0)
    print("## 4. Scoring and coreset, official loops vs ours (same inputs)\n")
    print("| comparison | official | ours | official / ours | agreement |")
    print("|---|---|---|---|---|")
    n_objects, per_object = 40, 49
    bank = torch.randn(args.bank_rows, 64, generator=generator)
    patches = torch.randn(n_objects * per_object, 64, generator=generator)
    official, reference = timed(lambda: cdist_scores(patches, n_objects, bank))
    ours, scores = timed(lambda: object_scores(patches, n_objects, bank, power=1))
    relative = ((scores.double() - reference.double()).abs() / reference.double()).max().item()
    print(f"| scoring {n_objects} objects x {per_object} patches, bank {args.bank_rows:,} x 64: per-object cdist "
          f"vs object_scores (s) | {official:.2f} | {ours:.2f} | {official / ours:.1f} | max rel diff {relative:.1e} |")

    points = torch.randn(args.coreset_rows, 64, generator=generator)
    n_select = int(0.01 * args.coreset_rows)
    official, reference = timed(lambda: python_greedy(points, n_select))
    ours, indices = timed(lambda: greedy_coreset_indices(points, n_select))
    print(f"| greedy coreset {n_select:,} of {args.coreset_rows:,} x 64: Python loop vs greedy_coreset_indices (s) | "
          f"{official:.2f} | {ours:.2f} | {official / ours:.1f} | "
          f"indices identical: {'yes' if torch.equal(reference, indices) else 'NO'} |\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, a smaller bank and coreset input")
    parser.add_argument("--threads", type=int, default=2, help="torch (and OpenCV) threads")
    parser.add_argument("--n_frames", type=int, default=None, help="frames per generated video (40; --quick 10)")
    parser.add_argument("--consecutive", type=int, default=None,
                        help="frames per clip (Avenue's 10; --quick 5)")
    parser.add_argument("--videos", type=int, default=2, help="training videos, and as many test videos")
    parser.add_argument("--ratio", type=float, default=DATASETS["avenue"].coreset_ratio,
                        help="coreset ratio of the three banks (Avenue's)")
    parser.add_argument("--width", type=int, default=640, help="generated frame width (Avenue's)")
    parser.add_argument("--height", type=int, default=360, help="generated frame height (Avenue's)")
    parser.add_argument("--stage_only", action="store_true", help="only parts 1 and 2")
    parser.add_argument("--bank_rows", type=int, default=None,
                        help="synthetic bank rows (4000000, ShanghaiTech's spatial bank; --quick 200000)")
    args = parser.parse_args()
    args.n_frames = args.n_frames or (10 if args.quick else 40)
    args.consecutive = args.consecutive or (5 if args.quick else DATASETS["avenue"].consecutive)
    args.bank_rows = args.bank_rows or (200_000 if args.quick else 4_000_000)
    args.coreset_rows = 20_000 if args.quick else 100_000
    args.repeats = 1 if args.quick else 3
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    print(f"# Speed: {device_description('cpu')}; torch {torch.__version__}\n")
    with tempfile.TemporaryDirectory(prefix="vpc_speed_") as folder:
        with quiet():
            run = demo_data(Path(folder), args)
        official = timed_stage(fresh_work(run, "official"), lambda stack: stack.enter_context(official_computation()))
        ours = timed_stage(fresh_work(run, "ours"), lambda stack: None)
    print_stages(official, ours, args)
    print_breakdown(ours[0], ours[2])
    if args.stage_only:
        return
    with quiet():
        published = Memorization.encoders.registry.load_backbone("RN101", device="cpu", random_weights=True, form="published")
        folded = Memorization.encoders.registry.load_backbone("RN101", device="cpu", random_weights=True, form="folded")
    print_encoder(published, folded, args)
    print_search(args)


if __name__ == "__main__":
    main()
