"""Reproduce the paper's tables: every configuration a table needs, printed beside the published values.

    python reproduce.py --dataset shanghai --table 6      (from this folder, or Memorization/reproduce.py from the root)

--table is 2, 3, 4, 5, 6, 7, appendix or all. All configurations come from one set of object
detections (run ObjectDetection/run.py first) and one set of features: features that are missing
are extracted as Memorization/run.py does, into the same files (head / random compression into
l_features/<dataset>/<c'>_<mode>/). Memory banks are built in memory, shared by the
configurations that have the same bank, and never written over the stage's banks. Each
configuration's scores and results are cached in <work_dir>/reproduce/<dataset>/<c'>/<name>/,
so a rerun prints from the cache without features, backbone or banks.
"""
import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastprogress.fastprogress import progress_bar  # noqa: E402

from extra.cli import add_bool_flag, base_parser, resolve_context  # noqa: E402
from extra.datasets import list_videos, labelled_test_videos  # noqa: E402
from extra.device import default_device, device_description  # noqa: E402
from extra.errors import VPCError, run_main  # noqa: E402
from extra.io import atomic_path  # noqa: E402
from extra.workdir import WorkDir  # noqa: E402
from Memorization import pipeline  # noqa: E402
from Memorization.evaluation import (  # noqa: E402
    RESULTS_FILE, SCORES_FILE, FusionWeights, evaluate, evaluate_streams, load_results, save_results,
)
from Memorization.features import (  # noqa: E402
    extract_split_features, extract_video_features, extraction_time,
)
from Memorization.options import BANKS, COMPRESSIONS, bank_record, results_name  # noqa: E402
from Memorization.patches import temporal_pooling  # noqa: E402
from Memorization.run import (  # noqa: E402
    add_backbone_arguments, add_evaluation_arguments, add_method_arguments, options_from_args,
)
from Memorization.tables import (  # noqa: E402
    NOT_IN_PAPER, TABLE_KEYS, Measured, build_table, format_table, measured_from_results,
)

# Options that do not change a configuration's scores (run control, and the fixed weights,
# which are re-evaluated from the cached scores when they change).
NOT_RECORDED = ("save_feature", "save_memory", "overwrite", "fixed_a1", "fixed_b1", "fixed_sigma")
RANDOM_WARNING = ("> **WARNING: made with random (not pretrained) weights; "
                  "these numbers say nothing about the method.**")


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    parser.epilog = __doc__.split("\n\n", 2)[2]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--table", required=True, choices=(*TABLE_KEYS, "all"),
                        help="the paper's table to reproduce: 2 to 7, appendix, or all of them")
    add_method_arguments(parser)
    add_backbone_arguments(parser)
    add_evaluation_arguments(parser)
    add_bool_flag(parser, "--overwrite", False, "extract the features and compute every configuration again")
    parser.set_defaults(save_feature=True, save_memory=False)     # fields of the options the runner does not use
    return parser


# --- configurations ---------------------------------------------------------------------------------

def configure(base, variant):
    """The options of a table row: the base options with the row's variant applied."""
    changes = {name: getattr(variant, name) for name in ("compression", "temporal_pooling", "bank_order")
               if getattr(variant, name) is not None}
    if variant.ratio is not None:
        changes["ratios"] = dict.fromkeys(BANKS, variant.ratio)
    return replace(base, **changes)


def configurations_of(tables, base):
    """{cache name: options} of every configuration the tables need, each once."""
    configurations = {}
    for table in tables:
        for row in table.rows:
            options = configure(base, row.variant)
            configurations.setdefault(results_name(options), options)
    return configurations


def configuration_record(options, context):
    """Everything a configuration's scores depend on, as JSON reads it back."""
    record = {"dataset": context.settings.name, "consecutive": context.consecutive,
              "power_n": context.settings.power_n,
              **{key: value for key, value in asdict(options).items() if key not in NOT_RECORDED}}
    return json.loads(json.dumps(record, sort_keys=True))


