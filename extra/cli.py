"""Command-line pieces both stages share: boolean flags, dataset and path options."""
import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from extra import config
from extra.config import DATASETS, DatasetSettings
from extra.errors import VPCError
from extra.evaluation.fusion import DEFAULT_FALSE_ALARM_RATE
from extra.sharding import RayCluster, ray_cluster

_TRUE = {"yes", "true", "t", "y", "1"}
_FALSE = {"no", "false", "f", "n", "0"}


def str2bool(value):
    """Parse yes/no, true/false, t/f, y/n, 1/0 (any case), as the original scripts did."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (yes/no, true/false, 1/0), got {value!r}")


def add_false_alarm_argument(parser):
    """The label-free alarm threshold's target, every method's."""
    parser.add_argument("--false_alarm_rate", type=float, default=DEFAULT_FALSE_ALARM_RATE,
                        help=f"share of normal training frames above the label-free alarm threshold "
                             f"(default {DEFAULT_FALSE_ALARM_RATE})")


def checked_false_alarm_rate(args):
    if not 0 < args.false_alarm_rate < 1:
        raise VPCError(f"--false_alarm_rate must lie between 0 and 1, got {args.false_alarm_rate}")
    return args.false_alarm_rate


def add_bool_flag(parser, name, default, help):
    """``--name`` alone means true; ``--name=false`` (or no/0/f/n) sets it off."""
    parser.add_argument(name, type=str2bool, nargs="?", const=True, default=default, help=help)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other error of the project."""

    def error(self, message):
        raise VPCError(f"{self.prog}: {message}")


def base_parser(description):
    """Options every stage takes: dataset, clip length, paths and work_num (SPEC section 8)."""
    parser = OneLineErrorParser(description=description)
    parser.add_argument("--dataset", default="avenue",
                        help=f"one of: {', '.join(DATASETS)} (default avenue)")
    parser.add_argument("--work_num", type=int, default=-1,
                        help="-1: results go to work_dir itself; N: to work_dir/N/")
    parser.add_argument("--consecutive", type=int, default=None,
                        help="frames per clip (default: the dataset's, 10 avenue / 4 otherwise)")
    parser.add_argument("--data_root", default=None,
                        help="folder holding the datasets (default: $VPC_DATA_ROOT, then extra/config.py)")
    parser.add_argument("--work_dir", default=None,
                        help="working directory (default: $VPC_WORK_DIR, then extra/config.py)")
    add_ray_arguments(parser)
    return parser


def add_ray_arguments(parser):
    """--ray and --ray_cpus: the videos as tasks on Ray workers (extra.sharding); absent, one process."""
    parser.add_argument("--ray", default=None, metavar="auto|ADDRESS|local",
                        help="run each video as a task on Ray workers: auto joins the cluster this machine is "
                             "part of (ray start), ADDRESS is a cluster head's, local starts Ray here (default: "
                             "one process, no Ray; Ray installs with: pip install -r requirements-ray.txt)")
    parser.add_argument("--ray_cpus", type=int, default=None,
                        help="with --ray local: CPUs given to Ray, the videos run at once (default: this machine's)")


@dataclass(frozen=True)
class RunContext:
    """What a stage needs to know about where it runs, resolved once from the arguments."""

    settings: DatasetSettings
    consecutive: int
    data_root: Path
    work_dir: Path          # already includes work_num
    ray: RayCluster = None  # where the videos run (--ray); None: in this process


def dataset_settings(name):
    try:
        return DATASETS[name]
    except KeyError:
        raise VPCError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def resolve_path(flag_value, env_name, default):
    """Flag, then environment variable, then the value in extra/config.py."""
    value = flag_value or os.environ.get(env_name) or default
    return Path(value).expanduser().resolve()


def resolve_context(args):
    settings = dataset_settings(args.dataset)
    consecutive = settings.consecutive if args.consecutive is None else args.consecutive
    if consecutive < 1:
        raise VPCError(f"--consecutive must be at least 1, got {consecutive}")
    data_root = resolve_path(args.data_root, "VPC_DATA_ROOT", config.data_root)
    work_dir = resolve_path(args.work_dir, "VPC_WORK_DIR", config.work_dir)
    if args.work_num >= 0:
        work_dir = work_dir / str(args.work_num)
    return RunContext(settings=settings, consecutive=consecutive, data_root=data_root, work_dir=work_dir,
                      ray=ray_cluster(args.ray, args.ray_cpus))
