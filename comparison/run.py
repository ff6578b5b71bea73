"""compare.py's library: VideoPatchCore and MNAD run on one dataset, measured, and one table of them.

What is measured, on the device the process runs on:

- VideoPatchCore, from scratch (every file made anew in <compare>/vpc/): training is the object detection of
  the training split + the CLIP features of the training videos + the coreset memory banks; inference is the
  test frames scored / (object detection + CLIP features + scoring of the test split). Loading the encoder
  and the label-free calibration are timed apart. The stages' own functions are called in order
  (ObjectDetection.pipeline, Memorization.pipeline and Memorization.features), nothing of them changed.
- VideoPatchCore's sensitivity: the protocol AUROC with every bank's coreset ratio times each scale, from
  the same features (``scaled_ratios``).
- MNAD (<compare>/mnad/): ``MNAD.training.train``'s wall time from the start, and ``evaluate_run``'s
  results, its scoring rate included; one training run per memory size; for the label-free column a
  run trained with a training video held out (<compare>/mnad_hold_out/).

Every finished measurement is stored at once in <compare>/comparison.json with the settings it was made
with; a rerun reuses those whose settings are the same (``Measurements``), so an interrupted comparison
resumes. Heavy modules (torch, OpenCV) are imported by the measuring functions only: the parser and
the resolution of the flags are cheap (compare.py --help, its argument errors).
"""
import contextlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from comparison.table import format_markdown, format_text, memory_note
from extra import config as paths
from extra.cli import add_bool_flag, base_parser
from extra.datasets import split_folder
from extra.errors import VPCError
from extra.io import atomic_path
from Memorization.cli import add_backbone_arguments, add_evaluation_arguments, add_method_arguments, resolve_run
from Memorization.encoders.registry import DEFAULT_ENCODER
from Memorization.options import PUBLISHED_BANKS, MemorizationRun, method_record, results_folder, results_name, run_tags
from MNAD.options import EVALUATION_FIELDS, METHODS, SHARED_DEFAULTS, TRAINING_FIELDS, MNADConfig, resolve_config
from MNAD.options import build_parser as mnad_parser
from ObjectDetection.options import DETECTORS, YOLO, DetectionOptions

STORE_FORMAT, STORE_VERSION = "vpc-comparison", 1
JSON_FILE, MARKDOWN_FILE, TEXT_FILE = "comparison.json", "comparison.md", "comparison.txt"
PUBLISHED_MSIZE = SHARED_DEFAULTS["msize"]
MNAD_FLAGS = ("epochs", "h", "w", "batch_size", "seed")
# The MNAD run folders under <compare>/: every memory size, and the run with a training video held out.
MNAD_FOLDER, HOLD_OUT_FOLDER, VPC_FOLDER = "mnad", "mnad_hold_out", "vpc"
HOLD_OUT = 1


# --- the command line --------------------------------------------------------------------------------

def build_parser(description):
    """compare.py's flags: the Memorization stage's method, encoder and evaluation flags, the detector,
    MNAD's training flags, and the two sensitivity sweeps."""
    parser = base_parser(description)
    vpc = parser.add_argument_group("VideoPatchCore (the flags of Memorization/run.py and ObjectDetection/run.py)")
    add_method_arguments(vpc)
    add_backbone_arguments(vpc)
    add_evaluation_arguments(vpc)
    vpc.add_argument("--detector", default=YOLO, choices=DETECTORS,
                     help="yolov5 (default, the paper's YOLOv5-L), or motion / hog, needing no weights")
    vpc.add_argument("--yolo_weights", default=paths.yolo_weights,
                     help="YOLOv5 model name or local checkpoint (default: yolo_weights in extra/config.py)")
    mnad = parser.add_argument_group("MNAD (the flags of MNAD/train.py; defaults the published ones)")
    mnad.add_argument("--mnad_method", default="pred", choices=METHODS,
                      help="pred: predict frame 5 from frames 1-4 (default); recon: reconstruct each frame")
    for name, text in (("epochs", "training epochs"), ("h", "frame height, a multiple of 8"),
                       ("w", "frame width, a multiple of 8"), ("batch_size", "training windows per batch"),
                       ("seed", "seeds the weights, the memory items and the shuffling")):
        mnad.add_argument(f"--{name}", type=int, default=SHARED_DEFAULTS[name],
                          help=f"{text} (default {SHARED_DEFAULTS[name]})")
    sweep = parser.add_argument_group("sensitivity to the memory's size, and resuming")
    sweep.add_argument("--msizes", default="5,10,20",
                       help=f"MNAD memory sizes, one training run each (default 5,10,20; the table's row is "
                            f"msize {PUBLISHED_MSIZE}, the published)")
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


