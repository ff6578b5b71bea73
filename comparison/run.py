"""compare.py's library: VideoPatchCore, MNAD and the dual-memory model run on one dataset, measured, and
one table of them.

What is measured, on the device the process runs on:

- VideoPatchCore, from scratch (every file made anew in <compare>/vpc/): training is the object detection of
  the training split + the CLIP features of the training videos + the coreset memory banks; inference is the
  test frames scored / (object detection + CLIP features + scoring of the test split). Loading the encoder
  and the label-free calibration are timed apart. The stages' own functions are called in order
  (ObjectDetection.pipeline, Memorization.pipeline and Memorization.features), nothing of them changed.
- VideoPatchCore's sensitivity: the protocol AUROC with every bank's coreset ratio times each scale, from
  the same features (``scaled_ratios``).
- The methods that train a model, MNAD (<compare>/mnad/) and the dual-memory model (<compare>/dual_memory/),
  each described by a ``TrainedMethod``: its ``train``'s wall time from the start, and its
  ``evaluate_run``'s results, its scoring rate included; one training run per memory size (MNAD's msize,
  the dual-memory model's mem_dim); for the label-free column a run trained with a training video held
  out (<compare>/<method>_hold_out/).

Every finished measurement is stored at once in <compare>/comparison.json with the settings it was made
with; a rerun reuses those whose settings are the same (``Measurements``), so an interrupted comparison
resumes. Heavy modules (torch, OpenCV) are imported by the measuring functions only: the parser and
the resolution of the flags are cheap (compare.py --help, its argument errors).
"""
import contextlib
import importlib
import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from comparison.table import format_markdown, format_text, memory_note
from DualMemory import options as dual_options
from extra import config as paths
from extra.cli import add_bool_flag, base_parser
from extra.datasets import split_folder
from extra.errors import VPCError
from extra.io import atomic_path
from Memorization.cli import add_backbone_arguments, add_evaluation_arguments, add_method_arguments, resolve_run
from Memorization.encoders.registry import DEFAULT_ENCODER
from Memorization.options import PUBLISHED_BANKS, MemorizationRun, method_record, results_folder, results_name, run_tags
from MNAD import options as mnad_options
from ObjectDetection.options import DETECTORS, YOLO, DetectionOptions

STORE_FORMAT, STORE_VERSION = "vpc-comparison", 1
JSON_FILE, MARKDOWN_FILE, TEXT_FILE = "comparison.json", "comparison.md", "comparison.txt"
VPC, MNAD, DUAL_MEMORY = "vpc", "mnad", "dual_memory"          # the --methods names, in the table's order
METHODS = (VPC, MNAD, DUAL_MEMORY)
VPC_FOLDER = "vpc"
HOLD_OUT = 1
# compare.py trains the dual-memory model with pseudo-anomalies at the probability STEAL's README trains with
# (a guess for this method, DualMemory/SPEC.md section 1): the official default 0 leaves its anomaly memory unused.
DUAL_PSEUDO_ANOMALY_JUMP = 0.01
# The settings of a trained method's config that are where it writes or what it loads, not what it measures.
NOT_SETTINGS = ("work_dir", "overwrite", "figures", "model_dir", "m_items_dir")


# --- the methods that train a model ----------------------------------------------------------------------

def lazy(module, name):
    """``module.name``, imported when first called: the parser and the flags' resolution stay free of torch."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


@dataclass(frozen=True)
class TrainedMethod:
    """A method that trains a model, as compare.py runs and measures it (MNAD, the dual-memory model)."""

    key: str                # its --methods name and its folders under <compare>/: <key>/, <key>_hold_out/
    name: str               # in the notes ("MNAD train s = ...")
    title: str              # in the title and the notes' possessives ("the dual-memory model's")
    package: str            # its folder: <package>/training.py train(), <package>/evaluation.py evaluate_run()
    parser: object          # its own build_parser(description, evaluation=True) ...
    resolve: object         # ... and resolve_config(args): the config compare.py measures
    memory: object          # a loaded checkpoint -> its memories, {name: [rows, channels]}
    size: str               # the memory size's setting (msize), one training run per value of --<sweep>
    sweep: str              # compare.py's flag of those values (msizes)
    published_size: int
    flags: tuple            # (compare.py's flag, the method's flag): the flags passed on
    fields: tuple           # the settings compared with the published ones (the differences note)
    window: str             # what it reads, one per frame scored ("window", "clip")
    saved: str              # what its checkpoint holds (the size note)
    row_name: object        # config -> the table's method cell
    notes: object = lambda config: []      # config -> the method's own notes

    def module(self, name):
        return f"{self.package}.{name}"

    @property
    def train(self):
        """train(config) -> the checkpoint's path."""
        return lazy(self.module("training"), "train")

    @property
    def evaluate(self):
        """evaluate_run(config) -> the results dict (results.json in config.run_dir / config.results_name())."""
        return lazy(self.module("evaluation"), "evaluate_run")

    @property
    def load_checkpoint(self):
        """load_checkpoint(path) -> a checkpoint: .build() the model, .settings the training record."""
        return lazy(self.module("checkpoints"), "load_checkpoint")


