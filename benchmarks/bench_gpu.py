"""Frames per second of the whole test-time pipeline on generated ShanghaiTech-shaped data, at the
coreset ratios of the paper's Table 6, beside the paper's figures (measured there on a GPU).

    python benchmarks/bench_gpu.py [--n_train 4] [--n_test 4] [--n_frames 120] [--threads N]

Generates ShanghaiTech-layout videos (856 x 480), detects objects with the motion detector (no
YOLOv5 weights here: the paper's detector is YOLOv5, so detection differs) and extracts the
features with CLIP RN101 taps (random weights; timings do not depend on the values) at each
precision the device offers (--precision exact, fp16, bf16; README, Speed): seconds per test frame.
The generated videos make small banks, so scoring is timed apart at ShanghaiTech's size: random
banks of the published shapes (ratio x 16,000,000 spatial and x 979,591 temporal rows of 64, ratio
x 274,515 high-level rows of 1536), scored with a sample of a full test set's patches (2,600,000
spatial, 159,183 temporal, 40,791 high-level for 40,791 frames), the time scaled to the whole set.
Test-time FPS = 1 / (detection + features + scoring, per test frame), a column per precision.
Runs on CUDA when present (the point of it), else on the CPU (use a small --scoring_sample).
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from measure import SHANGHAI_BANKS, SHANGHAI_TEST_FRAMES, timed  # noqa: E402

from extra.cli import RunContext  # noqa: E402
from extra.config import DATASETS  # noqa: E402
from extra.datasets import labelled_test_videos, list_videos  # noqa: E402
from extra.device import default_device, device_description  # noqa: E402
from extra.errors import VPCError  # noqa: E402
from extra.evaluation.fusion import FusionWeights  # noqa: E402
from extra.make_demo import make_demo  # noqa: E402
from Memorization.encoders.contract import compute_dtype  # noqa: E402
from Memorization.encoders.registry import load_backbone  # noqa: E402
from Memorization.features import extract_split_features  # noqa: E402
from Memorization.knn.exact import nearest_distances  # noqa: E402
from Memorization.options import PRECISIONS, PUBLISHED_BANKS, MemorizationRun, MethodConfig  # noqa: E402
from Memorization.paper.tables import RATIOS, TABLE6_FPS  # noqa: E402
from ObjectDetection.pipeline import DetectionOptions, run_object_detection  # noqa: E402


def scoring_seconds_per_frame(ratio, sample, device):
    """Seconds per ShanghaiTech test frame to score all three banks at ``ratio`` (random values)."""
    generator = torch.Generator(device=device).manual_seed(0)
    total = 0.0
    for _, width, train_rows, test_rows in SHANGHAI_BANKS.values():
        bank = torch.rand(int(ratio * train_rows), width, generator=generator, device=device)
        patches = torch.rand(max(1, int(sample * test_rows)), width, generator=generator, device=device)
        # The bank's preparation (centring, its float32 copy) is made once per bank and kept: paid
        # by a first call with one patch, so that only the search itself is scaled to the whole set.
        preparation, _ = timed(lambda: nearest_distances(patches[:1], bank))
        search, _ = timed(lambda: nearest_distances(patches, bank))
        total += preparation + search * test_rows / patches.shape[0]
    return total / SHANGHAI_TEST_FRAMES


def offered(precision, device):
    """Whether ``device`` offers ``precision`` (compute_dtype refuses it, in one line, where it would not gain)."""
    try:
        compute_dtype(precision, device)
        return True
    except VPCError as error:
        print(f"skipped --precision {precision}: {error}")
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_train", type=int, default=4, help="generated training videos")
    parser.add_argument("--n_test", type=int, default=4, help="generated test videos")
    parser.add_argument("--n_frames", type=int, default=120, help="frames per generated video")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--scoring_sample", type=float, default=0.1,
                        help="fraction of a ShanghaiTech test set's patches timed (0.1; on a CPU try 0.0005)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings, device = DATASETS["shanghai"], default_device()
    d = settings.consecutive
    with tempfile.TemporaryDirectory(prefix="vpc_gpu_") as folder:
        root = Path(folder)
        make_demo(root / "data", "shanghai", seed=0, n_train=args.n_train, n_test=args.n_test, n_frames=args.n_frames)
        context = RunContext(settings=settings, consecutive=d, data_root=root / "data", work_dir=root / "work")
        train = list_videos(settings, context.data_root, "train", d)
        test, _ = labelled_test_videos(settings, context.data_root, d)
        test_frames = sum(video.n_clips(d) * d for video in test)
        motion = dict(detector="motion")
        run_object_detection(context, DetectionOptions(test_od=False, **motion))
        detection, _ = timed(lambda: run_object_detection(context, DetectionOptions(train_od=False, **motion)))
        extraction, descriptions = {}, {}
        for precision in (p for p in PRECISIONS if offered(p, device)):    # each in feature files of its own
            method = MethodConfig(settings.name, d, settings.cnl_pool, settings.pool_for_sm, settings.power_n,
                                  ratios=dict.fromkeys(PUBLISHED_BANKS, settings.coreset_ratio), random_weights=True,
                                  precision=precision)
            run = MemorizationRun(context, method, FusionWeights.chosen(0.5, 0.5, 0), label_free=False)
            backbone = load_backbone("RN101", device=device, random_weights=True, precision=precision)
            extract_split_features(train, "train", run, backbone)      # warm-up, as the stage's training pass
            extraction[precision], _ = timed(lambda: extract_split_features(test, "test", run, backbone))
            descriptions[precision] = backbone.description
    per_frame = {precision: (detection + seconds) / test_frames for precision, seconds in extraction.items()}
    rows = [(ratio, scoring_seconds_per_frame(ratio, args.scoring_sample, device)) for ratio in RATIOS]
    print(f"\n# Test-time FPS, ShanghaiTech shapes: {device_description(device)}; torch {torch.__version__}\n")
    print(f"Generated: {args.n_train} training and {args.n_test} test videos of {args.n_frames} frames (856 x 480), "
          f"clips of {d}; test detection (motion) {detection:.2f} s for {test_frames} frames; features "
          + ", ".join(f"{p} {seconds:.2f} s ({test_frames / (detection + seconds):.1f} frames/s before scoring)"
                      for p, seconds in extraction.items())
          + ". Encoders: " + "; ".join(descriptions.values()) + ". Scoring: ShanghaiTech-sized random banks, "
          f"{args.scoring_sample:.2%} of a test set's patches timed.\n")
    print("| coreset ratio | spatial bank rows | scoring (ms / frame) | "
          + " | ".join(f"ours, {p}: FPS" for p in per_frame) + " | paper (Table 6): FPS | fastest / paper |")
    print("|---|---|---|" + "---|" * len(per_frame) + "---|---|")
    for ratio, scoring in rows:
        fps, paper = [1 / (seconds + scoring) for seconds in per_frame.values()], TABLE6_FPS["shanghai"][ratio]
        print(f"| {ratio:.0%} | {int(ratio * SHANGHAI_BANKS['spatial'][2]):,} | {scoring * 1e3:.2f} | "
              + " | ".join(f"{value:.1f}" for value in fps) + f" | {paper} | {max(fps) / paper:.2f} |")


if __name__ == "__main__":
    main()
