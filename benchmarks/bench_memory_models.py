"""The memory models' training and inference speed: frames per second of MNAD's ``train_step`` and
``score_window`` (both variants) and of the dual-memory autoencoder's ``train_step`` and ``clip_psnr``, at
the published sizes, with peak memory, on the CPU or on CUDA.

    python benchmarks/bench_memory_models.py [--device cpu|cuda|auto] [--methods pred,recon,dual_memory]
        [--h 256] [--w 256] [--batch_size N] [--pseudo_clips 0] [--steps 20] [--warmup 3] [--threads N] [--seed 0]

Each variant is a model with the official layers, seeded weights and its published optimiser:

- ``pred`` and ``recon`` (MNAD/model.py): windows of 5 frames (12 input channels, the 5th frame predicted)
  or of one frame (3 channels, reconstructed), random in [-1, 1]; 10 memory items (memory.init_items),
  Adam at the published learning rate, the published loss weights (MNAD/options.py METHOD_DEFAULTS;
  reconstruction with its official swap); a training batch of 4 windows; inference by ``score_window``
  with the published ``--th`` gating the test-time memory update, the items carried from call to call.
  A frame (trained or scored) is one window.
- ``dual_memory`` (DualMemory/model.py): clips of 16 frames (3 x 16 x H x W), random standard normal
  values (the frames are standardised, SPEC 2); ``DualMemoryAE`` with 2000 slots per memory, Adam at the
  official learning rate (``official_optimizer``; the learning rate does not change the speed), the
  official step (``train_step``: the whole batch through the last clip's memory, run once per clip as
  train.py does, the summed loss); a training batch of 2 clips, none pseudo-anomalous unless
  ``--pseudo_clips K`` flags the batch's last K (the official default probability is 0); inference by
  ``clip_psnr`` on one clip at a time in eval mode (its 9th frame scored). A training frame is one clip
  of 16 frames, and a frame scored is one clip.

Training: ``--steps`` calls of the training step on one batch of ``--batch_size`` random inputs (default:
each variant's published batch; already on the device: no reading, no host-to-device copy), after
``--warmup`` untimed steps. Inference: ``--steps`` inputs scored one at a time in eval mode, after
``--warmup``. One loop measures every variant; what differs between them is a ``Variant`` (VARIANTS).

The table gives frames/s, milliseconds per frame, seconds per 10,000 inputs, and for training the hours
of the published epoch count (60 for MNAD, 40 for the dual-memory model on datasets other than ped2) of
10,000 inputs each: scale it by your training set's windows (or clips) / 10,000. Peak resident memory
(sampled) and, on CUDA, the peak of allocated CUDA memory are measured per phase (measure.PeakMemory); RSS
is the whole process's (Python, torch and the models measured before included), not the phase's increment.
On CUDA the timer synchronises (measure.timed), and every step function reads a loss or score back to
the host every call anyway.

At the defaults on 2 CPU threads an MNAD training step of 4 windows takes 10 to 15 s and a test window
0.5 to 2 s; a dual-memory training step of 2 clips about 40 s (5.4 GiB peak RSS) and a test clip about
5 s: ``--methods dual_memory --steps 2 --warmup 1`` takes about 3 minutes there. ``--device auto`` is CUDA
when present.
"""
import argparse
import sys
from pathlib import Path
from typing import Callable, NamedTuple, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from measure import PeakMemory, timed  # noqa: E402

from DualMemory import model as dual  # noqa: E402
from DualMemory.options import CLIP_LENGTH, SCORED_FRAME  # noqa: E402
from DualMemory.options import DEFAULTS as DUAL_DEFAULTS  # noqa: E402
from extra.device import default_device, device_description  # noqa: E402
from MNAD import memory  # noqa: E402
from MNAD import model as mnad  # noqa: E402
from MNAD.options import FEATURE_DIM, METHOD_DEFAULTS, SHARED_DEFAULTS  # noqa: E402

INPUTS_PER_ESTIMATE = 10_000


class Variant(NamedTuple):
    """What differs between the measured models. ``state`` is what the steps carry from call to call
    (MNAD's memory items; None for the dual-memory model)."""

    shape: Callable             # (h, w) -> one input's shape, without the batch axis
    model_input: Callable       # (h, w) -> what the model reads of it (the table's input column)
    draw: Callable              # (shape, generator) -> a random CPU tensor of that shape
    batch_size: int             # the published training batch
    epochs: int                 # the published epoch count
    make_model: Callable        # () -> the model (the caller seeds torch first)
    make_state: Callable        # (seed, device) -> the initial state
    make_optimizer: Callable    # model -> the optimiser
    train: Callable             # (model, optimizer, batch, state, args) -> state, after one training step
    score: Callable             # (model, one input, state) -> (state, whether the memory was updated)
    settings: str               # the published settings, for the printed notes
    frame: str                  # what a frame is
    update_rule: Optional[str] = None     # when a scored input updates the memory (None: never)


