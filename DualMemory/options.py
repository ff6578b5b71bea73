"""The dual-memory autoencoder's configuration: the official flags with their defaults (DualMemory/SPEC.md,
section 1) and the switches of section 10, resolved once into one ``DualMemoryConfig``. Plain data, cheap
to import (no torch): the commands' --help and argument errors come at once.
"""
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from extra import config as paths
from extra.cli import (
    FOOTAGE_DATASET, OneLineErrorParser, add_bool_flag, add_false_alarm_argument, add_overwrite_argument, add_run_arguments,
    checked_false_alarm_rate, footage_inputs, resolve_path, setting_tag,
)
from extra.cli import footage_parser as shared_footage_parser
from extra.config import DATASETS
from extra.errors import VPCError
from extra.evaluation.alarms import DEFAULT_FALSE_ALARM_RATE
from extra.pseudo_anomalies import SKIP_ENDS

CLIP_LENGTH, SCORED_FRAME = 16, 8       # frames per clip; the clip's frame that is scored (SPEC 7)
# Train.py's defaults; every dataset this project reads is not ped2, so the official +30 epochs and the
# Avenue learning rate apply (SPEC 1).
OFFICIAL_EPOCHS = 10 + 30
DEFAULTS = {"batch_size": 2, "h": 256, "w": 256, "lr": 1e-7, "epochs": OFFICIAL_EPOCHS, "loss_m_weight": 0.0002,
            "mem_dim": 2000, "shrink_thres": 0.0005, "pseudo_anomaly_jump": 0.0, "jump": (2,), "seed": 0,
            "hold_out": 0}
# SPEC 10: the official code's behaviour first (the default), then the paper's wording or the alternative.
MEM_LOSSES = ("official", "between")            # -|M_used| (the code) or -|M_normal - M_anomaly| (the abstract)
ROUTINGS = ("last_sample", "per_sample")        # the whole batch through the last sample's memory, or each its own
REDUCTIONS = ("sum", "mean")                    # the summed squared error (the code) or its mean
PSEUDO_CHANNELS = ("first", "all")              # a pseudo clip's channel 0 copied to every channel, or all kept
SWITCHES = {"mem_loss": MEM_LOSSES[0], "memory_routing": ROUTINGS[0], "loss_reduction": REDUCTIONS[0],
            "pseudo_channels": PSEUDO_CHANNELS[0], "skip_end": "clamp", "shuffle": False}
TRAINING_FIELDS = ("batch_size", "h", "w", "lr", "epochs", "loss_m_weight", "mem_dim", "pseudo_anomaly_jump", "jump",
                   "seed", "hold_out", *SWITCHES)
EVALUATION_FIELDS = ("false_alarm_rate",)
MODEL_FILE, RESUME_FILE, RESULTS_FOLDER = "model.safetensors", "resume.safetensors", "results"


