"""What the fast encoder (--precision bf16 / fp16) gains and costs: exact and fast on the same generated
data, the encoder's forms, the Memorization stage against the official computation, the features' error,
the coresets' overlap and every AUROC column, side by side.

    python benchmarks/bench_precision.py [--quick] [--threads 2] [--precisions bf16] [--videos 3] [--n_frames 60]
                                         [--consecutive 10] [--ratio 0.01] [--batches 1,4,8,16,32] [--compile]

1. The encoder (RN101, random weights, 224 x 224): images/s of each precision at several batch sizes, and
   at one batch the ways of computing a fast precision: autocast over the exact encoder or over the
   published layers, the weights cast (published layers with their BatchNorm, folded in contiguous
   memory, folded channels-last: the one ``--precision`` uses). Calls interleaved, best of ``--repeats``.
   ``--compile`` adds ``torch.compile`` (inductor, freezing) of the fast encoder: compile time, images/s,
   and the images a run needs before it pays.
2. The Memorization stage (no label-free calibration, as benchmarks/bench_speed.py) on an Avenue-layout
   demo dataset with the official computation (measure.official_computation), exact and each fast
   precision, each in a copy of the working directory detection left: seconds, the encoder's images/s
   inside the stage, speed-ups. Then each run again with the label-free calibration (features and banks
   reused; its seconds are the calibration's).
3. The features: relative error (root mean square of the difference over that of the exact values) of each
   tap on the first test video's object crops and frames, and of every stored feature file per stream.
4. The coresets: per bank, the share of the exact run's chosen rows (indices into each training video's
   patches) that the fast run chooses too, the greedy's near-ties (the gap between its two best candidates)
   and the largest change of a patch: why a choice flips.
5. Every AUROC (protocol, fixed weights, label-free; micro, macro, padded macro; each bank and fused
   stream) of exact and each fast precision, with the differences (beyond 0.005 flagged), beside a control:
   the exact features with random noise of the fast error's size.

``--quick``: 2 + 2 videos of 20 frames, clips of 5, batches 4 and 16 (about 3 minutes on 2 idle threads);
the default (3 + 3 videos of 60 frames, Avenue's clips of 10) about 10 minutes.
"""
import argparse
import contextlib
import dataclasses
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
    StepTimer,
    TimedBackbone,
    demo_data,
    fresh_work,
    official_computation,
    quiet,
    timed,
)

import Memorization.encoders.registry  # noqa: E402
from extra.config import DATASETS  # noqa: E402
from extra.datasets import labelled_test_videos, list_videos  # noqa: E402
from extra.device import default_device, device_description  # noqa: E402
from extra.errors import VPCError  # noqa: E402
from extra.store import open_clip_file, read_clip_file  # noqa: E402
from extra.workdir import OBJECT_BATCHES  # noqa: E402
from Memorization.banks.coreset import coreset_size, greedy_coreset_indices  # noqa: E402
from Memorization.banks.specs import STREAMS, specs_of, training_patches  # noqa: E402
from Memorization.encoders.contract import PRECISION_WORDS, compute_dtype  # noqa: E402
from Memorization.features import frame_major, frames_to_input  # noqa: E402
from extra.evaluation.harness import evaluate  # noqa: E402
from extra.evaluation.protocol import VIDEOPATCHCORE  # noqa: E402
from extra.evaluation.scores import make_video_scores  # noqa: E402
from Memorization.model import VideoFeatures, VideoPatchCore  # noqa: E402
from Memorization.pipeline import read_video_features, reused_backbone, run_memorization  # noqa: E402

load_backbone = Memorization.encoders.registry.load_backbone
COLUMNS = ("protocol", "fixed", "label_free")
METRICS = ("micro", "macro", "macro_padded")
GOAL = 0.005          # the largest AUROC difference the fast encoder may cost on the demo run
EXACT_FORM = ("exact", "folded BatchNorm, channels-last, float32 (the exact default)")


def relative_error(value, reference):
    value, reference = value.double().cpu(), reference.double().cpu()
    return (torch.linalg.vector_norm(value - reference) / torch.linalg.vector_norm(reference)).item()


# --- 1. the encoder ------------------------------------------------------------------------------------

