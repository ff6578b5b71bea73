"""MNAD's training and inference speed: frames per second of ``train_step`` and of ``score_window`` for
both variants at the published size, with peak memory, on the CPU or on CUDA.

    python benchmarks/bench_mnad.py [--device cpu|cuda|auto] [--methods pred,recon] [--h 256] [--w 256]
                                    [--batch_size 4] [--steps 20] [--warmup 3] [--threads N] [--seed 0]

For each variant (``pred``: windows of 5 frames, 12 input channels, the 5th frame predicted; ``recon``:
one frame of 3 channels, reconstructed), a model with the official layers (MNAD/model.py), 10 memory items
(memory.init_items) and Adam at the published learning rate:

- training: ``--steps`` calls of ``train_step`` on one batch of ``--batch_size`` random windows in [-1, 1]
  (already on the device: no reading, no host-to-device copy) with the published loss weights
  (MNAD/options.py METHOD_DEFAULTS; reconstruction with its official swap), after ``--warmup`` untimed
  steps; a training frame is one window.
- inference: ``--steps`` calls of ``score_window`` on one window at a time in eval mode, the published
  ``--th`` gating the test-time memory update, the items carried from call to call, after ``--warmup``.

The table gives frames/s, milliseconds per frame, seconds per 10,000 windows, and for training the hours
of 60 epochs (the published count) of 10,000 windows each: the repository records no dataset's frame
count, so scale it by your training set's windows / 10,000. Peak resident memory (sampled) and, on CUDA,
the peak of allocated CUDA memory are measured per phase (measure.PeakMemory); RSS is the whole
process's (Python, torch and the model included), not the phase's increment.
On CUDA the timer synchronises (measure.timed), and both step functions read a loss or score back to the
host every call anyway.

At the defaults on 2 CPU threads a training step of 4 windows takes 10 to 15 s and a test window 0.5
to 2 s: ``--steps 3 --warmup 1`` takes about 2 minutes there. ``--device auto`` is CUDA when present.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from measure import PeakMemory, timed  # noqa: E402

from extra.device import default_device, device_description  # noqa: E402
from MNAD import memory  # noqa: E402
from MNAD.model import MNAD, optimizer_and_scheduler, score_window, train_step  # noqa: E402
from MNAD.options import FEATURE_DIM, METHOD_DEFAULTS, METHODS, SHARED_DEFAULTS  # noqa: E402

WINDOWS_PER_ESTIMATE = 10_000


def random_windows(method, batch, h, w, device, generator):
    """``batch`` random windows (batch, 3 t, h, w) in [-1, 1] on ``device``, t the method's published length."""
    channels = 3 * METHOD_DEFAULTS[method]["t_length"]
    return (torch.rand((batch, channels, h, w), generator=generator) * 2 - 1).to(device)


def build(method, args, device):
    """The model (weights seeded), its memory items and Adam with the cosine schedule, on ``device``."""
    torch.manual_seed(args.seed)
    model = MNAD(method, msize=SHARED_DEFAULTS["msize"]).to(device)
    items = memory.init_items(SHARED_DEFAULTS["msize"], FEATURE_DIM, seed=args.seed).to(device)
    optimizer, _ = optimizer_and_scheduler(model, lr=SHARED_DEFAULTS["lr"], epochs=SHARED_DEFAULTS["epochs"])
    return model, items, optimizer


def measure_training(model, items, optimizer, window, args):
    """(seconds of ``args.steps`` timed steps, peak memory dict, items after them)."""
    settings, peak = METHOD_DEFAULTS[model.method], {}
    swap = model.method == "recon"         # the official reconstruction training (MNADConfig.swap's default)

    def steps(count, items):
        for _ in range(count):
            items, _ = train_step(model, optimizer, window, items, settings["loss_compact"],
                                  settings["loss_separate"], swap=swap)
        return items

    model.train()
    with PeakMemory().measure(peak):
        items = steps(args.warmup, items)
        seconds, items = timed(lambda: steps(args.steps, items))
    return seconds, peak, items


def measure_inference(model, items, window, args):
    """(seconds of ``args.steps`` timed windows scored one at a time, peak memory dict, updates made)."""
    threshold, peak, updates = METHOD_DEFAULTS[model.method]["th"], {}, [0]
    model.eval()

    def scores(count, items):
        for _ in range(count):
            frame = score_window(model, window, items, threshold)
            items, updates[0] = frame.items, updates[0] + frame.updated
        return items

    with PeakMemory().measure(peak):
        items = scores(args.warmup, items)
        seconds, _ = timed(lambda: scores(args.steps, items))
    return seconds, peak, updates[0]