def dual_memory_notes(config):
    """The probability of a pseudo-anomaly the dual-memory model was trained with, and what it means."""
    if not config.pseudo_anomaly_jump:
        return ["dual-memory pseudo_anomaly_jump 0 (the official default): no training clip is made a pseudo-anomaly, "
                "so the anomaly memory is never used or trained (a single-memory MemAE)."]
    return [f"dual-memory pseudo_anomaly_jump {config.pseudo_anomaly_jump:g}: each training clip is made a skip-frame "
            f"pseudo-anomaly (strides {', '.join(map(str, config.jump))}) with this probability and trained through "
            f"the anomaly memory. compare.py's default {DUAL_PSEUDO_ANOMALY_JUMP:g} is the value STEAL's README trains "
            f"with, a guess for this method (DualMemory/SPEC.md, section 1); the official default 0 leaves the "
            f"anomaly memory unused."]


TRAINED = {
    MNAD: TrainedMethod(
        key=MNAD, name="MNAD", title="MNAD", package="MNAD", parser=mnad_options.build_parser,
        resolve=mnad_options.resolve_config, memory=lambda checkpoint: {"items": list(checkpoint.items.shape)},
        size="msize", sweep="msizes", published_size=mnad_options.SHARED_DEFAULTS["msize"],
        flags=(("mnad_method", "method"), ("epochs", "epochs"), ("h", "h"), ("w", "w"), ("batch_size", "batch_size"),
               ("seed", "seed")),
        fields=(*mnad_options.TRAINING_FIELDS, *mnad_options.EVALUATION_FIELDS), window="window",
        saved="MNAD's checkpoint holds its trained weights and memory items (not counted in its parameters)",
        row_name=lambda config: f"MNAD {config.method} (msize {config.msize})"),
    DUAL_MEMORY: TrainedMethod(
        key=DUAL_MEMORY, name="dual-memory", title="the dual-memory model", package="DualMemory",
        parser=dual_options.build_parser, resolve=dual_options.resolve_config,
        memory=lambda checkpoint: {name: list(checkpoint.state[f"{module}.memMatrix"].shape)
                                   for name, module in (("normal", "mem3"), ("anomaly", "mem3_ano"))},
        size="mem_dim", sweep="mem_dims", published_size=dual_options.DEFAULTS["mem_dim"],
        flags=(("dual_epochs", "epochs"), ("dual_h", "h"), ("dual_w", "w"),
               ("dual_pseudo_anomaly_jump", "pseudo_anomaly_jump"), ("dual_lr", "lr")),
        fields=(*dual_options.TRAINING_FIELDS, *dual_options.EVALUATION_FIELDS), window="clip",
        saved="the dual-memory model's checkpoint holds its trained weights, its two memories among them (counted "
              "in its parameters)",
        row_name=lambda config: f"dual-memory (mem_dim {config.mem_dim})", notes=dual_memory_notes),
}


# --- the command line ------------------------------------------------------------------------------------

def add_flags(group, prefix, defaults, texts):
    """One flag --<prefix><name> per (name, text), its default and type those of ``defaults[name]``."""
    for name, text in texts:
        group.add_argument(f"--{prefix}{name}", type=type(defaults[name]), default=defaults[name],
                           help=f"{text} (default {defaults[name]:g})")


