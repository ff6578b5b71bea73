"""Sharded extraction on a local Ray of 1 and 2 workers against one process: seconds, speed-up, identity.

    python benchmarks/bench_ray.py [--n_videos 4] [--n_frames 16] [--clip_weights FILE]

Generates an Avenue-layout dataset in a temporary folder, then runs the extraction three times,
each into a working directory of its own: object detection (motion detector), the CLIP features of
every video and the memory banks (their per-video coresets), first in one process, then with a
local Ray of 1 and of 2 CPUs (--ray local --ray_cpus N: N videos at once). Each run loads its
encoder (in the Ray runs, each worker does); Ray's own start is timed apart. Each Ray run's files
are compared with the single process's (feature files but their recorded timing, everything else
byte for byte). The encoder is RN101 with random weights unless --clip_weights: timings do not
depend on the weights' values. Needs Ray: pip install -r requirements-ray.txt.
"""
import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from extra.cli import RunContext  # noqa: E402
from extra.config import DATASETS  # noqa: E402
from extra.datasets import list_videos  # noqa: E402
from extra.device import default_device, device_description  # noqa: E402
from extra.evaluation.fusion import FusionWeights  # noqa: E402
from extra.make_demo import make_demo  # noqa: E402
from extra.sharding import connect, ray_cluster  # noqa: E402
from Memorization.encoders.loader import load_backbone_for  # noqa: E402
from Memorization.features import backbone_record, extract_split_features  # noqa: E402
from Memorization.options import PUBLISHED_BANKS, MemorizationRun, MethodConfig  # noqa: E402
from Memorization.pipeline import fitted_model  # noqa: E402
from ObjectDetection.pipeline import DetectionOptions, run_object_detection  # noqa: E402
from tests.helpers import output_differences, stage_outputs  # noqa: E402


def extraction(run, backbone, fields):
    """Objects, features of both splits and the memory banks of ``run`` (on Ray when its context says so)."""
    context = run.context
    run_object_detection(context, DetectionOptions(detector="motion"))
    videos = {split: list_videos(context.settings, context.data_root, split, context.consecutive)
              for split in ("train", "test")}
    for split, split_videos in videos.items():
        extract_split_features(split_videos, split, run, backbone)
    fitted_model(run, videos["train"], fields, device=default_device()).save_bank_files(run.work, fields)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_videos", type=int, default=4, help="generated training videos (and half as many test videos)")
    parser.add_argument("--n_frames", type=int, default=16, help="frames per generated video")
    parser.add_argument("--consecutive", type=int, default=4, help="frames per clip")
    parser.add_argument("--clip_weights", default=None, help="CLIP weights file (default: random RN101 weights)")
    args = parser.parse_args()

    settings = DATASETS["avenue"]
    temporary = tempfile.TemporaryDirectory(prefix="vpc_bench_ray_")
    root = Path(temporary.name)
    make_demo(root / "data", "avenue", seed=0, n_train=args.n_videos, n_test=max(args.n_videos // 2, 1),
              n_frames=args.n_frames)
    context = RunContext(settings=settings, consecutive=args.consecutive, data_root=root / "data",
                         work_dir=root / "single")
    method = MethodConfig(settings.name, args.consecutive, settings.cnl_pool, settings.pool_for_sm, settings.power_n,
                          ratios=dict.fromkeys(PUBLISHED_BANKS, settings.coreset_ratio),
                          backbone=args.clip_weights or "RN101", random_weights=not args.clip_weights)
    single = MemorizationRun(context, method, FusionWeights.chosen(0.5, 0.5, 0))

    started = time.perf_counter()
    backbone = load_backbone_for(single, default_device())
    fields = backbone_record(backbone)
    extraction(single, backbone, fields)
    rows = [("one process", None, time.perf_counter() - started, None)]
    for workers in (1, 2):
        cluster = ray_cluster("local", workers)
        run = replace(single, context=replace(context, work_dir=root / f"ray{workers}", ray=cluster))
        started = time.perf_counter()
        ray = connect(cluster)
        ray_start = time.perf_counter() - started
        started = time.perf_counter()
        extraction(run, backbone, fields)
        seconds = time.perf_counter() - started
        ray.shutdown()
        rows.append((f"Ray, {workers} worker{'s' * (workers > 1)}", ray_start, seconds,
                     output_differences(context.work_dir, run.context.work_dir)))

    videos = len(list((root / "data" / "avenue").glob("*/frames/*")))
    print(f"\ndevice: {device_description(default_device())}, {torch.get_num_threads()} torch threads per process "
          f"(each Ray worker computes with as many, so its results are the one process's to the bit)")
    print(f"data: {videos} videos of {args.n_frames} frames, clips of {args.consecutive}; encoder: {backbone.description}; "
          f"{len(stage_outputs(context.work_dir))} output files per run\n")
    print("| run | Ray start (s) | extraction (s) | speed-up | identical to one process |")
    print("|---|---|---|---|---|")
    base = rows[0][2]
    for name, ray_start, seconds, differences in rows:
        start = "-" if ray_start is None else f"{ray_start:.1f}"
        same = "-" if differences is None else ("yes" if not differences else f"NO: {', '.join(differences[:3])}")
        print(f"| {name} | {start} | {seconds:.1f} | {base / seconds:.2f}x | {same} |")
    temporary.cleanup()


if __name__ == "__main__":
    main()