def fixed_weights(options):
    return FusionWeights.chosen(options.fixed_a1, options.fixed_b1, options.fixed_sigma)


def bank_key(bank, options):
    """What a bank's content depends on: its record, with the temporal pooling reduced to the one
    used when memorising (mismatched and avg memorise alike)."""
    record = bank_record(bank, options, None, None, {})
    if bank == "temporal":
        record["temporal_pooling"] = temporal_pooling("train", options.temporal_pooling)
    return bank, json.dumps(record, sort_keys=True)


# --- the cache --------------------------------------------------------------------------------------

@dataclass
class Entry:
    """One configuration's evaluation (``evaluation.evaluate``'s dict) and how it was made."""

    results: dict
    metadata: dict


def load_cached(folder, record, weights):
    """The cached entry made with ``record``, its fixed-weight part re-evaluated for ``weights``; else None."""
    if not ((folder / SCORES_FILE).is_file() and (folder / RESULTS_FILE).is_file()):
        return None
    saved = load_results(folder / SCORES_FILE, folder / RESULTS_FILE)
    if saved.metadata.get("record") != record:
        print(f"{folder} was made with other settings: computing it again", flush=True)
        return None
    results = saved.results
    if results["fixed"]["weights"] != asdict(weights):
        results = {**results, "fixed": {"weights": asdict(weights),
                                        "streams": evaluate_streams(saved.scores, weights)}}
    return Entry(results, saved.metadata)


# --- computing configurations -----------------------------------------------------------------------

@dataclass
class Data:
    """The dataset's videos and labels, and where the stage's files are."""

    work: WorkDir
    train_videos: list
    test_videos: list
    labels: dict


def load_data(context):
    settings, d = context.settings, context.consecutive
    test_videos, labels = labelled_test_videos(settings, context.data_root, d)
    return Data(WorkDir(context.work_dir, settings.name), list_videos(settings, context.data_root, "train", d),
                test_videos, labels)


def require_objects(data, dataset):
    """Every video's object batches, which only the detection stage makes."""
    missing = [path for split, videos in (("train", data.train_videos), ("test", data.test_videos))
               for path in (data.work.object_batches(split, video.name) for video in videos) if not path.is_file()]
    if missing:
        raise VPCError(f"object batches not found: {missing[0]} ({len(missing)} missing); run "
                       f"ObjectDetection/run.py --dataset={dataset} with the same --work_dir, --work_num "
                       f"and --consecutive first")


class LazyEncoder:
    """The encoder of the base options, loaded on first use only (CLIP's import alone takes seconds)."""

    def __init__(self, options, device):
        self.options, self.device, self.model = options, device, None

    def get(self):
        if self.model is None:
            from Memorization.backbone import load_backbone

            self.model = load_backbone(self.options.backbone, device=self.device,
                                       random_weights=self.options.random_weights)
            print(f"backbone: {self.model.description}", flush=True)
        return self.model


def compute(context, base, missing, encoder):
    """Entries of the configurations ``missing`` ({name: options}): features extracted where missing
    (one encoder pass for all the compressions needed), banks built once for all configurations
    that share them, scores timed, everything cached."""
    settings, d = context.settings, context.consecutive
    data = load_data(context)
    require_objects(data, settings.name)
    device = encoder.device
    backbone = encoder.get()
    compressions = tuple(c for c in COMPRESSIONS if any(o.compression == c for o in missing.values()))
    for split, videos in (("train", data.train_videos), ("test", data.test_videos)):
        extract_split_features(videos, split, data.work, backbone, settings, d, base.cnl_pool, base.normalization,
                               base.overwrite, compressions, base.compression_seed)
    made_with = {"backbone": backbone.description, "random_weights": bool(backbone.random_weights),
                 "scoring_device": device_description(device)}
    memo, entries, todo = {}, {}, list(missing.items())
    for index, (name, options) in enumerate(todo):
        print(f"configuration {index + 1}/{len(todo)}: {name}", flush=True)
        banks = memory_banks(data, options, memo)
        entries[name] = score_configuration(context, data, options, banks, device, made_with)
        still_needed = {bank_key(bank, later) for _, later in todo[index + 1:] for bank in BANKS}
        for key in set(memo) - still_needed:
            del memo[key]
    return entries