def uniform(shape, generator):
    return torch.rand(shape, generator=generator) * 2 - 1


def standard_normal(shape, generator):
    return torch.randn(shape, generator=generator)


def mnad_variant(method):
    settings = METHOD_DEFAULTS[method]

    def train(model, optimizer, batch, items, args):
        items, _ = mnad.train_step(model, optimizer, batch, items, settings["loss_compact"], settings["loss_separate"],
                                   swap=method == "recon")     # the official reconstruction training
        return items

    def score(model, window, items):
        frame = mnad.score_window(model, window, items, settings["th"])
        return frame.items, frame.updated

    return Variant(
        shape=lambda h, w: (3 * settings["t_length"], h, w), draw=uniform,
        model_input=lambda h, w: (3 * (settings["t_length"] - 1 if method == "pred" else 1), h, w),  # split_window
        batch_size=SHARED_DEFAULTS["batch_size"], epochs=SHARED_DEFAULTS["epochs"],
        make_model=lambda: mnad.MNAD(method, msize=SHARED_DEFAULTS["msize"]),
        make_state=lambda seed, device: memory.init_items(SHARED_DEFAULTS["msize"], FEATURE_DIM, seed=seed).to(device),
        make_optimizer=lambda model: mnad.optimizer_and_scheduler(model, lr=SHARED_DEFAULTS["lr"],
                                                                  epochs=SHARED_DEFAULTS["epochs"])[0],
        train=train, score=score,
        settings=f"{SHARED_DEFAULTS['msize']} memory items, Adam lr {SHARED_DEFAULTS['lr']}, loss weights "
                 f"{settings['loss_compact']}/{settings['loss_separate']}, th {settings['th']}",
        frame="one window", update_rule=f"point score below --th {settings['th']}")


def dual_train(model, optimizer, batch, state, args):
    count = batch.shape[0]
    pseudo = [index >= count - args.pseudo_clips for index in range(count)]
    dual.train_step(model, optimizer, batch, pseudo, DUAL_DEFAULTS["loss_m_weight"])   # the official switches
    return state


def dual_score(model, clip, state):
    dual.clip_psnr(model, clip)
    return state, False


VARIANTS = {
    "pred": mnad_variant("pred"),
    "recon": mnad_variant("recon"),
    "dual_memory": Variant(
        shape=lambda h, w: (3, CLIP_LENGTH, h, w), draw=standard_normal,
        model_input=lambda h, w: (3, CLIP_LENGTH, h, w),
        batch_size=DUAL_DEFAULTS["batch_size"], epochs=DUAL_DEFAULTS["epochs"],
        make_model=lambda: dual.DualMemoryAE(num_in_ch=3, mem_dim=DUAL_DEFAULTS["mem_dim"],
                                             shrink_thres=DUAL_DEFAULTS["shrink_thres"]),
        make_state=lambda seed, device: None,
        make_optimizer=lambda model: dual.official_optimizer(model, DUAL_DEFAULTS["lr"]),
        train=dual_train, score=dual_score,
        settings=f"{DUAL_DEFAULTS['mem_dim']} slots per memory, Adam lr {DUAL_DEFAULTS['lr']}, entropy weight "
                 f"{DUAL_DEFAULTS['loss_m_weight']}, clips of {CLIP_LENGTH} frames (frame {SCORED_FRAME + 1} scored)",
        frame=f"one clip of {CLIP_LENGTH} frames"),
}
METHODS = tuple(VARIANTS)


def measure(step, state, args):
    """(seconds of ``args.steps`` timed calls of ``step(state) -> state`` after ``args.warmup`` untimed ones,
    peak memory dict, the state after them)."""
    peak = {}

    def steps(count, state):
        for _ in range(count):
            state = step(state)
        return state

    with PeakMemory().measure(peak):
        state = steps(args.warmup, state)
        seconds, state = timed(lambda: steps(args.steps, state))
    return seconds, peak, state


def run_method(method, args, device):
    """Rows of the table for ``method``: training, then inference."""
    variant = VARIANTS[method]
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)                    # the weights
    model = variant.make_model().to(device)
    state = variant.make_state(args.seed, device)
    optimizer = variant.make_optimizer(model)
    shape = variant.shape(args.h, args.w)
    batch_size = args.batch_size or variant.batch_size
    batch = variant.draw((batch_size, *shape), generator).to(device)

    model.train()
    train_seconds, train_peak, state = measure(lambda s: variant.train(model, optimizer, batch, s, args), state, args)
    optimizer.zero_grad(set_to_none=True)

    one, updates = variant.draw((1, *shape), generator).to(device), [0]

    def score(state):
        state, updated = variant.score(model, one, state)
        updates[0] += bool(updated)
        return state

    model.eval()
    test_seconds, test_peak, _ = measure(score, state, args)
    size = " x ".join(map(str, variant.model_input(args.h, args.w)))
    return [
        {"method": method, "phase": "training", "input": size, "batch": batch_size,
         "frames": args.steps * batch_size, "seconds": train_seconds, **train_peak},
        {"method": method, "phase": "inference", "input": size, "batch": 1, "frames": args.steps,
         "seconds": test_seconds, "updates": updates[0], **test_peak},
    ]


