"""MNAD's configuration: the official flags with their per-variant defaults, resolved once into one
``MNADConfig``. Plain data, cheap to import (no torch): the commands' --help and argument errors
come at once. MNAD/SPEC.md gives every default; section 10 the switches to the paper's wording.
"""
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from extra import config as paths
from extra.cli import (
    FOOTAGE_DATASET, OneLineErrorParser, add_bool_flag, add_false_alarm_argument, checked_false_alarm_rate,
    add_overwrite_argument, add_run_arguments, dataset_settings, footage_inputs, resolve_path, setting_tag,
)
from extra.cli import footage_parser as shared_footage_parser
from extra.errors import VPCError
from extra.evaluation.alarms import DEFAULT_FALSE_ALARM_RATE

METHODS = ("pred", "recon")
FEATURE_DIM = 512       # the encoder's output channels: the official --fdim / --mdim can be nothing else
# The published settings of each method (official README, Train.py and Evaluate.py; SPEC section 1).
METHOD_DEFAULTS = {
    "pred": {"t_length": 5, "loss_compact": 0.1, "loss_separate": 0.1, "alpha": 0.6, "th": 0.01},
    "recon": {"t_length": 1, "loss_compact": 0.01, "loss_separate": 0.01, "alpha": 0.7, "th": 0.015},
}
# The defaults both methods share (Train.py, Evaluate.py), and this implementation's seed.
SHARED_DEFAULTS = {"msize": 10, "h": 256, "w": 256, "lr": 2e-4, "epochs": 60, "batch_size": 4, "seed": 0,
                   "hold_out": 0}
# SPEC 10: the official code's behaviour first (the default), then the paper's wording.
UPDATE_NORMS = ("all", "assigned")      # an item's update weights divided by the max over all queries / its own
LOSS_REDUCTIONS = ("mean", "sum")       # compactness and separateness averaged over queries, or summed
POINT_SCORES = ("official", "paper")    # the update's gate on squared errors per element / error norms per pixel
PSNR_PEAKS = ("one", "frame_max")       # the PSNR's peak: 1 / the predicted frame's maximum
# The settings a trained model depends on, in the order the run's name lists those set away from the default.
TRAINING_FIELDS = ("t_length", "msize", "loss_compact", "loss_separate", "h", "w", "lr", "epochs", "batch_size",
                   "seed", "hold_out", "update_norm", "loss_reduction", "recon_loss_swap")
# The settings of an evaluation of a trained model (its results folder's name lists those set away from the default).
EVALUATION_FIELDS = ("alpha", "th", "reset_memory_per_video", "point_score", "psnr_peak", "false_alarm_rate")
MODEL_FILE, RESUME_FILE, RESULTS_FOLDER = "model.safetensors", "resume.safetensors", "results"


def check_window(method, t_length):
    """Refuse a window length the method cannot read (prediction: 2 frames or more; reconstruction: 1)."""
    if (method == "pred" and t_length < 2) or (method == "recon" and t_length != 1):
        raise VPCError(f"--t_length {t_length} does not fit --method {method}: prediction needs 2 frames or "
                       f"more (5 published), reconstruction reads 1")


