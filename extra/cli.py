"""Command-line pieces both stages share: boolean flags, dataset and path options."""
import argparse
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from extra import config
from extra.config import DATASETS, DatasetSettings
from extra.errors import VPCError
from extra.evaluation.alarms import DEFAULT_FALSE_ALARM_RATE
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


def setting_tag(name, value):
    """A setting away from its default as a run folder names it: ``msize4``, ``update_norm-assigned``,
    ``reset_memory_per_video`` / ``no_recon_loss_swap`` (booleans)."""
    if isinstance(value, bool):
        return name if value else f"no_{name}"
    return f"{name}-{value}" if isinstance(value, str) else f"{name}{value}"


def add_run_arguments(parser, folder, add_model_arguments):
    """A training-based method's dataset commands: the dataset, the method's own flags (they name the run),
    where the data is and where its runs go (<work_dir>/<folder>/<dataset>/<run>/)."""
    parser.add_argument("--dataset_type", default="avenue", choices=list(DATASETS),
                        help="the dataset's layout and ground truth (extra/config.py; the demo data is avenue's)")
    add_model_arguments(parser)
    parser.add_argument("--data_root", "--dataset_path", default=None,
                        help="folder holding the datasets (default: $VPC_DATA_ROOT, then extra/config.py)")
    parser.add_argument("--work_dir", default=None,
                        help=f"working directory; runs go to <work_dir>/{folder}/<dataset>/<run>/ (default: "
                             f"$VPC_WORK_DIR, then extra/config.py)")


def add_overwrite_argument(parser):
    """A training-based method's --overwrite."""
    add_bool_flag(parser, "--overwrite", False, "train from the start even when a finished model or a resume file "
                                                "of the run exists")


FOOTAGE_DATASET = "footage"      # what a training-based method's own-footage run calls its dataset


def footage_parser(method, description, suffix):
    """fit.py --method <method> for a training-based method: the inputs, the model file, the work folder;
    the method adds its own flags."""
    parser = OneLineErrorParser(prog=f"fit.py --method {method}", description=description)
    parser.add_argument("inputs", nargs="+", help="normal footage: video files, frame folders, or folders of them")
    parser.add_argument("--out", required=True, help=f"the model file to write (.{suffix})")
    parser.add_argument("--work_dir", default=None,
                        help="intermediate files (default: $VPC_WORK_DIR, then extra/config.py), under footage/, in a "
                             "folder of the inputs' own: a rerun on the same footage reuses them")
    return parser


def footage_folder(work_dir, videos, settings=None):
    """The intermediate files' folder of an own-footage run, <work_dir>/footage/<first video>_<key>/, keyed by
    the inputs themselves (each video's resolved path, size and modification time; for a frame folder, its
    frame count and last frame's) and by ``settings`` (a JSON-able dict of what those files depend on), not
    by the model's name: fitting the same footage again under another --out reuses them, and changed
    footage or settings get a folder of their own rather than stopping at files made otherwise."""
    digest = hashlib.sha256(json.dumps(settings or {}, sort_keys=True).encode())
    for video in videos:
        path = Path(video.source).resolve()
        stat = (path if video.is_file else video.frame_paths[-1]).stat()
        digest.update(f"{path}|{len(video.frame_paths or ())}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return resolve_path(work_dir, "VPC_WORK_DIR", config.work_dir) / "footage" / f"{videos[0].name}_{digest.hexdigest()[:12]}"


def footage_inputs(args):
    """(the normal videos of a training-based method's fit.py, their folder: ``footage_folder``), once its
    --hold_out is checked: the alarm threshold is calibrated on footage held out of training."""
    if args.hold_out < 1:
        raise VPCError("--hold_out must be at least 1: the alarm threshold is calibrated on normal footage held out "
                       "of training")
    from extra.sources import footage_videos

    videos = footage_videos(args.inputs)
    return videos, footage_folder(args.work_dir, videos)


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