@dataclass(frozen=True)
class DualMemoryConfig:
    """Every setting of a dual-memory run (defaults: the official code's) and where it reads and writes."""

    dataset: str = "avenue"
    batch_size: int = DEFAULTS["batch_size"]
    h: int = DEFAULTS["h"]
    w: int = DEFAULTS["w"]
    lr: float = DEFAULTS["lr"]
    epochs: int = DEFAULTS["epochs"]
    loss_m_weight: float = DEFAULTS["loss_m_weight"]
    mem_dim: int = DEFAULTS["mem_dim"]
    shrink_thres: float = DEFAULTS["shrink_thres"]
    pseudo_anomaly_jump: float = DEFAULTS["pseudo_anomaly_jump"]
    jump: tuple = DEFAULTS["jump"]
    seed: int = DEFAULTS["seed"]
    hold_out: int = DEFAULTS["hold_out"]
    mem_loss: str = SWITCHES["mem_loss"]
    memory_routing: str = SWITCHES["memory_routing"]
    loss_reduction: str = SWITCHES["loss_reduction"]
    pseudo_channels: str = SWITCHES["pseudo_channels"]
    skip_end: str = SWITCHES["skip_end"]
    shuffle: bool = SWITCHES["shuffle"]
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    data_root: Path = None
    work_dir: Path = None
    overwrite: bool = False
    model_dir: Path = None          # evaluation: a checkpoint or an official state dict instead of the run's model
    figures: bool = False

    t_length = CLIP_LENGTH          # what the shared windows read (extra.windows)

    @property
    def settings(self):
        return DATASETS[self.dataset]

    def defaults(self):
        return {**DEFAULTS, **SWITCHES, "false_alarm_rate": DEFAULT_FALSE_ALARM_RATE}

    def training_record(self):
        """What a trained model depends on (JSON-ready): a checkpoint or resume file made otherwise is refused."""
        record = {"dataset": self.dataset, **{name: getattr(self, name) for name in TRAINING_FIELDS}}
        record["jump"] = list(self.jump)
        return record

    def _tags(self, names):
        defaults, record = self.defaults(), asdict(self)
        return [setting_tag(name, "-".join(map(str, record[name])) if name == "jump" else record[name])
                for name in names if record[name] != defaults[name]]

    @property
    def run_name(self):
        """``dual``, then each training setting away from its default: ``dual_h32_w32_epochs1``."""
        return "_".join(["dual", *self._tags(TRAINING_FIELDS)])

    @property
    def method_dir(self):
        return self.work_dir / "dual_memory" / self.dataset

    @property
    def run_dir(self):
        return self.method_dir / self.run_name

    def results_name(self):
        return "_".join([RESULTS_FOLDER, *self._tags(EVALUATION_FIELDS)])


def add_model_arguments(parser, hold_out=DEFAULTS["hold_out"]):
    """The flags a trained model depends on: the official ones, then this implementation's switches."""
    d = DEFAULTS
    for name, kind, text in (("batch_size", int, "training clips per batch"), ("h", int, "frame height, a multiple of 8"),
                             ("w", int, "frame width, a multiple of 8"),
                             ("loss_m_weight", float, "weight of the memories' attention entropies"),
                             ("mem_dim", int, "slots of each memory")):
        parser.add_argument(f"--{name}", type=kind, default=d[name], help=f"{text} (default {d[name]})")
    parser.add_argument("--learning_rate_avenue", "--lr", dest="lr", type=float, default=d["lr"],
                        help=f"Adam's learning rate, the official one for Avenue and ShanghaiTech (default {d['lr']})")
    parser.add_argument("--epochs", type=int, default=d["epochs"],
                        help=f"training epochs (default {d['epochs']}: the official 10 + 30 for datasets other than ped2)")
    parser.add_argument("--pseudo_anomaly_jump", type=float, default=d["pseudo_anomaly_jump"],
                        help="probability that a training clip becomes a skip-frame pseudo-anomaly, trained through the "
                             "anomaly memory (default 0, the official default: the anomaly memory is then never used)")
    parser.add_argument("--jump", type=int, nargs="+", default=list(d["jump"]),
                        help="strides of the skip-frame clips, one drawn per clip (default 2)")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help=f"seeds the weights, the pseudo-anomalies and any shuffling (default {d['seed']}; the "
                             f"official code leaves numpy unseeded, so its runs are not repeatable)")
    parser.add_argument("--hold_out", type=int, default=hold_out,
                        help=f"training videos held out of training (spread over them; with one video, its second "
                             f"half), on which the label-free calibration chooses normalisation and alarm threshold "
                             f"with pseudo-anomalies (default {hold_out})")
    for name, choices, text in (
            ("mem_loss", MEM_LOSSES, "the memory term: -|M| of the memory in use (official, default) or -|M_normal - "
                                     "M_anomaly| (between: the two memories pushed apart, as the abstract says)"),
            ("memory_routing", ROUTINGS, "the whole batch through the memory of its last sample (last_sample: the "
                                         "official loop, default) or each sample through its own (per_sample)"),
            ("loss_reduction", REDUCTIONS, "the squared error summed over every element (sum: official, default) "
                                           "or averaged (mean)"),
            ("pseudo_channels", PSEUDO_CHANNELS, "a pseudo-anomalous clip's first (blue) channel copied into every "
                                                 "channel (first: official, default) or its own channels (all)"),
            ("skip_end", SKIP_ENDS, "a skip-frame clip near the video's end: start drawn again then clamped (clamp: "
                                    "official, default) or its stride lowered (lower_stride)")):
        parser.add_argument(f"--{name}", default=SWITCHES[name], choices=choices, help=text)
    add_bool_flag(parser, "--shuffle", False, "shuffle the training clips each epoch (default false: the official "
                                              "loader keeps their order)")