def build_parser(description):
    """compare.py's flags: the methods compared, the Memorization stage's method, encoder and evaluation
    flags, the detector, MNAD's and the dual-memory model's training flags, and the sensitivity sweeps."""
    parser = base_parser(description)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"the methods compared, comma-separated, one row each (default {','.join(METHODS)})")
    vpc = parser.add_argument_group("VideoPatchCore (the flags of Memorization/run.py and ObjectDetection/run.py)")
    add_method_arguments(vpc)
    add_backbone_arguments(vpc)
    add_evaluation_arguments(vpc)
    vpc.add_argument("--detector", default=YOLO, choices=DETECTORS,
                     help="yolov5 (default, the paper's YOLOv5-L), or motion / hog, needing no weights")
    vpc.add_argument("--yolo_weights", default=paths.yolo_weights,
                     help="YOLOv5 model name or local checkpoint (default: yolo_weights in extra/config.py)")
    mnad = parser.add_argument_group("MNAD (the flags of MNAD/train.py; defaults the published ones)")
    mnad.add_argument("--mnad_method", default="pred", choices=mnad_options.METHODS,
                      help="pred: predict frame 5 from frames 1-4 (default); recon: reconstruct each frame")
    add_flags(mnad, "", mnad_options.SHARED_DEFAULTS,
                  (("epochs", "training epochs"), ("h", "frame height, a multiple of 8"),
                   ("w", "frame width, a multiple of 8"), ("batch_size", "training windows per batch"),
                   ("seed", "seeds the weights, the memory items and the shuffling")))
    dual = parser.add_argument_group("the dual-memory model (DualMemory/train.py's flags as --dual_*; defaults the "
                                     "published ones but --dual_pseudo_anomaly_jump's)")
    add_flags(dual, "dual_", {**dual_options.DEFAULTS, "pseudo_anomaly_jump": DUAL_PSEUDO_ANOMALY_JUMP},
              (("epochs", "training epochs"), ("h", "frame height, a multiple of 8"),
               ("w", "frame width, a multiple of 8"),
               ("lr", "Adam's learning rate, the official one for Avenue and ShanghaiTech, which barely moves the "
                      "weights in a few epochs"),
               ("pseudo_anomaly_jump", "probability that a training clip becomes a skip-frame pseudo-anomaly, "
                                       "trained through the anomaly memory: the value STEAL's README trains with, a "
                                       "guess (DualMemory/SPEC.md section 1); the official default 0 leaves the "
                                       "anomaly memory unused")))
    sweep = parser.add_argument_group("sensitivity to the memory's size, and resuming")
    sweep.add_argument("--msizes", default="5,10,20",
                       help=f"MNAD memory sizes, one training run each (default 5,10,20; the table's row is "
                            f"msize {TRAINED[MNAD].published_size}, the published)")
    sweep.add_argument("--mem_dims", default="500,2000,4000",
                       help=f"dual-memory memory sizes (slots of each memory), one training run each (default "
                            f"500,2000,4000; the table's row is mem_dim {TRAINED[DUAL_MEMORY].published_size}, the "
                            f"published)")
    sweep.add_argument("--coreset_scales", default="0.5,1,2",
                       help="VideoPatchCore: every bank's coreset ratio times each scale (default 0.5,1,2; 1: the "
                            "dataset's ratios)")
    add_bool_flag(sweep, "--overwrite", False, "measure everything again, even what comparison.json holds")
    parser.set_defaults(save_feature=True, save_memory=True, verify=False)
    return parser