@dataclass(frozen=True)
class Comparison:
    """What compare.py measures and where."""

    vpc: MemorizationRun             # the dataset's settings with the flags, working in <folder>/vpc
    detection: DetectionOptions      # the detector and its weights
    mnad: MNADConfig                 # the published msize with the flags, working in <folder>/mnad
    msizes: tuple
    coreset_scales: tuple
    folder: Path                     # <work_dir>/compare/<dataset>
    overwrite: bool = False


def resolve_comparison(args):
    """The Comparison of parsed flags, every value and the dataset's folders checked (no torch)."""
    if args.ray is not None:
        raise VPCError("--ray: compare.py times its runs in this one process; run it without --ray")
    msizes = number_list(args.msizes, "--msizes", int, 2)
    scales = number_list(args.coreset_scales, "--coreset_scales", float, 0, strictly=True)
    run = resolve_run(args)
    context = run.context
    for split in ("train", "test"):
        split_folder(context.settings, context.data_root, split)      # a wrong --data_root, said at once
    folder = context.work_dir / "compare" / context.settings.name
    vpc = replace(run, context=replace(context, work_dir=folder / VPC_FOLDER), save_feature=True, save_memory=True,
                  overwrite=False)
    argv = ["--method", args.mnad_method, "--dataset_type", context.settings.name, "--msize", str(PUBLISHED_MSIZE),
            "--data_root", str(context.data_root), "--work_dir", str(folder / MNAD_FOLDER)]
    for name in MNAD_FLAGS:
        argv += [f"--{name}", str(getattr(args, name))]
    # one alarm target for both methods
    mnad = replace(resolve_config(mnad_parser("MNAD", evaluation=True).parse_args(argv)),
                   false_alarm_rate=run.false_alarm_rate)
    return Comparison(vpc, DetectionOptions(detector=args.detector, yolo_weights=args.yolo_weights), mnad, msizes,
                      scales, folder, args.overwrite)


def scaled_ratios(ratios, scale):
    """Every bank's coreset ratio times ``scale``, at most 1 (which keeps every patch), rounded to 10
    significant digits (0.1 x 3 is 0.3, not 0.30000000000000004: the ratio names files)."""
    return {bank: min(1.0, float(f"{ratio * scale:.10g}")) for bank, ratio in ratios.items()}


# --- stored measurements -------------------------------------------------------------------------------

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


# --- MNAD ------------------------------------------------------------------------------------------------

def mnad_settings(config, device):
    """What an MNAD measurement depends on: every setting of the run but where it writes."""
    record = {name: value for name, value in asdict(config).items()
              if name not in ("work_dir", "overwrite", "figures", "model_dir", "m_items_dir")}
    return {**record, "device": device}


def measure_mnad_training(config):
    """``train``'s wall time from the start (a finished or half-trained run of the same name is trained
    again), and the model's size."""
    from MNAD.checkpoints import load_checkpoint
    from MNAD.training import train

    started = time.perf_counter()
    path = Path(train(replace(config, overwrite=True)))
    seconds = time.perf_counter() - started
    checkpoint = load_checkpoint(path)
    return {"seconds": seconds, "parameters": sum(p.numel() for p in checkpoint.build().parameters()),
            "items": list(checkpoint.items.shape), "file_bytes": path.stat().st_size, "model": path,
            "held_out": checkpoint.settings.get("training", {}).get("held_out")}


def measure_mnad_evaluation(config):
    """``evaluate_run``'s AUROCs and its scoring rate (results.json's metadata)."""
    from extra.evaluation.results import RESULTS_FILE
    from MNAD.evaluation import evaluate_run

    results = evaluate_run(config)
    path = config.run_dir / config.results_name() / RESULTS_FILE
    metadata = json.loads(path.read_text())["metadata"] if path.is_file() else {}
    return {"protocol": total_auroc(results, "protocol"), "fixed": total_auroc(results, "fixed"),
            "label_free": total_auroc(results, "label_free"), "test_fps": metadata.get("test_frames_per_second"),
            "device": metadata.get("device"), "held_out": metadata.get("held_out"), "results": path}


