"""Live scoring speed: per-clip latency and frames per second of score.py's path, on generated video.

    python benchmarks/bench_live.py [--n_frames 120] [--preset avenue] [--detector motion] [--clip_weights FILE]

Generates normal videos and a test video (extra.make_demo, at the preset's frame size), fits a model
on the normal ones (fit.py's library path, the label-free calibration included), then scores the
test video clip by clip as score.py does, unpaced (as fast as frames can be read) and paced at the
video's frame rate as a live source. Prints the device, the fit time, and per mode: frames per
second, the latency of each clip from its last frame to its result (mean, median, 95th percentile,
max; the motion detector holds its first clips until its warm-up frames have come), and the ratio
of the scoring rate to the video's frame rate. Timings do not depend on the weights' values, so the
encoder has random weights unless --clip_weights is given.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from extra.cli import RunContext  # noqa: E402
from extra.config import PRESETS  # noqa: E402
from extra.device import default_device, device_description  # noqa: E402
from extra.evaluation.fusion import FusionWeights  # noqa: E402
from extra.make_demo import make_demo  # noqa: E402
from extra.sources import ClipReader, footage_videos  # noqa: E402
from Memorization.encoders.loader import load_backbone_for  # noqa: E402
from Memorization.footage.fit import fit_footage  # noqa: E402
from Memorization.footage.live import FootageScorer  # noqa: E402
from Memorization.options import PUBLISHED_BANKS, MemorizationRun, MethodConfig  # noqa: E402


def latency_line(mode, latencies, frames, seconds, fps):
    ms = 1000 * np.asarray(latencies)
    return (f"| {mode} | {frames / seconds:.1f} | {ms.mean():.0f} | {np.median(ms):.0f} | "
            f"{np.percentile(ms, 95):.0f} | {ms.max():.0f} | {frames / seconds / fps:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="avenue", choices=PRESETS)
    parser.add_argument("--n_frames", type=int, default=120, help="frames per generated video")
    parser.add_argument("--n_train", type=int, default=2, help="normal videos to fit on")
    parser.add_argument("--detector", default="motion", help="motion | hog | yolov5 (needs weights)")
    parser.add_argument("--clip_weights", default=None, help="CLIP weights file (default: random RN101)")
    args = parser.parse_args()

    settings = PRESETS[args.preset]
    device = default_device()
    with tempfile.TemporaryDirectory(prefix="vpc_live_") as tmp:
        root = Path(tmp)
        data = make_demo(root / "data", "avenue" if args.preset == "general" else args.preset, seed=0,
                         n_train=args.n_train, n_test=1, n_frames=args.n_frames, width=settings.max_w,
                         height=settings.max_h, as_video_files=True)
        method = MethodConfig(args.preset, settings.consecutive, settings.cnl_pool, settings.pool_for_sm,
                              settings.power_n, ratios=dict.fromkeys(PUBLISHED_BANKS, settings.coreset_ratio),
                              backbone=args.clip_weights or "RN101", random_weights=not args.clip_weights)
        run = MemorizationRun(RunContext(settings, settings.consecutive, None, root / "work"), method,
                              FusionWeights.chosen(0.5, 0.5, 0))
        backbone = load_backbone_for(run, device)
        started = time.perf_counter()
        model = fit_footage(footage_videos([data / settings.train_dir]), run, args.detector, backbone, device)
        fit_seconds = time.perf_counter() - started
        (test,) = footage_videos([data / settings.test_dir])
        scorer = FootageScorer(model, args.detector, backbone, device)
        rows = []
        for mode, live in (("unpaced", False), ("live (paced)", True)):
            reader = ClipReader(test.source, method.consecutive, live=live)
            started = time.perf_counter()
            latencies = [result.seconds for result in scorer.score(reader)]
            rows.append(latency_line(mode, latencies, reader.frames, time.perf_counter() - started, reader.fps))
    print(f"\ndevice: {device_description(device)}; backbone: {backbone.description}; detector: {args.detector}")
    print(f"data: {args.n_train} normal videos and 1 test video of {args.n_frames} frames "
          f"({settings.max_w} x {settings.max_h}), clips of {settings.consecutive}; fit (objects, features, banks, "
          f"calibration): {fit_seconds:.1f} s\n")
    print("| mode | frames/s | latency mean (ms) | median | 95th pct | max | x real time |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))

if __name__ == "__main__":
    main()