def run_method(method, args, device):
    """Rows of the table for ``method``: training, then inference."""
    generator = torch.Generator().manual_seed(args.seed)
    model, items, optimizer = build(method, args, device)
    batch = random_windows(method, args.batch_size, args.h, args.w, device, generator)
    train_seconds, train_peak, items = measure_training(model, items, optimizer, batch, args)
    optimizer.zero_grad(set_to_none=True)
    one = random_windows(method, 1, args.h, args.w, device, generator)
    test_seconds, test_peak, updates = measure_inference(model, items, one, args)
    channels = model.encoder.moduleConv1[0].in_channels
    shape = f"{channels} x {args.h} x {args.w}"
    return [
        {"method": method, "phase": "training", "input": shape, "batch": args.batch_size,
         "frames": args.steps * args.batch_size, "seconds": train_seconds, **train_peak},
        {"method": method, "phase": "inference", "input": shape, "batch": 1, "frames": args.steps,
         "seconds": test_seconds, "updates": updates, **test_peak},
    ]


def fps(row):
    return row["frames"] / row["seconds"]


def print_table(rows, cuda):
    print("| variant | phase | input (c x H x W) | batch | frames timed | seconds | frames/s | ms/frame | "
          f"s per {WINDOWS_PER_ESTIMATE:,} windows | h per 60 epochs of {WINDOWS_PER_ESTIMATE:,} | peak RSS MiB |"
          + (" CUDA peak MiB |" if cuda else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if cuda else ""))
    for row in rows:
        rate = fps(row)
        per_estimate = WINDOWS_PER_ESTIMATE / rate
        epochs = (f"{per_estimate * SHARED_DEFAULTS['epochs'] / 3600:.2f}" if row["phase"] == "training" else "-")
        print(f"| {row['method']} | {row['phase']} | {row['input']} | {row['batch']} | {row['frames']} | "
              f"{row['seconds']:.3f} | {rate:.2f} | {1000 / rate:.1f} | {per_estimate:.1f} | {epochs} | "
              f"{row['rss_mib']:.0f} |" + (f" {row.get('cuda_mib', 0):.0f} |" if cuda else ""))


def print_ratios(rows):
    """Ratios of figures measured in this run: inference over training per variant, recon over pred."""
    rate = {(row["method"], row["phase"]): fps(row) for row in rows}
    print()
    for method in dict.fromkeys(row["method"] for row in rows):
        print(f"- {method}: inference / training frames/s = {rate[method, 'inference'] / rate[method, 'training']:.2f}")
    if all(method in {m for m, _ in rate} for method in METHODS):
        for phase in ("training", "inference"):
            print(f"- {phase}: recon / pred frames/s = {rate['recon', phase] / rate['pred', phase]:.2f}")
    for row in rows:
        if row["phase"] == "inference":
            print(f"- {row['method']}: {row['updates']} of {row['frames']} timed windows updated the memory "
                  f"(point score below --th {METHOD_DEFAULTS[row['method']]['th']})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"),
                        help="where to run (auto: CUDA when present, else the CPU)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated variants to measure (default {','.join(METHODS)})")
    parser.add_argument("--h", type=int, default=SHARED_DEFAULTS["h"],
                        help=f"frame height, a multiple of 8 (default {SHARED_DEFAULTS['h']}, published)")
    parser.add_argument("--w", type=int, default=SHARED_DEFAULTS["w"],
                        help=f"frame width, a multiple of 8 (default {SHARED_DEFAULTS['w']}, published)")
    parser.add_argument("--batch_size", type=int, default=SHARED_DEFAULTS["batch_size"],
                        help=f"training windows per step (default {SHARED_DEFAULTS['batch_size']}, published)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps, and timed test windows")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (and windows) before the timed ones")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=SHARED_DEFAULTS["seed"], help="weights, items and windows")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: use {', '.join(METHODS)}, not {','.join(unknown) or 'nothing'}")
    if args.h < 8 or args.w < 8 or args.h % 8 or args.w % 8:
        parser.error(f"--h and --w must be multiples of 8, got {args.h} x {args.w}")
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--steps and --batch_size must be at least 1, --warmup at least 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device() if args.device == "auto" else args.device
    cuda = torch.device(device).type == "cuda"
    print(f"# MNAD speed: {device_description(device)}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads\n")
    print(f"Published settings: {args.h} x {args.w}, training batch {args.batch_size}, "
          f"{SHARED_DEFAULTS['msize']} memory items, Adam lr {SHARED_DEFAULTS['lr']}; loss weights and --th per "
          f"variant: " + "; ".join(f"{m} {METHOD_DEFAULTS[m]['loss_compact']}/{METHOD_DEFAULTS[m]['loss_separate']}"
                                   f", th {METHOD_DEFAULTS[m]['th']}" for m in args.methods)
          + f". {args.warmup} warm-up and {args.steps} timed steps per phase; a frame = one window.\n")
    rows = [row for method in args.methods for row in run_method(method, args, device)]
    print_table(rows, cuda)
    print_ratios(rows)
    return rows


if __name__ == "__main__":
    main()
