"""Memory banks of ShanghaiTech's size on this machine: coreset and scoring time, peak memory, and the
error of the faiss searches (README, Many machines).

    python benchmarks/bench_scale.py [--scale 0.02] [--coreset_videos 1] [--searches exact faiss-flat faiss-ivf]

Features are random, of the published settings' shapes (d = 4, coreset 25 %, c' = 64). Coresets: a
few training videos of the real per-video size are timed (the published order draws one coreset per
video) and the time is extrapolated to the 330 videos. Scoring: a bank and test patches of ``scale``
times the real counts, scored by each search; exact and faiss-flat time grows with patches x bank
rows (extrapolated by 1 / scale ** 2), faiss-ivf's with patches x sqrt(bank rows) (1 / scale ** 1.5).
The faiss searches' recall@1 and score change are measured as a run does (Memorization.knn.search).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from measure import SHANGHAI_BANKS, SHANGHAI_TRAIN_VIDEOS, PeakMemory  # noqa: E402

from Memorization.banks.coreset import subsample  # noqa: E402
from Memorization.banks.scores import object_scores  # noqa: E402
from Memorization.knn.search import describe, measure_search  # noqa: E402
from Memorization.options import SEARCHES  # noqa: E402

RATIO = 0.25
POWER = 2                      # ShanghaiTech's power n
OBJECTS_PER_CALL = 150         # about the objects of the 32 clips the pipeline scores per call


def coreset_seconds(rows_per_video, dim, videos, generator):
    """Seconds of one training video's coreset (the mean over ``videos`` random videos)."""
    started = time.perf_counter()
    for _ in range(videos):
        subsample(torch.randn(rows_per_video, dim, generator=generator), RATIO)
    return (time.perf_counter() - started) / videos


def score_seconds(patches, n_objects, bank, search):
    """Seconds to score every object, in the pipeline's calls of ``OBJECTS_PER_CALL`` objects."""
    rows = patches.shape[0] // n_objects
    started = time.perf_counter()
    for start in range(0, n_objects, OBJECTS_PER_CALL):
        count = min(OBJECTS_PER_CALL, n_objects - start)
        object_scores(patches[start * rows:(start + count) * rows], count, bank, POWER, search=search)
    return time.perf_counter() - started


def full_scale(seconds, search, scale):
    return seconds / scale ** (1.5 if search == "faiss-ivf" else 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.02, help="fraction of the bank and test rows (default 0.02)")
    parser.add_argument("--coreset_videos", type=int, default=1, help="training videos timed per bank (default 1)")
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=SEARCHES)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    memory = PeakMemory()
    print(f"torch threads {torch.get_num_threads()}, scale {args.scale}, coreset ratio {RATIO}, power {POWER}")
    for name, (rows, dim, train_rows, test_rows) in SHANGHAI_BANKS.items():
        per_video = train_rows // SHANGHAI_TRAIN_VIDEOS
        measured = {}
        with memory.measure(measured):
            seconds = coreset_seconds(per_video, dim, args.coreset_videos, generator)
        print(f"{name}: coreset of a training video of {per_video} x {dim}: {seconds:.1f} s, peak RSS "
              f"{measured['rss_mib']:.0f} MiB; {SHANGHAI_TRAIN_VIDEOS} videos (extrapolated from "
              f"{args.coreset_videos}): {seconds * SHANGHAI_TRAIN_VIDEOS / 60:.1f} min; full bank "
              f"{int(train_rows * RATIO):,} x {dim} "
              f"({train_rows * RATIO * dim * 4 / 2 ** 30:.2f} GiB float32)", flush=True)
        bank = torch.randn(int(train_rows * RATIO * args.scale), dim, generator=generator)
        n_objects = int(test_rows * args.scale) // rows
        patches = torch.randn(n_objects * rows, dim, generator=generator)
        for search in args.searches:
            measured = {}
            with memory.measure(measured):
                seconds = score_seconds(patches, n_objects, bank, search)
            line = (f"{name}: {describe(search, len(bank))} scoring of {len(patches):,} test patches against "
                    f"{len(bank):,} bank rows: {seconds:.1f} s, peak RSS {measured['rss_mib']:.0f} MiB; full scale "
                    f"(extrapolated): {full_scale(seconds, search, args.scale) / 60:.1f} min")
            if search != "exact":
                checked = min(2000 // rows, n_objects)       # objects of the error sample, as a run's
                error = measure_search(patches[:checked * rows], checked, bank, search, POWER)
                line += f"; recall@1 {error.recall:.4f}, max relative score change {error.score_change:.3g}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