def build_parser(description, evaluation=False):
    """The command line of DualMemory/train.py, or with ``evaluation`` of DualMemory/evaluate.py."""
    parser = OneLineErrorParser(description=description)
    add_run_arguments(parser, "dual_memory", add_model_arguments)
    if not evaluation:
        add_overwrite_argument(parser)
        return parser
    add_false_alarm_argument(parser)
    parser.add_argument("--model_dir", default=None,
                        help="evaluate this model instead of the run's: a checkpoint of this implementation, or a "
                             "state dict of the official model (.pth)")
    add_bool_flag(parser, "--figures", False, "also draw each test video's scores (PNG, in the results folder)")
    return parser


def footage_parser(description):
    """fit.py --method dual_memory: normal footage of any names in, one calibrated model file out."""
    parser = shared_footage_parser("dual_memory", description, "dual")
    add_model_arguments(parser, hold_out=1)
    add_false_alarm_argument(parser)
    add_overwrite_argument(parser)
    return parser


def resolve_footage_config(args):
    """(the DualMemoryConfig of fit.py --method dual_memory, the normal videos): the flags checked first,
    then the inputs; its run in dual_memory/ of the footage's folder (extra.cli.footage_folder)."""
    config = resolve_config(args, dataset=FOOTAGE_DATASET)
    videos, folder = footage_inputs(args)
    return replace(config, work_dir=folder), videos


def resolve_config(args, dataset=None, work_dir=None):
    """The DualMemoryConfig of parsed flags, every value checked (no torch); ``dataset`` and ``work_dir``
    when the flags do not give them (fit.py)."""
    config = DualMemoryConfig(
        dataset=dataset or args.dataset_type, batch_size=args.batch_size, h=args.h, w=args.w, lr=args.lr,
        epochs=args.epochs, loss_m_weight=args.loss_m_weight, mem_dim=args.mem_dim,
        pseudo_anomaly_jump=args.pseudo_anomaly_jump, jump=tuple(args.jump), seed=args.seed, hold_out=args.hold_out,
        **{name: getattr(args, name) for name in SWITCHES},
        false_alarm_rate=checked_false_alarm_rate(args) if hasattr(args, "false_alarm_rate") else DEFAULT_FALSE_ALARM_RATE,
        data_root=resolve_path(getattr(args, "data_root", None), "VPC_DATA_ROOT", paths.data_root),
        work_dir=work_dir or resolve_path(args.work_dir, "VPC_WORK_DIR", paths.work_dir),
        overwrite=getattr(args, "overwrite", False),
        model_dir=None if getattr(args, "model_dir", None) is None else Path(args.model_dir).expanduser().resolve(),
        figures=getattr(args, "figures", False))
    if config.h < 8 or config.w < 8 or config.h % 8 or config.w % 8:
        raise VPCError(f"--h and --w must be multiples of 8 (the encoder halves them three times), got "
                       f"{config.h} x {config.w}")
    for name, smallest in (("batch_size", 1), ("epochs", 1), ("mem_dim", 2), ("seed", 0), ("hold_out", 0)):
        if getattr(config, name) < smallest:
            raise VPCError(f"--{name} must be at least {smallest}, got {getattr(config, name)}")
    if not 0 <= config.pseudo_anomaly_jump <= 1 or not config.lr > 0 or min(config.jump) < 1:
        raise VPCError(f"--pseudo_anomaly_jump must lie in [0, 1], --lr be positive and every --jump at least 1; got "
                       f"{config.pseudo_anomaly_jump}, {config.lr}, {list(config.jump)}")
    return config