def fps(row):
    return row["frames"] / row["seconds"]


def print_table(rows, cuda):
    print("| variant | phase | input (c x H x W; c x T x H x W) | batch | frames timed | seconds | frames/s | "
          f"ms/frame | s per {INPUTS_PER_ESTIMATE:,} inputs | h per published epochs of {INPUTS_PER_ESTIMATE:,} | "
          "peak RSS MiB |" + (" CUDA peak MiB |" if cuda else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if cuda else ""))
    for row in rows:
        rate = fps(row)
        per_estimate = INPUTS_PER_ESTIMATE / rate
        epochs = VARIANTS[row["method"]].epochs
        hours = f"{per_estimate * epochs / 3600:.2f}" if row["phase"] == "training" else "-"
        print(f"| {row['method']} | {row['phase']} | {row['input']} | {row['batch']} | {row['frames']} | "
              f"{row['seconds']:.3f} | {rate:.2f} | {1000 / rate:.1f} | {per_estimate:.1f} | {hours} | "
              f"{row['rss_mib']:.0f} |" + (f" {row.get('cuda_mib', 0):.0f} |" if cuda else ""))


def print_ratios(rows):
    """Ratios of figures measured in this run: inference over training per variant, recon over pred."""
    rate = {(row["method"], row["phase"]): fps(row) for row in rows}
    print()
    for method in dict.fromkeys(row["method"] for row in rows):
        print(f"- {method}: inference / training frames/s = {rate[method, 'inference'] / rate[method, 'training']:.2f}")
    if {"pred", "recon"} <= {m for m, _ in rate}:
        for phase in ("training", "inference"):
            print(f"- {phase}: recon / pred frames/s = {rate['recon', phase] / rate['pred', phase]:.2f}")
    for row in rows:
        rule = VARIANTS[row["method"]].update_rule
        if row["phase"] == "inference" and rule:
            print(f"- {row['method']}: {row['updates']} of {row['frames']} timed windows updated the memory ({rule})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"),
                        help="where to run (auto: CUDA when present, else the CPU)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated variants to measure (default {','.join(METHODS)})")
    parser.add_argument("--h", type=int, default=SHARED_DEFAULTS["h"],
                        help=f"frame height, a multiple of 8 (default {SHARED_DEFAULTS['h']}, published for all)")
    parser.add_argument("--w", type=int, default=SHARED_DEFAULTS["w"],
                        help=f"frame width, a multiple of 8 (default {SHARED_DEFAULTS['w']}, published for all)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="training inputs per step for every variant (default: each one's published batch, "
                             + ", ".join(f"{m} {v.batch_size}" for m, v in VARIANTS.items()) + ")")
    parser.add_argument("--pseudo_clips", type=int, default=0,
                        help="dual_memory: the last K clips of the training batch flagged pseudo-anomalous (the "
                             "batch then runs through the anomaly memory; default 0, as at the official default)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps, and timed test inputs")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (and inputs) before the timed ones")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=SHARED_DEFAULTS["seed"], help="weights, items and inputs")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: use {', '.join(METHODS)}, not {','.join(unknown) or 'nothing'}")
    if args.h < 8 or args.w < 8 or args.h % 8 or args.w % 8:
        parser.error(f"--h and --w must be multiples of 8, got {args.h} x {args.w}")
    if args.steps < 1 or args.warmup < 0 or (args.batch_size is not None and args.batch_size < 1):
        parser.error("--steps and --batch_size must be at least 1, --warmup at least 0")
    dual_batch = args.batch_size or VARIANTS["dual_memory"].batch_size
    if not 0 <= args.pseudo_clips <= dual_batch:
        parser.error(f"--pseudo_clips must lie in 0..{dual_batch} (the dual-memory batch), got {args.pseudo_clips}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device() if args.device == "auto" else args.device
    cuda = torch.device(device).type == "cuda"
    print(f"# Memory models' speed: {device_description(device)}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads\n")
    print(f"Published settings at {args.h} x {args.w}; {args.warmup} warm-up and {args.steps} timed steps per phase:")
    for m in args.methods:
        batch = args.batch_size or VARIANTS[m].batch_size
        pseudo = f", {args.pseudo_clips} of {batch} training clips pseudo-anomalous" if m == "dual_memory" else ""
        print(f"- {m}: training batch {batch}, {VARIANTS[m].settings}, {VARIANTS[m].epochs} epochs{pseudo}; "
              f"a frame (trained or scored) = {VARIANTS[m].frame}")
    print()
    rows = [row for method in args.methods for row in run_method(method, args, device)]
    print_table(rows, cuda)
    print_ratios(rows)
    return rows


if __name__ == "__main__":
    main()