def best_rates(calls, repeats):
    """{name: best images/s} of ``calls`` ({name: (function, images per call)}), interleaved so that a
    busy spell of a shared machine slows every candidate alike; one warm-up call each."""
    rates = dict.fromkeys(calls, 0.0)
    with torch.no_grad():
        for function, _ in calls.values():
            function()
        for _ in range(repeats):
            for name, (function, images) in calls.items():
                seconds, _ = timed(function)
                rates[name] = max(rates[name], images / seconds)
    return rates


def autocast(model, device, dtype):
    def call(images):
        with torch.autocast(device.type, dtype):
            return model(images)
    return call


def contiguous_copy(model):
    """The folded fast encoder computing in contiguous (not channels-last) memory."""
    import copy

    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    plain.folded = False           # its forward then leaves the input's memory layout alone
    return plain


def print_encoder(args, device, fast_precisions):
    with quiet():
        exact = load_backbone("RN101", device=device, random_weights=True)
        published = load_backbone("RN101", device=device, random_weights=True, form="published")
        fast = {p: load_backbone("RN101", device=device, random_weights=True, precision=p) for p in fast_precisions}
    size = exact.layout.input_size
    images = {batch: torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)).to(device)
              for batch in args.batches}
    print(f"## 1. The encoder (RN101, {size} x {size}, random weights), images/s\n")
    calls = {(p, batch): (lambda m=model, x=x: m(x), batch)
             for p, model in (("exact", exact), *fast.items()) for batch, x in images.items()}
    rates = best_rates(calls, args.repeats)
    print("| batch | exact | " + " | ".join(f"{p} | {p} / exact" for p in fast) + " |")
    print("|---|---|" + "---|---|" * len(fast))
    for batch in args.batches:
        print(f"| {batch} | {rates['exact', batch]:.2f} | " + " | ".join(
            f"{rates[p, batch]:.2f} | {rates[p, batch] / rates['exact', batch]:.2f}x" for p in fast) + " |")
    batch = args.form_batch
    x = images.get(batch, torch.randn(batch, 3, size, size).to(device))
    print(f"\nWays of computing each fast precision, batch {batch}; error: relative error of the taps (layer2, "
          f"layer3) against exact on these random images:\n")
    print("| precision | form | images/s | / exact | relative error (layer2, layer3) |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        reference = exact(x)
    rows = {EXACT_FORM: exact}
    for p, model in fast.items():
        dtype = compute_dtype(p, device)
        with quiet():
            cast_published = load_backbone("RN101", device=device, random_weights=True, form="published", precision=p)
        rows.update({(p, "autocast over the exact encoder"): autocast(exact, device, dtype),
                     (p, "autocast over the published layers"): autocast(published, device, dtype),
                     (p, "weights cast, published layers (BatchNorm in float32)"): cast_published,
                     (p, "weights cast, folded, contiguous memory"): contiguous_copy(model),
                     (p, "weights cast, folded, channels-last (--precision)"): model})
    rates = best_rates({key: (lambda m=model: m(x), batch) for key, model in rows.items()}, args.repeats)
    for (p, form), model in rows.items():
        with torch.no_grad():
            errors = ", ".join(f"{relative_error(tap, ref):.2e}" for tap, ref in zip(model(x), reference))
        print(f"| {p} | {form} | {rates[p, form]:.2f} | {rates[p, form] / rates[EXACT_FORM]:.2f}x | {errors} |")
    print()
    if args.compile:
        for p, model in fast.items():
            print_compile(p, model, x, reference, args)


def print_compile(precision, model, x, reference, args):
    """torch.compile (inductor, freezing) of the fast encoder: compile time for a first and a second batch
    shape, images/s, and when it pays."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    compiled = torch.compile(model)
    other = torch.cat([x, x[: max(1, x.shape[0] // 2)]])
    with torch.no_grad():
        first, _ = timed(lambda: compiled(x))
        second, _ = timed(lambda: compiled(other))
        taps = compiled(x)
    rates = best_rates({"eager": (lambda: model(x), x.shape[0]), "compiled": (lambda: compiled(x), x.shape[0]),
                        "compiled, second shape": (lambda: compiled(other), other.shape[0])}, args.repeats)
    saved = 1 / rates["eager"] - 1 / rates["compiled"]
    print(f"torch.compile of the {precision} encoder (inductor, freezing; the compile cache of earlier runs may "
          f"shorten it): first call {first:.1f} s, first call at a second batch shape {second:.1f} s; images/s "
          f"eager {rates['eager']:.2f}, compiled {rates['compiled']:.2f} (second shape "
          f"{rates['compiled, second shape']:.2f}); it pays after "
          + (f"{(first + second) / saved:,.0f} images" if saved > 0 else "never")
          + "; taps against eager " + ", ".join(f"{relative_error(a, b):.2e}" for a, b in zip(taps, model(x)))
          + ", against exact " + ", ".join(f"{relative_error(a, b):.2e}" for a, b in zip(taps, reference)) + "\n")
    torch._dynamo.reset()


# --- 2. the stage ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Stage:
    seconds: float
    encoder_images: int
    encoder_seconds: float
    results: dict
    run: object
    calibration_seconds: float = None
    errors: dict = None               # stored_errors against exact


def timed_stage(run, official=False):
    """The stage run once (the official computation's encoder, scoring and coreset when ``official``),
    its encoder timed."""
    timer, encoders = StepTimer(), []
    with quiet(), contextlib.ExitStack() as stack:
        if official:
            stack.enter_context(official_computation())
        load = Memorization.encoders.registry.load_backbone

        def timed_load(*args, **kwargs):
            encoders.append(TimedBackbone(load(*args, **kwargs), timer))
            return encoders[-1]

        stack.enter_context(mock.patch.object(Memorization.encoders.registry, "load_backbone", timed_load))
        seconds, results = timed(lambda: run_memorization(run))
    return Stage(seconds, sum(e.images for e in encoders), timer.own[ENCODER], results, run)


def with_calibration(stage):
    """The same run again with the label-free calibration: features and banks reused, the calibration made."""
    run = dataclasses.replace(stage.run, label_free=True)
    with quiet():
        seconds, results = timed(lambda: run_memorization(run))
    return dataclasses.replace(stage, results=results, calibration_seconds=seconds, run=run)


def print_stages(stages, args):
    official = stages["official"]
    print("## 2. The Memorization stage: official computation, exact, fast (same data, weights and threads)\n")
    print(f"{args.videos} training + {args.videos} test videos of {args.n_frames} frames ({args.width} x "
          f"{args.height}), clips of {args.consecutive}, coreset ratio {args.ratio}; CLIP RN101 with random "
          f"weights; no label-free calibration in the stage's seconds (it is timed apart, on the same files).\n")
    print("| run | stage (s) | encoder images | encoder images/s in the stage | encoder share | official / run "
          "| exact / run | then the label-free calibration (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, stage in stages.items():
        calibration = "-" if stage.calibration_seconds is None else f"{stage.calibration_seconds:.1f}"
        print(f"| {name} | {stage.seconds:.1f} | {stage.encoder_images} | "
              f"{stage.encoder_images / stage.encoder_seconds:.2f} | {stage.encoder_seconds / stage.seconds:.0%} | "
              f"{official.seconds / stage.seconds:.2f}x | {stages['exact'].seconds / stage.seconds:.2f}x | "
              f"{calibration} |")
    print()


# --- 3. the features --------------------------------------------------------------------------------------

def first_test_inputs(run):
    """The object crops (frame-major, at the encoder's size) and the frames of the first test video."""
    settings, d = run.context.settings, run.method.consecutive
    video = labelled_test_videos(settings, run.context.data_root, d)[0][0]
    with open_clip_file(run.work.object_batches("test", video.name), OBJECT_BATCHES) as opened:
        crops = [torch.as_tensor(batch) for batch in opened.clips() if batch.ndim == 5]
    crops = torch.nn.functional.interpolate(frame_major(torch.cat(crops)), size=(224, 224), mode="bilinear",
                                            align_corners=True) if crops else None
    frames = torch.cat([frames_to_input(frames) for _, frames in video.iter_clips(d)])
    return {"object crops": crops, "frames": frames}


def split_videos(run):
    settings, d = run.context.settings, run.method.consecutive
    return {"train": list_videos(settings, run.context.data_root, "train", d),
            "test": labelled_test_videos(settings, run.context.data_root, d)[0]}


def spread(features):
    """The features' deviations from their per-channel mean (channels: dim 1): what distances see."""
    return features - features.mean(dim=[dim for dim in range(features.ndim) if dim != 1], keepdim=True)


def stored_errors(exact_run, fast_run):
    """{(stream, split): (error relative to the exact values, error relative to their spread)} of every stored
    feature file of the fast run against the exact run's."""
    errors = {}
    for name, stream in STREAMS.items():
        for split, videos in split_videos(exact_run).items():
            fast, exact = (torch.cat([torch.from_numpy(a) for v in videos
                                      for a in read_clip_file(stream.path(r.work, r.method, split, v.name),
                                                              stream.kind)[0] if a.ndim > 1])
                           for r in (fast_run, exact_run))
            difference = torch.linalg.vector_norm((fast - exact).double())
            errors[name, split] = (relative_error(fast, exact),
                                   (difference / torch.linalg.vector_norm(spread(exact.double()))).item())
    return errors


def print_features(stages, fast_precisions, device):
    print("## 3. The features: relative error against exact\n")
    inputs = first_test_inputs(stages["exact"].run)
    with quiet():
        exact = load_backbone("RN101", device=device, random_weights=True)
        fast = {p: load_backbone("RN101", device=device, random_weights=True, precision=p) for p in fast_precisions}
    print("| precision | what | layer2 tap | layer3 tap |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for what, images in inputs.items():
            if images is None:
                continue
            reference = exact(images.to(device))
            for p, model in fast.items():
                errors = [relative_error(tap, ref) for tap, ref in zip(model(images.to(device)), reference)]
                print(f"| {p} | first test video's {what} ({images.shape[0]}) | {errors[0]:.2e} | {errors[1]:.2e} |")
    print("\n| precision | stored features | relative error | relative to their spread (per-channel deviations) |")
    print("|---|---|---|---|")
    for p in fast_precisions:
        stages[p].errors = stored_errors(stages["exact"].run, stages[p].run)
        for (name, split), (error, spread_error) in stages[p].errors.items():
            print(f"| {p} | {name} ({'lf' if name == 'local' else 'gf'}), {split} | {error:.2e} | {spread_error:.2e} |")
    print()


# --- 4. the coresets ------------------------------------------------------------------------------------------

def greedy_gaps(points, n_select):
    """Relative gap between the two largest nearest distances at each step of the greedy coreset (in float64,
    without projection): a gap smaller than the features' error lets a perturbation change the choice."""
    points, gaps = points.double(), []
    nearest = torch.linalg.vector_norm(points - points[0], dim=1)
    for _ in range(n_select - 1):
        top = torch.topk(nearest, min(2, len(nearest)))
        gaps.append(((top.values[0] - top.values[-1]) / top.values[0]).item())
        nearest = torch.minimum(nearest, torch.linalg.vector_norm(points - points[top.indices[0]], dim=1))
    return gaps


def coreset_overlap(exact_run, fast_run):
    """{bank: (rows both runs chose, rows chosen, smallest relative gap of any step of the exact greedy, smallest
    at a step the fast run takes otherwise (first of its video), largest change of a patch relative to the mean
    distance of its video's patches to the first one)} over the training videos' per-video coresets."""
    method = exact_run.method
    counts = {}
    for spec in specs_of(method.banks):
        stream, common, total, change = STREAMS[spec.stream], 0, 0, 0.0
        gap = flipped = float("inf")
        for video in split_videos(exact_run)["train"]:
            patches = [training_patches(spec, [torch.from_numpy(clip) for clip in read_clip_file(
                stream.path(run.work, run.method, "train", video.name), stream.kind)[0]], run.method)
                for run in (exact_run, fast_run)]
            n_select = coreset_size(method.ratios[spec.name], len(patches[0]))
            if not len(patches[0]) or method.ratios[spec.name] >= 1:
                common, total = common + len(patches[0]), total + len(patches[0])
                continue
            chosen = [greedy_coreset_indices(rows, n_select, method.random_projection, method.eps_coreset,
                                             method.seed).tolist() for rows in patches]
            common, total = common + len(set(chosen[0]) & set(chosen[1])), total + len(chosen[0])
            gaps = greedy_gaps(patches[0], len(chosen[0]))
            first = next((k for k, (a, b) in enumerate(zip(*chosen)) if a != b), None)
            gap, flipped = min([gap, *gaps]), flipped if first is None else min(flipped, gaps[first - 1])
            scale = torch.linalg.vector_norm(patches[0].double() - patches[0][0].double(), dim=1).mean()
            change = max(change, (torch.linalg.vector_norm((patches[1] - patches[0]).double(), dim=1).max()
                                  / scale).item())
        counts[spec.name] = (common, total, gap, flipped, change)
    return counts


def print_coresets(stages, fast_precisions):
    print("## 4. The coresets: rows of the exact run's per-video coresets that the fast run chooses too\n")
    print("Gap: between the two largest nearest distances at a step of the exact greedy coreset (float64), "
          "relative; the smallest of any step, and the smallest at a step the fast run takes otherwise (the first "
          "of its video: every later step follows). Change: of a patch, relative to the mean distance of its "
          "video's patches to the first one. A change larger than a gap can flip that step.\n")
    print("| precision | bank | rows in common / rows chosen | overlap | smallest gap | gap where it differs "
          "| largest change |")
    print("|---|---|---|---|---|---|---|")
    for p in fast_precisions:
        for bank, (common, total, gap, flipped, change) in coreset_overlap(stages["exact"].run,
                                                                          stages[p].run).items():
            gaps = " | ".join("-" if value == float("inf") else f"{value:.1e}" for value in (gap, flipped))
            print(f"| {p} | {bank} | {common} / {total} | {common / max(total, 1):.1%} | {gaps} | {change:.1e} |")
    print()


# --- 5. the AUROCs ------------------------------------------------------------------------------------------

def aurocs(results):
    """{(column, stream, metric): AUROC} of a run's results."""
    return {(column, stream, metric): values[metric] for column in COLUMNS if column in results
            for stream, values in results[column]["streams"].items() for metric in METRICS
            if values.get(metric) is not None}


def perturbed_aurocs(run, errors, seed=0):
    """AUROCs (protocol and fixed columns) of the exact run's features with Gaussian noise added to every clip,
    per stream ``errors[stream]`` times the training features' per-channel standard deviation (train and test
    alike; banks and scores made again): what a perturbation of the fast encoder's size does to this data's
    AUROCs when it has no structure."""
    generator = torch.Generator().manual_seed(seed)
    videos = split_videos(run)
    fields = reused_backbone(run, videos["test"])
    features = {split: [read_video_features(run, split, v.name, fields) for v in split_videos]
                for split, split_videos in videos.items()}
    deviation = {name: torch.cat([c for f in features["train"] for c in f.clips[name] if c.ndim > 1])
                 .transpose(0, 1).flatten(1).std(dim=1) for name in STREAMS}

    def noisy(clip, name):
        scale = errors[name] * deviation[name].view(1, -1, *[1] * (clip.ndim - 2))
        return clip if clip.ndim == 1 else clip + scale * torch.randn(clip.shape, generator=generator)

    perturbed = {split: [VideoFeatures({name: [noisy(c, name) for c in clips] for name, clips in f.clips.items()})
                         for f in split_features] for split, split_features in features.items()}
    with quiet():
        model = VideoPatchCore(run.method).fit(perturbed["train"], "cpu")
    per_bank = {spec.name: [] for spec in model.specs}
    for video_features in perturbed["test"]:
        for bank, frames in model.score_banks(video_features, "cpu").items():
            per_bank[bank].append(frames)
    test, labels = videos["test"], labelled_test_videos(run.context.settings, run.context.data_root,
                                                        run.method.consecutive)[1]
    scores = make_video_scores(per_bank, [labels[v.name] for v in test], model.streams, [v.name for v in test],
                               [v.first_frame for v in test])
    return aurocs(evaluate(scores, VIDEOPATCHCORE, run.fixed))


def print_aurocs(stages, fast_precisions):
    exact = aurocs(stages["exact"].results)
    fast = {p: aurocs(stages[p].results) for p in fast_precisions}
    control = {p: perturbed_aurocs(stages["exact"].run, {name: stages[p].errors[name, "train"][1] for name in STREAMS})
               for p in fast_precisions}
    print("## 5. AUROC, exact and fast (fractions; differences fast - exact; ! beyond "
          f"{GOAL})\n")
    print("Control: the exact features with random noise of the fast features' error relative to their spread "
          "(section 3, training features, per stream), banks and scores made again; no label-free column (its "
          "calibration runs the encoder). Where the control moves an AUROC as much, the data's AUROC is that "
          "sensitive to any perturbation of this size.\n")
    print("Official computation, protocol, total, micro: "
          f"{stages['official'].results['protocol']['total']['auroc']:.4f} "
          f"(exact: {stages['exact'].results['protocol']['total']['auroc']:.4f}).\n")
    print("| column | stream | metric | exact | "
          + " | ".join(f"{p} | difference | control of {p}'s size | difference" for p in fast) + " |")
    print("|---|---|---|---|" + "---|---|---|---|" * len(fast))
    worst = {(p, kind): (0.0, None) for p in fast for kind in ("fast", "control")}
    for key, value in exact.items():
        cells = []
        for p in fast:
            for kind, values in (("fast", fast[p]), ("control", control[p])):
                if key not in values:
                    cells.append("- | -")
                    continue
                difference = values[key] - value
                worst[p, kind] = max(worst[p, kind], (abs(difference), key), key=lambda item: item[0])
                cells.append(f"{values[key]:.4f} | {difference:+.4f}{' !' if abs(difference) > GOAL else ''}")
        print(f"| {key[0]} | {key[1]} | {key[2]} | {value:.4f} | " + " | ".join(cells) + " |")
    print()
    for (p, kind), (difference, key) in worst.items():
        print(f"{p}{'' if kind == 'fast' else ', control'}: largest AUROC difference {difference:.4f} "
              f"({', '.join(key) if key else '-'}); {'within' if difference <= GOAL else 'BEYOND'} {GOAL}.")
    print()


# --- the run ------------------------------------------------------------------------------------------------

def offered_precisions(text, device):
    """The fast precisions asked for that ``device`` offers (the others named, with the reason)."""
    offered = []
    for precision in (text or ("fp16,bf16" if device.type == "cuda" else "bf16")).split(","):
        try:
            compute_dtype(precision, device)
            offered.append(precision)
        except VPCError as error:
            print(f"skipped {precision}: {error}\n")
    if not offered:
        raise SystemExit("no fast precision is offered on this device: nothing to compare")
    return offered


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 + 2 videos of 20 frames, clips of 5, 2 batch sizes")
    parser.add_argument("--threads", type=int, default=2, help="torch (and OpenCV) threads")
    parser.add_argument("--precisions", default=None,
                        help="fast precisions, comma-separated (default: bf16 on a CPU, fp16,bf16 on CUDA)")
    parser.add_argument("--videos", type=int, default=None,
                        help="training videos, and as many test videos (3; --quick 2)")
    parser.add_argument("--n_frames", type=int, default=None, help="frames per generated video (60; --quick 20)")
    parser.add_argument("--consecutive", type=int, default=None, help="frames per clip (Avenue's 10; --quick 5)")
    parser.add_argument("--ratio", type=float, default=DATASETS["avenue"].coreset_ratio,
                        help="coreset ratio of the three banks (Avenue's)")
    parser.add_argument("--width", type=int, default=640, help="generated frame width (Avenue's)")
    parser.add_argument("--height", type=int, default=360, help="generated frame height (Avenue's)")
    parser.add_argument("--batches", default=None, help="encoder batch sizes (1,4,8,16,32; --quick 4,16)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per encoder candidate (5; --quick 2)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the fast encoder")
    args = parser.parse_args()
    args.videos = args.videos or (2 if args.quick else 3)
    args.n_frames = args.n_frames or (20 if args.quick else 60)
    args.consecutive = args.consecutive or (5 if args.quick else DATASETS["avenue"].consecutive)
    args.batches = [int(b) for b in (args.batches or ("4,16" if args.quick else "1,4,8,16,32")).split(",")]
    args.form_batch = 16 if 16 in args.batches else args.batches[-1]
    args.repeats = args.repeats or (2 if args.quick else 5)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(default_device())

    print(f"# Precision: {device_description(device)}; torch {torch.__version__}\n")
    fast_precisions = offered_precisions(args.precisions, device)
    print("Fast precisions: " + ", ".join(f"{p} ({PRECISION_WORDS[p]})" for p in fast_precisions) + "\n")
    print_encoder(args, device, fast_precisions)
    with tempfile.TemporaryDirectory(prefix="vpc_precision_") as folder:
        with quiet():
            run = demo_data(Path(folder), args)
        stages = {"official": timed_stage(fresh_work(run, "official"), official=True)}
        for precision in ("exact", *fast_precisions):
            started = time.perf_counter()
            copy = fresh_work(run, precision)
            stage = timed_stage(dataclasses.replace(copy, method=dataclasses.replace(run.method, precision=precision)))
            stages[precision] = with_calibration(stage)
            print(f"({precision}: {time.perf_counter() - started:.0f} s with its calibration)", file=sys.stderr)
        print_stages(stages, args)
        print_features(stages, fast_precisions, device)
        print_coresets(stages, fast_precisions)
        print_aurocs(stages, fast_precisions)


if __name__ == "__main__":
    main()