def memory_banks(data, options, memo):
    """The three banks of ``options``, built from the training features unless ``memo`` holds them."""
    keys = {bank: bank_key(bank, options) for bank in BANKS}
    to_build = tuple(bank for bank in BANKS if keys[bank] not in memo)
    if to_build:
        patches = pipeline.training_patches(data.train_videos, data.work, options, to_build)
        for bank in to_build:
            memo[keys[bank]] = pipeline.memorise(patches.pop(bank), bank, options)
    return {bank: memo[keys[bank]] for bank in BANKS}


def score_configuration(context, data, options, banks, device, made_with):
    """Score the test videos (timed, reading the feature files excluded), evaluate, cache."""
    on_device = {bank: tensor.to(device) for bank, tensor in banks.items()}
    per_video, seconds = [], 0.0
    for video in progress_bar(data.test_videos, leave=False):
        local, glob = pipeline.read_video_features(data.work, options, "test", video.name)
        started = time.perf_counter()
        per_video.append(pipeline.score_video(local, glob, on_device, options, context.settings.power_n,
                                              context.consecutive, device))
        seconds += time.perf_counter() - started
    scores = pipeline.video_scores(per_video, data.test_videos, data.labels)
    results = evaluate(scores, fixed_weights(options))
    metadata = {"record": configuration_record(options, context), **made_with, "scoring_seconds": seconds,
                "scored_frames": int(sum(scores.lengths)),
                "bank_sizes": {bank: int(tensor.shape[0]) for bank, tensor in banks.items()}}
    folder = data.work.reproduce(options.cnl_pool) / results_name(options)
    save_results(folder / SCORES_FILE, folder / RESULTS_FILE, scores, results, metadata)
    return Entry(results, metadata)


def run_configurations(context, base, configurations, encoder):
    """{name: Entry} for ``configurations``: cached ones read back, the others computed."""
    work = WorkDir(context.work_dir, context.settings.name)
    entries, missing = {}, {}
    for name, options in configurations.items():
        cached = None if base.overwrite else load_cached(work.reproduce(options.cnl_pool) / name,
                                                         configuration_record(options, context),
                                                         fixed_weights(options))
        if cached is None:
            missing[name] = options
        else:
            entries[name] = cached
    if missing:
        entries.update(compute(context, base, missing, encoder))
    else:
        print(f"all {len(entries)} configurations read from {work.reproduce(base.cnl_pool)}", flush=True)
    return entries


# --- speed (Table 6) --------------------------------------------------------------------------------

def feature_time(context, base, encoder):
    """(seconds, device) of extracting the test features with the base options.

    Read from the feature files (each records its extraction time); where one lacks it (files made
    elsewhere), the extraction is timed once into a temporary folder and the result cached.
    """
    data = load_data(context)
    paths = [path for video in data.test_videos
             for path in (data.work.local_features(base.local_folder, "test", video.name),
                          data.work.global_features(base.global_folder, "test", video.name))]
    recorded = [extraction_time(path) if path.is_file() else None for path in paths]
    if all(recorded):
        return sum(r["seconds"] for r in recorded), " / ".join(sorted({r["device"] for r in recorded}))
    cache = data.work.reproduce(base.cnl_pool) / "feature_time.json"
    record = {"local": base.local_folder, "global": base.global_folder, "consecutive": context.consecutive,
              "backbone": base.backbone, "random_weights": base.random_weights}
    if cache.is_file() and json.loads(cache.read_text())["record"] == record:
        saved = json.loads(cache.read_text())
        return saved["seconds"], saved["device"]
    require_objects(data, context.settings.name)
    backbone = encoder.get()
    seconds, devices = 0.0, set()
    with tempfile.TemporaryDirectory() as tmp:
        local, glob = Path(tmp) / "local.h5", Path(tmp) / "global.h5"
        for video in progress_bar(data.test_videos):
            extract_video_features(video, data.work.object_batches("test", video.name), backbone, context.settings,
                                   context.consecutive, base.cnl_pool, {base.compression: local}, glob,
                                   base.normalization, True, base.compression_seed)
            for timing in (extraction_time(local), extraction_time(glob)):
                seconds += timing["seconds"]
                devices.add(timing["device"])
    device = " / ".join(sorted(devices))
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps({"record": record, "seconds": seconds, "device": device}))
    return seconds, device