@dataclass(frozen=True)
class MNADConfig:
    """Every setting of an MNAD run (defaults: the official code's, SPEC sections 1 and 10) and where it
    reads and writes."""

    method: str = "pred"
    dataset: str = "avenue"
    t_length: int = METHOD_DEFAULTS["pred"]["t_length"]
    msize: int = SHARED_DEFAULTS["msize"]
    loss_compact: float = METHOD_DEFAULTS["pred"]["loss_compact"]
    loss_separate: float = METHOD_DEFAULTS["pred"]["loss_separate"]
    alpha: float = METHOD_DEFAULTS["pred"]["alpha"]
    th: float = METHOD_DEFAULTS["pred"]["th"]
    h: int = SHARED_DEFAULTS["h"]
    w: int = SHARED_DEFAULTS["w"]
    lr: float = SHARED_DEFAULTS["lr"]
    epochs: int = SHARED_DEFAULTS["epochs"]
    batch_size: int = SHARED_DEFAULTS["batch_size"]
    seed: int = SHARED_DEFAULTS["seed"]
    hold_out: int = SHARED_DEFAULTS["hold_out"]     # training videos held out for the label-free calibration
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    update_norm: str = UPDATE_NORMS[0]
    loss_reduction: str = LOSS_REDUCTIONS[0]
    recon_loss_swap: bool = True
    reset_memory_per_video: bool = False
    point_score: str = POINT_SCORES[0]
    psnr_peak: str = PSNR_PEAKS[0]
    data_root: Path = None
    work_dir: Path = None
    overwrite: bool = False
    model_dir: Path = None          # evaluation: a checkpoint or official state dict instead of the run's model
    m_items_dir: Path = None        # evaluation: memory items (the official keys.pt)
    figures: bool = False

    @property
    def settings(self):
        return dataset_settings(self.dataset)

    @property
    def swap(self):
        """Whether the loss weights act swapped (SPEC 4.3): the official reconstruction training only."""
        return self.method == "recon" and self.recon_loss_swap

    def defaults(self):
        """The default of every setting for this method."""
        return {**SHARED_DEFAULTS, **METHOD_DEFAULTS[self.method], "update_norm": UPDATE_NORMS[0],
                "loss_reduction": LOSS_REDUCTIONS[0], "recon_loss_swap": True, "reset_memory_per_video": False,
                "point_score": POINT_SCORES[0], "psnr_peak": PSNR_PEAKS[0],
                "false_alarm_rate": DEFAULT_FALSE_ALARM_RATE}

    def training_record(self):
        """What a trained model depends on (JSON-ready): a checkpoint or resume file made otherwise is refused."""
        record = {"dataset": self.dataset, "method": self.method,
                  **{name: getattr(self, name) for name in TRAINING_FIELDS}}
        record["recon_loss_swap"] = self.swap
        return record

    def evaluation_record(self):
        return {name: getattr(self, name) for name in EVALUATION_FIELDS}

    def _tags(self, names):
        defaults, record = self.defaults(), {**asdict(self), "recon_loss_swap": self.swap}
        defaults["recon_loss_swap"] = self.method == "recon"
        return [setting_tag(name, record[name]) for name in names if record[name] != defaults[name]]

    @property
    def run_name(self):
        """The method, then each training setting away from its default: ``pred``, ``pred_h64_w64_epochs2``."""
        return "_".join([self.method, *self._tags(TRAINING_FIELDS)])

    @property
    def mnad_dir(self):
        return self.work_dir / "mnad" / self.dataset

    @property
    def run_dir(self):
        return self.mnad_dir / self.run_name

    def results_name(self, given_model=False):
        """``results``, then each evaluation setting away from its default; for a model given with
        --model_dir also the input size and update settings, which its folder's name does not carry."""
        names = (("h", "w", "update_norm") if given_model else ()) + EVALUATION_FIELDS
        return "_".join([RESULTS_FOLDER, *self._tags(names)])


PER_METHOD = {key: " / ".join(f"{METHOD_DEFAULTS[m][key]} {m}" for m in METHODS) for key in METHOD_DEFAULTS["pred"]}
FOOTAGE_HOLD_OUT = 1


