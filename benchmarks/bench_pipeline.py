"""Speed and memory of each stage on generated data, against the backbone's bare forward pass.

    python benchmarks/bench_pipeline.py [--n_videos 4] [--n_frames 80] [--detector motion]

Generates an Avenue-layout demo dataset in a temporary folder (or uses --data_root), runs every
stage through the library, and prints per stage: seconds, frames per second and peak memory
(process RSS sampled every 10 ms; on CUDA also the allocator's peak). Then it times the backbone
alone on the same number of 224 x 224 images in the same batches, and prints the ratio of the
end-to-end time to that bare forward time. Timings do not depend on the weights' values, so the
backbone runs with random weights unless --clip_weights is given.
"""
import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from measure import PeakMemory  # noqa: E402

from extra.cli import RunContext  # noqa: E402
from extra.config import DATASETS  # noqa: E402
from extra.datasets import labelled_test_videos, list_videos  # noqa: E402
from extra.device import default_device, device_description  # noqa: E402
from extra.evaluation.fusion import FusionWeights  # noqa: E402
from extra.evaluation.harness import evaluate  # noqa: E402
from extra.evaluation.protocol import VIDEOPATCHCORE  # noqa: E402
from extra.evaluation.scores import make_video_scores  # noqa: E402
from extra.make_demo import make_demo  # noqa: E402
from Memorization import features  # noqa: E402
from Memorization.encoders.registry import load_backbone  # noqa: E402
from Memorization.model import VideoPatchCore  # noqa: E402
from Memorization.options import PUBLISHED_BANKS, MemorizationRun, MethodConfig  # noqa: E402
from Memorization.pipeline import score_videos, training_features  # noqa: E402
from ObjectDetection.pipeline import DetectionOptions, run_object_detection  # noqa: E402


@contextmanager
def stage(name, frames, rows, memory):
    """Time a stage and record it as a row of the report."""
    row = {"stage": name, "frames": frames}
    with memory.measure(row):
        start = time.perf_counter()
        yield row
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        row["seconds"] = time.perf_counter() - start
    rows.append(row)


class RecordingBackbone(torch.nn.Module):
    """The backbone, remembering the batch size of every forward call (to replay them bare)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone, self.batches = backbone, []
        self.device, self.name, self.random_weights = backbone.device, backbone.name, backbone.random_weights
        self.identity, self.layout = backbone.identity, backbone.layout

    def forward(self, images):
        self.batches.append(images.shape[0])
        return self.backbone(images)


@torch.no_grad()
def bare_forward_seconds(backbone, batches, device):
    side = backbone.layout.input_size
    inputs = {size: torch.randn(size, 3, side, side, device=device)
              for size in set(batches)}
    backbone(inputs[batches[0]])                    # warm-up outside the timing
    start = time.perf_counter()
    for size in batches:
        backbone(inputs[size])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_root", default=None, help="an Avenue-layout data root (default: generate one)")
    parser.add_argument("--n_videos", type=int, default=4, help="generated training and test videos, each")
    parser.add_argument("--n_frames", type=int, default=80, help="frames per generated video")
    parser.add_argument("--detector", default="motion", help="motion | hog | yolov5 (needs weights)")
    parser.add_argument("--clip_weights", default=None, help="CLIP weights file (default: random weights)")
    parser.add_argument("--consecutive", type=int, default=None)
    args = parser.parse_args()

    settings = DATASETS["avenue"]
    d = args.consecutive or settings.consecutive
    device = default_device()
    temporary = tempfile.TemporaryDirectory(prefix="vpc_bench_")
    root = Path(temporary.name)
    data_root = Path(args.data_root) if args.data_root else root / "data"
    if not args.data_root:
        make_demo(data_root, "avenue", seed=0, n_train=args.n_videos, n_test=args.n_videos, n_frames=args.n_frames)
    context = RunContext(settings=settings, consecutive=d, data_root=data_root, work_dir=root / "work")
    train = list_videos(settings, data_root, "train", d)
    test, labels = labelled_test_videos(settings, data_root, d)
    n_train, n_test = (sum(v.n_clips(d) * d for v in videos) for videos in (train, test))
    method = MethodConfig(settings.name, d, settings.cnl_pool, settings.pool_for_sm, settings.power_n,
                          ratios=dict.fromkeys(PUBLISHED_BANKS, settings.coreset_ratio),
                          random_weights=not args.clip_weights)
    run = MemorizationRun(context, method, FusionWeights.chosen(0.5, 0.5, 0))
    memory, rows = PeakMemory(), []

    with stage(f"detection ({args.detector})", n_train + n_test, rows, memory):
        run_object_detection(context, DetectionOptions(detector=args.detector))
    backbone = load_backbone(args.clip_weights or "RN101", device=device, random_weights=not args.clip_weights)
    recording = RecordingBackbone(backbone)
    with stage("features (train + test)", n_train + n_test, rows, memory):
        for split, videos in (("train", train), ("test", test)):
            features.extract_split_features(videos, split, run, recording)
    fields = features.backbone_record(backbone)
    with stage("coreset (three banks)", n_train, rows, memory):
        model = VideoPatchCore(method).fit(training_features(run, train, fields), device)
    model.banks_on(device)
    with stage("scoring (test)", n_test, rows, memory):
        per_bank = score_videos(model, run, test, fields, device).per_bank
    with stage("evaluation (published protocol)", n_test, rows, memory):
        scores = make_video_scores(per_bank, [labels[v.name] for v in test], model.streams, [v.name for v in test])
        evaluate(scores, VIDEOPATCHCORE, FusionWeights(0.5, 0.5, 0.5, 0.5, 0))

    bare = bare_forward_seconds(backbone, recording.batches, device)
    total = sum(row["seconds"] for row in rows)
    print(f"\ndevice: {device_description(device)}; backbone: {backbone.description}")
    print(f"data: {len(train)} training videos ({n_train} frames), {len(test)} test videos ({n_test} frames), "
          f"clips of {d}\n")
    print("| stage | seconds | frames/s | peak RSS (MiB) |" + (" peak CUDA (MiB) |" if device == "cuda" else ""))
    print("|---|---|---|---|" + ("---|" if device == "cuda" else ""))
    for row in rows:
        cuda = f" {row['cuda_mib']:.0f} |" if "cuda_mib" in row else ""
        print(f"| {row['stage']} | {row['seconds']:.2f} | {row['frames'] / row['seconds']:.1f} | "
              f"{row['rss_mib']:.0f} |{cuda}")
    images = sum(recording.batches)
    print(f"\nbackbone bare forward: {images} images of 224 x 224 in {len(recording.batches)} batches, "
          f"{bare:.2f} s ({images / bare:.1f} images/s)")
    print(f"end-to-end time / bare backbone time: {total / bare:.2f} "
          f"(features stage alone: {rows[1]['seconds'] / bare:.2f})")
    temporary.cleanup()


if __name__ == "__main__":
    main()