def measure_mnad(store, config, device):
    """(training, evaluation) measurements of one MNAD run, each stored apart."""
    settings, key = mnad_settings(config, device), f"{config.work_dir.name}/{config.run_name}"
    training = store.measure(f"{key} training", settings, lambda: measure_mnad_training(config),
                             usable=lambda values: Path(values["model"]).is_file())
    return training, store.measure(f"{key} evaluation", settings, lambda: measure_mnad_evaluation(config))


# --- the comparison --------------------------------------------------------------------------------------

def measure_all(comparison, store, encoder, device):
    """Every measurement, stored as it finishes: VideoPatchCore, MNAD at the published msize, the coreset
    scales, the other msizes, MNAD's held-out run. Returns them by role."""
    run, detection, config = comparison.vpc, comparison.detection, comparison.mnad
    measured = {"vpc": store.measure("vpc", vpc_settings(run, detection, device),
                                     lambda: measure_vpc(run, detection, encoder))}
    measured["mnad"] = measure_mnad(store, config, device)
    scaled, detected = {}, False
    for scale in comparison.coreset_scales:
        if scale == 1:
            scaled[scale] = {"protocol": measured["vpc"]["protocol"]}
            continue
        variant = replace(run, method=replace(run.method, ratios=scaled_ratios(run.method.ratios, scale)),
                          label_free=False)
        settings = {**vpc_settings(variant, detection, device), "scale": scale}
        if store.stored(f"vpc coreset x{scale:g}", settings) is None and not detected:
            from ObjectDetection.pipeline import run_object_detection  # finished videos are kept: seconds

            run_object_detection(run.context, detection)
            detected = True
        scaled[scale] = store.measure(f"vpc coreset x{scale:g}", settings, lambda: measure_vpc_scaled(variant, encoder))
    measured["coreset_scales"] = scaled
    measured["msizes"] = {msize: measured["mnad"] if msize == config.msize
                          else measure_mnad(store, replace(config, msize=msize), device)
                          for msize in comparison.msizes}
    held = replace(config, hold_out=HOLD_OUT, work_dir=comparison.folder / HOLD_OUT_FOLDER)
    measured["hold_out"] = measure_mnad(store, held, device)
    return measured


def rows_of(comparison, measured):
    """The table's rows (comparison.table) from the measurements."""
    vpc, (training, evaluation), hold_out = measured["vpc"], measured["mnad"], measured.get("hold_out")
    config = comparison.mnad
    vpc_row = {"method": "VideoPatchCore", "random_weights": vpc["random_weights"], "protocol": vpc["protocol"],
               "fixed": vpc["fixed"], "label_free": vpc["label_free"], "train_seconds": vpc["train_seconds"],
               "test_fps": vpc["test_fps"], "memory": vpc["banks"], "parameters": None, "file_bytes": vpc["file_bytes"],
               "sensitivity": {"label": "coreset scale",
                               "values": [[f"{scale:g}", values["protocol"]]
                                          for scale, values in measured["coreset_scales"].items()]}}
    mnad_row = {"method": f"MNAD {config.method} (msize {config.msize})", "random_weights": False,
                "protocol": evaluation["protocol"], "fixed": evaluation["fixed"],
                "label_free": hold_out[1]["label_free"] if hold_out else None,
                "train_seconds": training["seconds"], "test_fps": evaluation["test_fps"],
                "memory": {"items": training["items"]}, "parameters": training["parameters"],
                "file_bytes": training["file_bytes"],
                "sensitivity": {"label": "msize", "values": [[str(msize), values[1]["protocol"]]
                                                             for msize, values in measured["msizes"].items()]}}
    return [vpc_row, mnad_row]


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


def mnad_differences(config):
    """MNAD's settings away from the published ones (the memory size is swept apart), in words."""
    defaults = config.defaults()
    return [f"{name} {getattr(config, name)} (published {defaults[name]})"
            for name in (*TRAINING_FIELDS, *EVALUATION_FIELDS)
            if name not in ("msize", "hold_out") and name in defaults and getattr(config, name) != defaults[name]]