def add_model_arguments(parser, method_flag="--method", hold_out=SHARED_DEFAULTS["hold_out"]):
    """The flags a trained model depends on (the official ones, then this implementation's switches);
    ``method_flag``: the variant's flag (fit.py's --method chooses the method, so there it is
    --mnad_method); ``hold_out``: its default."""
    shared = SHARED_DEFAULTS
    parser.add_argument(method_flag, dest="method", default="pred", choices=METHODS,
                        help="pred: predict frame 5 from frames 1-4 (default); recon: reconstruct each frame")
    parser.add_argument("--t_length", type=int, default=None,
                        help=f"frames per window (default {PER_METHOD['t_length']})")
    parser.add_argument("--msize", type=int, default=shared["msize"], help=f"memory items (default {shared['msize']})")
    parser.add_argument("--fdim", type=int, default=FEATURE_DIM, help=f"feature channels: {FEATURE_DIM}, the encoder's")
    parser.add_argument("--mdim", type=int, default=FEATURE_DIM, help=f"memory item channels: {FEATURE_DIM} as well")
    parser.add_argument("--loss_compact", type=float, default=None,
                        help=f"weight of the compactness loss (default {PER_METHOD['loss_compact']})")
    parser.add_argument("--loss_separate", type=float, default=None,
                        help=f"weight of the separateness loss (default {PER_METHOD['loss_separate']})")
    for name, kind, text in (("h", int, "frame height, a multiple of 8"), ("w", int, "frame width, a multiple of 8"),
                             ("lr", float, "Adam's initial learning rate, annealed by a cosine over the epochs"),
                             ("epochs", int, "training epochs"), ("batch_size", int, "training windows per batch")):
        parser.add_argument(f"--{name}", type=kind, default=shared[name], help=f"{text} (default {shared[name]})")
    parser.add_argument("--seed", type=int, default=shared["seed"],
                        help=f"seeds the weights, the memory items and the shuffling (default {shared['seed']}; the "
                             f"official code sets none, so its runs are not repeatable)")
    parser.add_argument("--hold_out", type=int, default=hold_out,
                        help=f"training videos held out of training (spread over them; with one video, its second "
                             f"half), on which the label-free calibration chooses alpha, normalisation and alarm "
                             f"threshold with pseudo-anomalies (default {hold_out}" +
                             ("; 0 trains on all, as published, with no label-free column)" if hold_out == 0 else ")"))
    parser.add_argument("--update_norm", default=UPDATE_NORMS[0], choices=UPDATE_NORMS,
                        help="memory update weights divided by the max over all queries of the batch (all: the "
                             "official code, default) or over the item's own queries (assigned: the paper)")
    parser.add_argument("--loss_reduction", default=LOSS_REDUCTIONS[0], choices=LOSS_REDUCTIONS,
                        help="compactness and separateness averaged (mean: the official code, default) or summed over "
                             "the queries (sum: the paper's wording; only their scale changes)")
    add_bool_flag(parser, "--recon_loss_swap", True,
                  "recon: --loss_compact weighs the separateness loss and --loss_separate the compactness loss, as "
                  "the official Train.py unpacks them (default true; no effect at equal weights; false: the paper)")


def add_scoring_arguments(parser):
    """How test frames are scored and alarmed: the online memory update's gate, the PSNR, the
    label-free threshold's target."""
    parser.add_argument("--th", type=float, default=None,
                        help=f"test frames with a point score below it update the memory (default {PER_METHOD['th']})")
    parser.add_argument("--point_score", default=POINT_SCORES[0], choices=POINT_SCORES,
                        help="the update's gate: squared errors per element (official: the official code, default)"
                             " or per pixel the L2 norm of the error over channels (paper: the paper as we read "
                             "it; a larger scale, so --th needs retuning)")
    parser.add_argument("--psnr_peak", default=PSNR_PEAKS[0], choices=PSNR_PEAKS,
                        help="the PSNR's peak: 1 on [0, 1] (one: the official code, default) or the predicted "
                             "frame's maximum, not squared (frame_max: the paper's formula as printed)")
    add_false_alarm_argument(parser)


def build_parser(description, evaluation=False):
    """The command line of MNAD/train.py, or with ``evaluation`` of MNAD/evaluate.py: the same flags (they name
    the run to evaluate) and the evaluation's own."""
    parser = OneLineErrorParser(description=description)
    add_run_arguments(parser, "mnad", add_model_arguments)
    if not evaluation:
        add_overwrite_argument(parser)
        return parser
    parser.add_argument("--alpha", type=float, default=None,
                        help=f"weight of the PSNR in the score (default {PER_METHOD['alpha']})")
    add_scoring_arguments(parser)
    add_bool_flag(parser, "--reset_memory_per_video", False,
                  "restart each test video from the trained memory items (default false: the official code "
                  "carries the items updated online from video to video)")
    parser.add_argument("--model_dir", default=None,
                        help="evaluate this model instead of the run's: an MNAD checkpoint, or a state dict of the "
                             "official model (.pth; torch.save(model.state_dict(), ...))")
    parser.add_argument("--m_items_dir", default=None,
                        help="memory items for --model_dir: the official keys.pt (or an MNAD checkpoint)")
    add_bool_flag(parser, "--figures", False, "also draw each test video's scores (PNG, in the results folder)")
    return parser