# --- printing ---------------------------------------------------------------------------------------

def table_notes(table, entries, context, base, timing):
    """The caption lines under a table's heading."""
    weights = fixed_weights(base)
    notes = [RANDOM_WARNING, ""] if any(entry.metadata["random_weights"] for entry in entries) else []
    notes.append(f"AUROC % (frame-level micro) through the published protocol (Memorization.evaluation: fusion "
                 f"weights and smoothing tuned on the test labels, as the paper's tables were made); fixed weights: "
                 f"a1={weights.a1}, b1={weights.b1}, sigma={weights.sigma} chosen in advance. Paper: the authors' "
                 f"slides (SPEC 9), {NOT_IN_PAPER} where they report no value.")
    ratios = sorted({float(ratio) for ratio in base.ratios.values()})
    ratio_text = (f"coreset ratio {ratios[0]}" if len(ratios) == 1
                  else "coreset ratios " + ", ".join(f"{bank} {base.ratios[bank]}" for bank in BANKS))
    backbones = "; ".join(sorted({entry.metadata["backbone"] for entry in entries}))
    notes.append(f"Settings: d={context.consecutive}, c'={base.cnl_pool}, p={base.pool_for_sm}, {ratio_text} "
                 f"unless the row says otherwise; {backbones}.")
    if table.key == "3":
        notes.append(f"Random: the channels of Memorization.features.random_channels with seed {base.compression_seed}.")
    if table.fps:
        seconds, device = timing
        scoring = "; ".join(sorted({entry.metadata["scoring_device"] for entry in entries}))
        notes.append(f"FPS = scored test frames / (test feature extraction + scoring at that ratio). Feature "
                     f"extraction (reading frames and object crops, CLIP forward, writing the feature files; object "
                     f"detection not included), measured once: {seconds:.1f} s on {device}. Scoring (patches and "
                     f"nearest-neighbour search; reading the feature files excluded) on {scoring}. The paper's FPS "
                     f"were measured on the authors' hardware.")
    return notes


def render(table, entries, context, base, timing):
    """Markdown of one table from the entries of its configurations."""
    measured, used = [], []
    for row in table.rows:
        entry = entries[results_name(configure(base, row.variant))]
        auroc, fixed = measured_from_results(entry.results, row.metric)
        fps = None
        if table.fps:
            fps = entry.metadata["scored_frames"] / (timing[0] + entry.metadata["scoring_seconds"])
        measured.append(Measured(auroc, fixed, fps))
        used.append(entry)
    return format_table(table, context.settings.name, measured, table_notes(table, used, context, base, timing))


def main(argv=None):
    args = build_parser().parse_args(argv)
    context = resolve_context(args)
    base = options_from_args(args, context.settings)
    keys = TABLE_KEYS if args.table == "all" else (args.table,)
    tables = [build_table(key, context.settings.name) for key in keys]
    encoder = LazyEncoder(base, default_device())
    entries = run_configurations(context, base, configurations_of(tables, base), encoder)
    timing = feature_time(context, base, encoder) if any(table.fps for table in tables) else None
    print()
    print("\n".join(render(table, entries, context, base, timing) for table in tables), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