def notes_of(comparison, measured, rows, device):
    """The table's footnotes: what every column measures, on what, and what differs from the papers."""
    run, detection, config = comparison.vpc, comparison.detection, comparison.mnad
    vpc, seconds = measured["vpc"], measured["vpc"]["seconds"]
    training, evaluation = measured["mnad"]
    notes = []
    if vpc["random_weights"]:
        notes.append(f"WARNING: VideoPatchCore ran with RANDOM (not pretrained) encoder weights ({vpc['encoder']}): "
                     f"its numbers say nothing about the method.")
    notes.append(f"Dataset {run.context.settings.name} ({run.context.data_root}), {vpc['test_frames']} test frames "
                 f"scored by VideoPatchCore; device {device}: every time measured there, in one process.")
    notes.append("AUROC %: frame-level micro AUROC of the fused total score, from the evaluation both methods share "
                 "(extra/evaluation): protocol, each method's published protocol (VideoPatchCore's tunes fusion "
                 "weights and smoothing on the test labels; MNAD's tunes nothing, so it equals fixed); fixed, weights "
                 "chosen in advance; label-free, calibrated on training videos alone.")

    def s(name):
        return f"{seconds.get(name, 0.0):.1f}"

    notes.append(f"VideoPatchCore train s = object detection of the training split ({detection.detector}, "
                 f"{s('detection_train')} s) + CLIP features of the training videos ({s('train_features')} s) + "
                 f"coreset memory banks ({s('memory_banks')} s), every file made anew; not included: loading the "
                 f"encoder ({s('encoder_load')} s) and the label-free calibration ({s('calibration')} s). Test FPS = "
                 f"{vpc['test_frames']} test frames / (object detection {s('detection_test')} s + CLIP features "
                 f"{s('test_features')} s + scoring {s('scoring')} s of the test split).")
    notes.append(f"MNAD train s = MNAD/training.py train()'s wall time from the start ({config.epochs} epoch(s) of "
                 f"{config.h} x {config.w} windows of {config.t_length} frames, batches of {config.batch_size}); test "
                 f"FPS = its test loop's frames scored per second (evaluate_run, model loaded: results.json's "
                 f"test_frames_per_second).")
    memory = memory_note(rows)
    if memory:
        notes.append(memory)
    notes.append("Size: VideoPatchCore's model file (.vpc) holds its memory banks and the encoder's identity, not the "
                 "frozen pretrained encoder, and it trains no parameter (parameters n/a); MNAD's checkpoint holds its "
                 "trained weights and memory items.")
    ratios = ", ".join(f"{bank} {ratio:g}" for bank, ratio in run.method.ratios.items())
    notes.append(f"Sensitivity to the memory's size: VideoPatchCore's protocol AUROC with every bank's coreset ratio "
                 f"times the scale (scale 1: {ratios}), from the same features; MNAD's, one training run per msize "
                 f"(published {PUBLISHED_MSIZE}) with the row's other settings. Spread = max - min, in percentage "
                 f"points.")
    if not run.label_free:
        notes.append("VideoPatchCore label-free n/a: --label_free=False.")
    hold_out = measured["hold_out"]
    named = ", ".join(hold_out[0]["held_out"])
    notes.append(f"MNAD label-free: a second run, trained with hold_out={HOLD_OUT} without the held-out training "
                 f"video(s) {named}, which its label-free calibration scores with pseudo-anomalies (its protocol "
                 f"AUROC: {_pct(hold_out[1]['protocol'])}); the row's other columns are of the run trained on every "
                 f"training video.")
    away = [f"VideoPatchCore: {', '.join(found)}" for found in [vpc_differences(run, detection)] if found]
    away += [f"MNAD: {', '.join(found)}" for found in [mnad_differences(config)] if found]
    if away:
        notes.append("Settings away from the published ones: " + "; ".join(away) + ".")
    return notes


def _pct(auroc):
    return "n/a" if auroc is None else f"{100 * auroc:.1f} %"


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
        title = f"VideoPatchCore and MNAD on {comparison.vpc.context.settings.name}, measured on {described}"
        store.table = {"title": title, "rows": plain(rows), "notes": notes}
        store.save()
        text = format_text(title, rows, notes)
        write_text(folder / TEXT_FILE, text)
        write_text(folder / MARKDOWN_FILE, format_markdown(title, rows, notes))
    print("\n" + text, flush=True)
    print(f"table: {folder / MARKDOWN_FILE}; measurements and table: {folder / JSON_FILE}", flush=True)
    return rows, notes