def footage_parser(description):
    """fit.py --method mnad: normal footage of any names in, one calibrated model file out."""
    parser = shared_footage_parser("mnad", description, "mnad")
    add_model_arguments(parser, "--mnad_method", FOOTAGE_HOLD_OUT)
    add_scoring_arguments(parser)
    add_overwrite_argument(parser)
    return parser


def resolve_footage_config(args):
    """(the MNADConfig of fit.py --method mnad, the normal videos): the flags checked first, then the
    inputs; its run in mnad/footage/ of the footage's folder (extra.cli.footage_folder)."""
    config = resolve_config(args, dataset=FOOTAGE_DATASET)
    videos, folder = footage_inputs(args)
    return replace(config, work_dir=folder), videos


def _pick(value, default):
    return default if value is None else value


def resolve_config(args, dataset=None, work_dir=None):
    """The MNADConfig of parsed flags: per-method defaults filled in, every value checked (no torch);
    ``dataset`` and ``work_dir`` when the flags do not give them (fit.py)."""
    defaults = METHOD_DEFAULTS[args.method]
    config = MNADConfig(
        method=args.method, dataset=dataset or args.dataset_type,
        **{key: _pick(getattr(args, key, None), value) for key, value in defaults.items()},
        msize=args.msize, h=args.h, w=args.w, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
        seed=args.seed, hold_out=args.hold_out, update_norm=args.update_norm, loss_reduction=args.loss_reduction,
        recon_loss_swap=args.recon_loss_swap, reset_memory_per_video=getattr(args, "reset_memory_per_video", False),
        point_score=getattr(args, "point_score", POINT_SCORES[0]), psnr_peak=getattr(args, "psnr_peak", PSNR_PEAKS[0]),
        data_root=resolve_path(getattr(args, "data_root", None), "VPC_DATA_ROOT", paths.data_root),
        work_dir=work_dir or resolve_path(args.work_dir, "VPC_WORK_DIR", paths.work_dir),
        overwrite=getattr(args, "overwrite", False),
        model_dir=_path(getattr(args, "model_dir", None)), m_items_dir=_path(getattr(args, "m_items_dir", None)),
        figures=getattr(args, "figures", False),
        false_alarm_rate=checked_false_alarm_rate(args) if hasattr(args, "false_alarm_rate") else DEFAULT_FALSE_ALARM_RATE)
    check_window(config.method, config.t_length)
    if args.fdim != FEATURE_DIM or args.mdim != FEATURE_DIM:
        raise VPCError(f"MNAD's encoder gives {FEATURE_DIM} channels: --fdim and --mdim must be {FEATURE_DIM}")
    if config.h < 8 or config.w < 8 or config.h % 8 or config.w % 8:
        raise VPCError(f"--h and --w must be multiples of 8 (the encoder pools three times), got "
                       f"{config.h} x {config.w}")
    for name, smallest in (("msize", 2), ("epochs", 1), ("batch_size", 1), ("seed", 0), ("hold_out", 0)):
        if getattr(config, name) < smallest:
            raise VPCError(f"--{name} must be at least {smallest}, got {getattr(config, name)}")
    if not config.lr > 0 or not 0 <= config.alpha <= 1:
        raise VPCError(f"--lr must be positive and --alpha lie in [0, 1], got {config.lr} and {config.alpha}")
    if config.m_items_dir is not None and config.model_dir is None:
        raise VPCError("--m_items_dir goes with --model_dir (the run's own model holds its memory items)")
    return config


def _path(value):
    return None if value is None else Path(value).expanduser().resolve()