def number_list(text, flag, kind, smallest, strictly=False):
    """The sorted distinct numbers of a comma-separated flag, each at least ``smallest`` (above it if
    ``strictly``)."""
    try:
        values = sorted({kind(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise VPCError(f"{flag} takes comma-separated {kind.__name__} values, got {text!r}") from None
    low = [value for value in values if value < smallest or (strictly and value == smallest)]
    if not values or low:
        bound = f"above {smallest:g}" if strictly else f"at least {smallest:g}"
        raise VPCError(f"{flag}: each value must be {bound}, got {text!r}")
    return tuple(values)


def method_list(text):
    """The methods of --methods, in the table's order."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(METHODS))
    if unknown or not names:
        raise VPCError(f"--methods takes comma-separated names among {', '.join(METHODS)}, got {text!r}")
    return tuple(name for name in METHODS if name in names)


@dataclass(frozen=True)
class TrainedRun:
    """A trained method as compared: its description, its run at the published memory size with the flags,
    and the memory sizes of its sensitivity."""

    method: TrainedMethod
    config: object          # the method's config (MNADConfig, DualMemoryConfig), working in <folder>/<key>
    sizes: tuple


@dataclass(frozen=True)
class Comparison:
    """What compare.py measures and where."""

    vpc: MemorizationRun             # the dataset's settings with the flags, working in <folder>/vpc
    detection: DetectionOptions      # the detector and its weights
    trained: dict                    # {key: TrainedRun} of the trained methods compared, in the table's order
    coreset_scales: tuple
    folder: Path                     # <work_dir>/compare/<dataset>
    methods: tuple = METHODS         # the methods compared (--methods)
    overwrite: bool = False


def trained_config(method, args, context, folder, false_alarm_rate):
    """The method's config at its published memory size with compare.py's flags, built by its own parser and
    resolution (its errors name compare.py's flags)."""
    argv = ["--dataset_type", context.settings.name, f"--{method.size}", str(method.published_size),
            "--data_root", str(context.data_root), "--work_dir", str(folder / method.key)]
    for ours, theirs in method.flags:
        argv += [f"--{theirs}", str(getattr(args, ours))]
    try:
        config = method.resolve(method.parser(method.name, evaluation=True).parse_args(argv))
    except VPCError as error:
        message = str(error)
        for ours, theirs in method.flags:
            message = re.sub(rf"--{theirs}\b", f"--{ours}", message)
        raise VPCError(message) from None
    return replace(config, false_alarm_rate=false_alarm_rate)        # one alarm target for every method


def resolve_comparison(args):
    """The Comparison of parsed flags, every value and the dataset's folders checked (no torch)."""
    if args.ray is not None:
        raise VPCError("--ray: compare.py times its runs in this one process; run it without --ray")
    methods = method_list(args.methods)
    scales = number_list(args.coreset_scales, "--coreset_scales", float, 0, strictly=True)
    run = resolve_run(args)
    context = run.context
    for split in ("train", "test"):
        split_folder(context.settings, context.data_root, split)      # a wrong --data_root, said at once
    folder = context.work_dir / "compare" / context.settings.name
    vpc = replace(run, context=replace(context, work_dir=folder / VPC_FOLDER), save_feature=True, save_memory=True,
                  overwrite=False)
    trained = {}
    for key in methods:
        if key in TRAINED:
            method = TRAINED[key]
            sizes = number_list(getattr(args, method.sweep), f"--{method.sweep}", int, 2)
            trained[key] = TrainedRun(method, trained_config(method, args, context, folder, run.false_alarm_rate),
                                      sizes)
    return Comparison(vpc, DetectionOptions(detector=args.detector, yolo_weights=args.yolo_weights), trained, scales,
                      folder, methods, args.overwrite)


def scaled_ratios(ratios, scale):
    """Every bank's coreset ratio times ``scale``, at most 1 (which keeps every patch), rounded to 10
    significant digits (0.1 x 3 is 0.3, not 0.30000000000000004: the ratio names files)."""
    return {bank: min(1.0, float(f"{ratio * scale:.10g}")) for bank, ratio in ratios.items()}


# --- stored measurements ---------------------------------------------------------------------------------

def plain(value):
    """``value`` as JSON gives it back (tuples as lists, paths as strings, keys sorted)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class Measurements:
    """comparison.json: each finished measurement under a key, with the settings it was made with, written
    as soon as it is finished. ``measure`` reuses a stored one of the same settings (unless ``redo``:
    then each is measured again, once)."""

    def __init__(self, path, entries=None, redo=False):
        self.path, self.entries, self.redo, self.fresh, self.table = Path(path), dict(entries or {}), redo, set(), None

    @classmethod
    def load(cls, path, redo=False):
        path = Path(path)
        if not path.is_file():
            return cls(path, redo=redo)
        try:
            document = json.loads(path.read_text())
            if document.get("format") != STORE_FORMAT or not isinstance(document.get("measurements"), dict):
                raise ValueError
        except (ValueError, AttributeError):
            raise VPCError(f"{path} is not a comparison record (damaged?); delete it to measure again") from None
        if document.get("version") != STORE_VERSION:
            return cls(path, redo=redo)         # another version's record: everything is measured again
        store = cls(path, document["measurements"], redo)
        store.table = document.get("table")
        return store

    def stored(self, key, settings):
        """The values stored under ``key`` with these settings, else None."""
        entry = self.entries.get(key)
        if not isinstance(entry, dict) or (self.redo and key not in self.fresh) or \
                entry.get("settings") != plain(settings):
            return None
        return entry.get("values")

    def measure(self, key, settings, compute, usable=lambda values: True):
        """The stored values of ``key`` when made with ``settings`` (and ``usable``), else ``compute()``'s,
        stored."""
        values = self.stored(key, settings)
        if values is not None and usable(values):
            print(f"{key}: measured before, reused from {self.path.name} (--overwrite measures again)", flush=True)
            return values
        print(f"--- measuring {key}", flush=True)
        values = plain(compute())
        self.entries[key] = {"settings": plain(settings), "values": values}
        self.fresh.add(key)
        self.save()
        return values

    def save(self):
        document = {"format": STORE_FORMAT, "version": STORE_VERSION, "measurements": self.entries,
                    "table": self.table}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def timed(seconds, name):
    """Add the block's wall time to ``seconds[name]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started


def total_auroc(results, column):
    """The micro AUROC of the fused total stream in a column ("protocol", "fixed", "label_free") of a
    results dict (extra.evaluation.harness.evaluate); None where the column is absent."""
    return ((results.get(column) or {}).get("streams") or {}).get("total", {}).get("micro")


# --- VideoPatchCore --------------------------------------------------------------------------------------

class Encoder:
    """The run's encoder, loaded once on first use and shared by every VideoPatchCore measurement."""

    def __init__(self, run, device):
        self.run, self.device, self.backbone = run, device, None

    def get(self):
        if self.backbone is None:
            from Memorization.encoders.loader import load_backbone_for

            self.backbone = load_backbone_for(self.run, self.device)
        return self.backbone


def vpc_settings(run, detection, device):
    """What a VideoPatchCore measurement depends on."""
    record = {"method": method_record(run.method), "data_root": run.context.data_root, "detector": detection.detector,
              "label_free": run.label_free, "false_alarm_rate": run.false_alarm_rate, "fixed": asdict(run.fixed),
              "device": device}
    if detection.detector == YOLO:
        record["yolo_weights"] = detection.yolo_weights
    return record


def evaluated(run, model, scored, test_videos, labels, calibration, metadata):
    """Evaluate test scores (Memorization.pipeline.TestScores) in the shared harness and save them as the stage
    does (<work>/results/...); returns (results, the folder)."""
    from extra.evaluation.fusion import fused_per_video
    from extra.evaluation.harness import evaluate
    from extra.evaluation.protocol import VIDEOPATCHCORE
    from extra.evaluation.results import RESULTS_FILE, SCORES_FILE, save_results
    from extra.evaluation.scores import make_video_scores

    scores = make_video_scores(scored.per_bank, [labels[v.name] for v in test_videos], model.streams,
                               [v.name for v in test_videos], [v.first_frame for v in test_videos])
    results = evaluate(scores, VIDEOPATCHCORE, run.fixed, calibration)
    out = results_folder(run.work, run.method)
    metadata = {**method_record(run.method), "fixed": asdict(run.fixed), **metadata,
                "bank_sizes": {name: int(bank.shape[0]) for name, bank in model.banks.items()}}
    save_results(out / SCORES_FILE, out / RESULTS_FILE, scores, results, metadata,
                 fused=fused_per_video(scores, run.fixed))
    return results, out


def measure_vpc(run, detection, encoder):
    """VideoPatchCore from scratch, stage by stage, each timed: detection of each split, the training
    features, the memory banks, the label-free calibration, the test features, the scoring."""
    from extra.datasets import labelled_test_videos, list_videos
    from extra.lock import work_lock
    from Memorization import pipeline
    from Memorization.features import backbone_record, extract_split_features
    from ObjectDetection.pipeline import run_object_detection

    context, work, method, seconds = run.context, run.work, run.method, {}
    anew = replace(run, overwrite=True)          # every feature file made again: the times are of work done
    for split in ("train", "test"):
        with timed(seconds, f"detection_{split}"):
            run_object_detection(context, replace(detection, train_od=split == "train", test_od=split == "test",
                                                  overwrite=True))
    train_videos = list_videos(context.settings, context.data_root, "train", method.consecutive)
    test_videos, labels = labelled_test_videos(context.settings, context.data_root, method.consecutive)
    with work_lock(work.root, work.dataset, work.dataset_folders()):
        with timed(seconds, "encoder_load"):
            backbone = encoder.get()
        fields = backbone_record(backbone)
        with timed(seconds, "train_features"):
            extract_split_features(train_videos, "train", anew, backbone)
        with timed(seconds, "memory_banks"):
            model = pipeline.fitted_model(run, train_videos, fields, None, encoder.device)
            model.save_bank_files(work, fields)
        calibration = None
        if run.label_free:
            with timed(seconds, "calibration"):
                calibration = pipeline.calibration_of(run, model, backbone, fields, True)
        model.calibration = calibration or {}
        model.backbone = backbone.identity()
        model_file = work.model(results_name(method))
        model.save(model_file)
        with timed(seconds, "test_features"):
            extract_split_features(test_videos, "test", anew, backbone)
        with timed(seconds, "scoring"):
            scored = pipeline.score_videos(model, run, test_videos, fields, encoder.device)
        results, out = evaluated(run, model, scored, test_videos, labels, calibration,
                                 {**fields, "device": encoder.device, "seconds": seconds})
    train_seconds = seconds["detection_train"] + seconds["train_features"] + seconds["memory_banks"]
    test_seconds = seconds["detection_test"] + seconds["test_features"] + seconds["scoring"]
    return {"protocol": total_auroc(results, "protocol"), "fixed": total_auroc(results, "fixed"),
            "label_free": total_auroc(results, "label_free"), "seconds": seconds, "train_seconds": train_seconds,
            "test_seconds": test_seconds, "test_frames": results["n_frames"],
            "test_fps": results["n_frames"] / test_seconds,
            "banks": {name: list(bank.shape) for name, bank in model.banks.items()},
            "file_bytes": model_file.stat().st_size, "model_file": model_file, "results": out,
            "random_weights": fields["random_weights"], "encoder": backbone.description}


def measure_vpc_scaled(run, encoder):
    """The protocol AUROC of ``run`` (other coreset ratios) from the features already extracted: banks built
    (or reused) at its ratios, the test videos scored."""
    from extra.datasets import labelled_test_videos
    from extra.lock import work_lock
    from Memorization import pipeline
    from Memorization.features import backbone_record, extract_split_features

    context, work = run.context, run.work
    test_videos, labels = labelled_test_videos(context.settings, context.data_root, run.method.consecutive)
    with work_lock(work.root, work.dataset, work.dataset_folders()):
        backbone = encoder.get()
        fields = backbone_record(backbone)
        model, _ = pipeline.memory_of(run, backbone, fields, encoder.device)
        extract_split_features(test_videos, "test", run, backbone)       # kept when made already
        scored = pipeline.score_videos(model, run, test_videos, fields, encoder.device)
        results, out = evaluated(run, model, scored, test_videos, labels, None,
                                 {**fields, "device": encoder.device, "scoring_seconds": scored.seconds})
    return {"protocol": total_auroc(results, "protocol"), "fixed": total_auroc(results, "fixed"),
            "ratios": run.method.ratios, "banks": {name: list(bank.shape) for name, bank in model.banks.items()},
            "scoring_seconds": scored.seconds, "results": out}


# --- the trained methods ---------------------------------------------------------------------------------

def run_settings(config, device):
    """What a trained method's measurement depends on: every setting of the run but where it writes."""
    record = {name: value for name, value in asdict(config).items() if name not in NOT_SETTINGS}
    return {**record, "device": device}


def measure_training(method, config):
    """``train``'s wall time from the start (a finished or half-trained run of the same name is trained
    again), and the model's memories and size."""
    started = time.perf_counter()
    path = Path(method.train(replace(config, overwrite=True)))
    seconds = time.perf_counter() - started
    checkpoint = method.load_checkpoint(path)
    return {"seconds": seconds, "parameters": sum(p.numel() for p in checkpoint.build().parameters()),
            "memory": method.memory(checkpoint), "file_bytes": path.stat().st_size, "model": path,
            "held_out": checkpoint.settings.get("training", {}).get("held_out")}


def measure_evaluation(method, config):
    """``evaluate_run``'s AUROCs and its scoring rate (results.json's metadata)."""
    from extra.evaluation.results import RESULTS_FILE

    results = method.evaluate(config)
    path = config.run_dir / config.results_name() / RESULTS_FILE
    metadata = json.loads(path.read_text())["metadata"] if path.is_file() else {}
    return {"protocol": total_auroc(results, "protocol"), "fixed": total_auroc(results, "fixed"),
            "label_free": total_auroc(results, "label_free"), "test_fps": metadata.get("test_frames_per_second"),
            "device": metadata.get("device"), "held_out": metadata.get("held_out"), "results": path}


def measure_run(store, method, config, device):
    """(training, evaluation) measurements of one run of a trained method, each stored apart (a training
    stored before its memories were recorded, or whose model is gone, is measured again)."""
    settings, key = run_settings(config, device), f"{config.work_dir.name}/{config.run_name}"
    training = store.measure(f"{key} training", settings, lambda: measure_training(method, config),
                             usable=lambda values: "memory" in values and Path(values["model"]).is_file())
    return training, store.measure(f"{key} evaluation", settings, lambda: measure_evaluation(method, config))


def measure_trained(store, trained, folder, device):
    """A trained method's runs: at the published memory size, at each size of its sweep, and with a
    training video held out (in <folder>/<key>_hold_out)."""
    method, config = trained.method, trained.config
    run = measure_run(store, method, config, device)
    sizes = {size: run if size == getattr(config, method.size)
             else measure_run(store, method, replace(config, **{method.size: size}), device)
             for size in trained.sizes}
    held = replace(config, hold_out=HOLD_OUT, work_dir=folder / f"{method.key}_hold_out")
    return {"run": run, "sizes": sizes, "hold_out": measure_run(store, method, held, device)}


# --- the comparison --------------------------------------------------------------------------------------

def measure_all(comparison, store, encoder, device):
    """Every measurement of the methods compared, stored as it finishes: VideoPatchCore and its coreset
    scales, then each trained method's runs. Returns them by method ("vpc", "coreset_scales", and each
    trained method's key)."""
    measured = {}
    if VPC in comparison.methods:
        run, detection = comparison.vpc, comparison.detection
        measured[VPC] = store.measure(VPC, vpc_settings(run, detection, device),
                                      lambda: measure_vpc(run, detection, encoder))
        scaled, detected = {}, False
        for scale in comparison.coreset_scales:
            if scale == 1:
                scaled[scale] = {"protocol": measured[VPC]["protocol"]}
                continue
            variant = replace(run, method=replace(run.method, ratios=scaled_ratios(run.method.ratios, scale)),
                              label_free=False)
            settings = {**vpc_settings(variant, detection, device), "scale": scale}
            if store.stored(f"vpc coreset x{scale:g}", settings) is None and not detected:
                from ObjectDetection.pipeline import run_object_detection  # finished videos are kept: seconds

                run_object_detection(run.context, detection)
                detected = True
            scaled[scale] = store.measure(f"vpc coreset x{scale:g}", settings,
                                          lambda: measure_vpc_scaled(variant, encoder))
        measured["coreset_scales"] = scaled
    for key, trained in comparison.trained.items():
        measured[key] = measure_trained(store, trained, comparison.folder, device)
    return measured


def vpc_row(vpc, scales):
    return {"method": "VideoPatchCore", "random_weights": vpc["random_weights"], "protocol": vpc["protocol"],
            "fixed": vpc["fixed"], "label_free": vpc["label_free"], "train_seconds": vpc["train_seconds"],
            "test_fps": vpc["test_fps"], "memory": vpc["banks"], "parameters": None, "file_bytes": vpc["file_bytes"],
            "sensitivity": {"label": "coreset scale",
                            "values": [[f"{scale:g}", values["protocol"]] for scale, values in scales.items()]}}


def trained_row(trained, measured):
    """A trained method's row: its run at the published memory size, label-free from its held-out run."""
    (training, evaluation), method = measured["run"], trained.method
    return {"method": method.row_name(trained.config), "random_weights": False,
            "protocol": evaluation["protocol"], "fixed": evaluation["fixed"],
            "label_free": measured["hold_out"][1]["label_free"], "train_seconds": training["seconds"],
            "test_fps": evaluation["test_fps"], "memory": training["memory"], "parameters": training["parameters"],
            "file_bytes": training["file_bytes"],
            "sensitivity": {"label": method.size, "values": [[str(size), values[1]["protocol"]]
                                                             for size, values in measured["sizes"].items()]}}


def rows_of(comparison, measured):
    """The table's rows (comparison.table) from the measurements, in the order of METHODS."""
    rows = [vpc_row(measured[VPC], measured["coreset_scales"])] if VPC in comparison.methods else []
    return rows + [trained_row(trained, measured[key]) for key, trained in comparison.trained.items()]


def vpc_differences(run, detection):
    """VideoPatchCore's settings away from the paper's, in words."""
    settings, method = run.context.settings, run.method
    found = []
    if detection.detector != YOLO:
        found.append(f"detector {detection.detector} (paper: YOLOv5-L)")
    elif detection.yolo_weights != paths.yolo_weights:
        found.append(f"YOLO weights {detection.yolo_weights}")
    if method.random_weights:
        found.append(f"RANDOM {method.backbone} weights")
    elif method.backbone != DEFAULT_ENCODER:
        found.append(f"encoder {method.backbone} (paper: {DEFAULT_ENCODER})")
    for name, value, published in (("clips of", method.consecutive, settings.consecutive),
                                   ("c'", method.cnl_pool, settings.cnl_pool),
                                   ("p", method.pool_for_sm, settings.pool_for_sm)):
        if value != published:
            found.append(f"{name} {value} (published {published})")
    ratios = {bank: ratio for bank, ratio in method.ratios.items() if ratio != settings.coreset_ratio}
    if ratios:
        found.append("coreset ratio " + ", ".join(f"{bank} {ratio:g}" for bank, ratio in ratios.items())
                     + f" (published {settings.coreset_ratio:g})")
    if method.banks != PUBLISHED_BANKS:
        found.append("banks " + ", ".join(method.banks))
    found += [f"switch {tag}" for tag in run_tags(method)]
    return found


def trained_differences(trained):
    """A trained method's settings away from the published ones (the memory size is swept apart), in words."""
    config, method = trained.config, trained.method
    defaults = config.defaults()
    return [f"{name} {getattr(config, name)} (published {defaults[name]})" for name in method.fields
            if name not in (method.size, "hold_out") and name in defaults and getattr(config, name) != defaults[name]]


def listed(names):
    """``a``, ``a and b``, ``a, b and c``."""
    names = list(names)
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else ""


def vpc_notes(run, detection, vpc):
    """What VideoPatchCore's train s and test FPS hold."""
    seconds = vpc["seconds"]

    def s(name):
        return f"{seconds.get(name, 0.0):.1f}"

    return (f"VideoPatchCore train s = object detection of the training split ({detection.detector}, "
            f"{s('detection_train')} s) + CLIP features of the training videos ({s('train_features')} s) + "
            f"coreset memory banks ({s('memory_banks')} s), every file made anew; not included: loading the "
            f"encoder ({s('encoder_load')} s) and the label-free calibration ({s('calibration')} s). Test FPS = "
            f"{vpc['test_frames']} test frames / (object detection {s('detection_test')} s + CLIP features "
            f"{s('test_features')} s + scoring {s('scoring')} s of the test split).")


def trained_time_note(trained):
    """What a trained method's train s and test FPS hold."""
    config, method = trained.config, trained.method
    return (f"{method.name} train s = {method.package}/training.py train()'s wall time from the start "
            f"({config.epochs} epoch(s) of {config.h} x {config.w} {method.window}s of {config.t_length} frames, "
            f"batches of {config.batch_size}); test FPS = its test loop's frames scored per second, one "
            f"{method.window} per frame scored (evaluate_run, model loaded: results.json's test_frames_per_second).")


def label_free_note(method, hold_out):
    """Where a trained method's label-free AUROC comes from: its run with a training video held out."""
    training, evaluation = hold_out
    return (f"{method.name} label-free: a second run, trained with hold_out={HOLD_OUT} without the held-out training "
            f"video(s) {', '.join(training['held_out'] or [])}, which its label-free calibration scores with "
            f"pseudo-anomalies (its protocol AUROC: {_pct(evaluation['protocol'])}); the row's other columns are of "
            f"the run trained on every training video.")


def notes_of(comparison, measured, rows, device):
    """The table's footnotes: what every column measures, on what, and what differs from the papers."""
    run, detection, vpc, trained = comparison.vpc, comparison.detection, measured.get(VPC), comparison.trained
    notes = []
    if vpc and vpc["random_weights"]:
        notes.append(f"WARNING: VideoPatchCore ran with RANDOM (not pretrained) encoder weights ({vpc['encoder']}): "
                     f"its numbers say nothing about the method.")
    scored = f", {vpc['test_frames']} test frames scored by VideoPatchCore" if vpc else ""
    notes.append(f"Dataset {run.context.settings.name} ({run.context.data_root}){scored}; device {device}: every time "
                 f"measured there, in one process.")
    tuned = ["VideoPatchCore's tunes fusion weights and smoothing on the test labels"] if vpc else []
    if trained:
        untuned = [f"{t.method.title}'s" for t in trained.values()]
        tuned.append(f"{listed(untuned)} tune{'s' if len(untuned) == 1 else ''} nothing, so "
                     f"{'it equals' if len(untuned) == 1 else 'they equal'} fixed")
    shared = "the methods share" if len(comparison.methods) > 1 else "of every method"
    notes.append(f"AUROC %: frame-level micro AUROC of the fused total score, from the evaluation {shared} "
                 f"(extra/evaluation): protocol, each method's published protocol ({'; '.join(tuned)}); fixed, weights "
                 f"chosen in advance; label-free, calibrated on training videos alone.")
    if vpc:
        notes.append(vpc_notes(run, detection, vpc))
    notes += [trained_time_note(t) for t in trained.values()]
    memory = memory_note(rows)
    if memory:
        notes.append(memory)
    saved = ["VideoPatchCore's model file (.vpc) holds its memory banks and the encoder's identity, not the frozen "
             "pretrained encoder, and it trains no parameter (parameters n/a)"] if vpc else []
    notes.append("Size: " + "; ".join(saved + [t.method.saved for t in trained.values()]) + ".")
    sensitivity = []
    if vpc:
        ratios = ", ".join(f"{bank} {ratio:g}" for bank, ratio in run.method.ratios.items())
        sensitivity.append(f"VideoPatchCore's protocol AUROC with every bank's coreset ratio times the scale (scale 1: "
                           f"{ratios}), from the same features")
    sensitivity += [f"{t.method.title}'s, one training run per {t.method.size} (published {t.method.published_size}) "
                    f"with the row's other settings" for t in trained.values()]
    notes.append(f"Sensitivity to the memory's size: {'; '.join(sensitivity)}. Spread = max - min, in percentage "
                 f"points.")
    if vpc and not run.label_free:
        notes.append("VideoPatchCore label-free n/a: --label_free=False.")
    for key, t in trained.items():
        notes.append(label_free_note(t.method, measured[key]["hold_out"]))
        notes += t.method.notes(t.config)
    away = [f"VideoPatchCore: {', '.join(found)}" for found in [vpc_differences(run, detection)] if vpc and found]
    away += [f"{t.method.name}: {', '.join(found)}" for t in trained.values() for found in [trained_differences(t)]
             if found]
    if away:
        notes.append("Settings away from the published ones: " + "; ".join(away) + ".")
    return notes


def _pct(auroc):
    return "n/a" if auroc is None else f"{100 * auroc:.1f} %"


METHOD_TITLES = {VPC: "VideoPatchCore", **{key: method.title for key, method in TRAINED.items()}}


def title_of(comparison, device):
    return (f"{listed(METHOD_TITLES[key] for key in comparison.methods)} on {comparison.vpc.context.settings.name}, "
            f"measured on {device}")


def compare(comparison):
    """Measure what is not measured yet, then print and save the table (JSON, Markdown, text); returns
    (rows, notes)."""
    from extra.device import default_device, device_description
    from extra.lock import work_lock

    device = default_device()
    described = device_description(device)
    folder = comparison.folder
    with work_lock(folder, "compare", []):
        store = Measurements.load(folder / JSON_FILE, comparison.overwrite)
        measured = measure_all(comparison, store, Encoder(comparison.vpc, device), described)
        rows = rows_of(comparison, measured)
        notes = notes_of(comparison, measured, rows, described)
        title = title_of(comparison, described)
        store.table = {"title": title, "rows": plain(rows), "notes": notes}
        store.save()
        text = format_text(title, rows, notes)
        write_text(folder / TEXT_FILE, text)
        write_text(folder / MARKDOWN_FILE, format_markdown(title, rows, notes))
    print("\n" + text, flush=True)
    print(f"table: {folder / MARKDOWN_FILE}; measurements and table: {folder / JSON_FILE}", flush=True)
    return rows, notes
