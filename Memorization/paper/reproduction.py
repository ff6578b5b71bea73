"""The table runner: every configuration a table of the paper needs, measured and printed beside
the published values (Memorization/reproduce.py is its command).

All configurations come from one set of object detections and one set of features: features that
are missing are extracted as the stage does, into the same files (head / random compression into
l_features/<dataset>/<c'>_<mode>/). Memory banks are built in memory, shared by the configurations
that have the same bank, and never written over the stage's banks. Each configuration's scores and
results are cached in <work_dir>/reproduce/<dataset>/<c'>/<name>/, so a rerun prints from the cache
without features, backbone or banks.
"""
import json
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from extra.datasets import labelled_test_videos, list_videos
from extra.device import default_device, device_description
from extra.errors import VPCError
from extra.evaluation.harness import evaluate, evaluate_streams
from extra.evaluation.protocol import VIDEOPATCHCORE
from extra.evaluation.results import RESULTS_FILE, SCORES_FILE, load_results, save_results
from extra.evaluation.scores import make_video_scores
from extra.io import atomic_path
from extra.lock import work_lock
from extra.progress import progress
from extra.workdir import WorkDir
from Memorization import pipeline
from Memorization.banks.patches import temporal_pooling
from Memorization.banks.specs import STREAMS, bank_record, specs_of
from Memorization.calibration.heldout import label_free_calibration
from Memorization.features import (
    backbone_record, extract_split_features, extraction_time, feature_record, write_global_features,
    write_local_features,
)
from Memorization.model import VideoPatchCore
from Memorization.options import COMPRESSIONS, method_record, results_name
from Memorization.paper.tables import NOT_IN_PAPER, build_table, format_table, measured_from_results

RANDOM_WARNING = ("> **WARNING: made with random (not pretrained) weights; "
                  "these numbers say nothing about the method.**")


def configure(base, variant):
    """The run of a table row: the base run with the row's variant applied to its method."""
    changes = {name: getattr(variant, name) for name in ("compression", "temporal_pooling", "bank_order")
               if getattr(variant, name) is not None}
    if variant.ratio is not None:
        changes["ratios"] = dict.fromkeys(base.method.ratios, variant.ratio)
    return replace(base, method=replace(base.method, **changes))


def configurations_of(tables, base):
    """{cache name: run} of every configuration the tables need, each once."""
    configurations = {}
    for table in tables:
        for row in table.rows:
            run = configure(base, row.variant)
            configurations.setdefault(results_name(run.method), run)
    return configurations


def configuration_record(run):
    """Everything a configuration's results depend on (but the fixed weights), as JSON reads it back."""
    record = {**method_record(run.method), "label_free": run.label_free, "false_alarm_rate": run.false_alarm_rate}
    return json.loads(json.dumps(record, sort_keys=True))


def bank_key(spec, method):
    """What a bank's content depends on: its record, with the temporal pooling reduced to the one
    used when memorising (mismatched and avg memorise alike)."""
    record = bank_record(spec, method, {})
    if "temporal_pooling" in record:
        record["temporal_pooling"] = temporal_pooling("train", method.temporal_pooling)
    return spec.name, json.dumps(record, sort_keys=True)


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
                                        "streams": evaluate_streams(saved.scores, VIDEOPATCHCORE, weights, saved.scores.aligned_labels)}}
    return Entry(results, saved.metadata)


@dataclass
class Data:
    """The dataset's videos and labels, and where the stage's files are."""

    work: WorkDir
    train_videos: list
    test_videos: list
    labels: dict


def load_data(run):
    context, d = run.context, run.method.consecutive
    test_videos, labels = labelled_test_videos(context.settings, context.data_root, d)
    return Data(run.work, list_videos(context.settings, context.data_root, "train", d), test_videos, labels)


def require_objects(data, dataset):
    """Every video's object batches, which only the detection stage makes."""
    missing = [path for split, videos in (("train", data.train_videos), ("test", data.test_videos))
               for path in (data.work.object_batches(split, video.name) for video in videos) if not path.is_file()]
    if missing:
        raise VPCError(f"object batches not found: {missing[0]} ({len(missing)} missing); run "
                       f"ObjectDetection/run.py --dataset={dataset} with the same --work_dir, --work_num "
                       f"and --consecutive first")


class LazyEncoder:
    """The encoder of the base run, loaded on first use only (CLIP's import alone takes seconds)."""

    def __init__(self, run, device):
        self.run, self.device, self.model = run, device, None

    def get(self):
        if self.model is None:
            self.model = pipeline.load_backbone_for(self.run, self.device)
        return self.model


def compute(base, missing, encoder):
    """Entries of the configurations ``missing`` ({name: run}): features extracted where missing
    (one encoder pass for all the compressions needed), banks built once for all configurations
    that share them, scores timed, everything cached."""
    data = load_data(base)
    require_objects(data, base.method.dataset)
    device = encoder.device
    backbone = encoder.get()
    compressions = tuple(c for c in COMPRESSIONS if any(run.method.compression == c for run in missing.values()))
    for split, videos in (("train", data.train_videos), ("test", data.test_videos)):
        extract_split_features(videos, split, base, backbone, compressions)
    fields = backbone_record(backbone)
    made_with = {"backbone": backbone.description, "random_weights": bool(backbone.random_weights),
                 "scoring_device": device_description(device)}
    memo, pseudo, entries, todo = {}, {}, {}, list(missing.items())
    for index, (name, run) in enumerate(todo):
        print(f"configuration {index + 1}/{len(todo)}: {name}", flush=True)
        model = VideoPatchCore(run.method, banks=memory_banks(data, run, fields, memo), backbone=fields)
        if run.label_free:
            model.calibration = label_free_calibration(
                model, run, data.train_videos, backbone,
                lambda video, run=run: pipeline.read_video_features(run, "train", video.name, fields), pseudo)
        entries[name] = score_configuration(data, run, model, device, made_with)
        still_needed = {bank_key(spec, later.method) for _, later in todo[index + 1:]
                        for spec in specs_of(later.method.banks)}
        for key in set(memo) - still_needed:
            del memo[key]
    return entries


def memory_banks(data, run, fields, memo):
    """The banks of ``run``, built from the training features unless ``memo`` holds them."""
    specs = specs_of(run.method.banks)
    keys = {spec.name: bank_key(spec, run.method) for spec in specs}
    to_build = tuple(spec for spec in specs if keys[spec.name] not in memo)
    if to_build:
        built = pipeline.fitted_model(run, data.train_videos, fields, to_build)
        for spec in to_build:
            memo[keys[spec.name]] = built.banks[spec.name]
    return {spec.name: memo[keys[spec.name]] for spec in specs}


def score_configuration(data, run, model, device, made_with):
    """Score the test videos (timed, reading the feature files excluded), evaluate, cache."""
    scored = pipeline.score_videos(model, run, data.test_videos, model.backbone, device)
    if scored.search_errors:
        made_with = {**made_with, "search_errors": scored.search_errors}
    scores = make_video_scores(scored.per_bank, [data.labels[v.name] for v in data.test_videos], model.streams,
                               [v.name for v in data.test_videos])
    results = evaluate(scores, VIDEOPATCHCORE, run.fixed, model.calibration or None)
    metadata = {"record": configuration_record(run), **made_with, "scoring_seconds": scored.seconds,
                "scored_frames": int(sum(scores.lengths)),
                "bank_sizes": {name: int(bank.shape[0]) for name, bank in model.banks.items()}}
    folder = data.work.reproduce(run.method.cnl_pool) / results_name(run.method)
    save_results(folder / SCORES_FILE, folder / RESULTS_FILE, scores, results, metadata)
    return Entry(results, metadata)


def run_configurations(base, configurations, encoder):
    """{name: Entry} for ``configurations``: cached ones read back, the others computed."""
    work = base.work
    entries, missing = {}, {}
    for name, run in configurations.items():
        cached = None if base.overwrite else load_cached(work.reproduce(run.method.cnl_pool) / name,
                                                         configuration_record(run), run.fixed)
        if cached is None:
            missing[name] = run
        else:
            entries[name] = cached
    if missing:
        entries.update(compute(base, missing, encoder))
    else:
        print(f"all {len(entries)} configurations read from {work.reproduce(base.method.cnl_pool)}", flush=True)
    return entries


def feature_time(base, encoder):
    """(seconds, device) of extracting the test features with the base run's method.

    Read from the feature files (each records its extraction time); where one lacks it (files made
    elsewhere), the extraction is timed once into a temporary folder and the result cached.
    """
    data, method = load_data(base), base.method
    paths = {name: [STREAMS[name].path(data.work, method, "test", video.name) for video in data.test_videos]
             for name in STREAMS}
    recorded = [extraction_time(path, STREAMS[name].kind) if path.is_file() else None
                for name in STREAMS for path in paths[name]]
    if all(recorded):
        return sum(r["seconds"] for r in recorded), " / ".join(sorted({r["device"] for r in recorded}))
    cache = data.work.reproduce(method.cnl_pool) / "feature_time.json"
    record = {"local": method.local_folder, "global": method.global_folder, "consecutive": method.consecutive,
              "backbone": method.backbone, "random_weights": method.random_weights}
    if cache.is_file() and json.loads(cache.read_text())["record"] == record:
        saved = json.loads(cache.read_text())
        return saved["seconds"], saved["device"]
    require_objects(data, method.dataset)
    backbone = encoder.get()
    fields = backbone_record(backbone)
    seconds, devices = 0.0, set()
    with tempfile.TemporaryDirectory() as tmp:
        local, glob = Path(tmp) / "local.h5", Path(tmp) / "global.h5"
        for video in progress(data.test_videos, "timing test features"):
            n_clips = video.n_clips(method.consecutive)
            write_local_features(data.work.object_batches("test", video.name), n_clips, backbone, method,
                                 {method.compression: (local, feature_record(STREAMS["local"], method, fields))})
            write_global_features(video, backbone, method, glob, feature_record(STREAMS["global"], method, fields))
            for path, name in ((local, "local"), (glob, "global")):
                timing = extraction_time(path, STREAMS[name].kind)
                seconds += timing["seconds"]
                devices.add(timing["device"])
    device = " / ".join(sorted(devices))
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps({"record": record, "seconds": seconds, "device": device}))
    return seconds, device


def table_notes(table, entries, base, timing):
    """The caption lines under a table's heading."""
    weights, method = base.fixed, base.method
    notes = [RANDOM_WARNING, ""] if any(entry.metadata["random_weights"] for entry in entries) else []
    notes.append(f"AUROC % (frame-level micro) through the published protocol (extra.evaluation: fusion "
                 f"weights and smoothing tuned on the test labels, as the paper's tables were made); fixed weights: "
                 f"a1={weights.a1}, b1={weights.b1}, sigma={weights.sigma} chosen in advance"
                 + ("; label-free: weights, smoothing and per-bank normalisation calibrated on each configuration's "
                    "training videos alone (Memorization.calibration)" if base.label_free else "")
                 + f". Paper: the authors' slides (SPEC 9), {NOT_IN_PAPER} where they report no value.")
    ratios = sorted({float(ratio) for ratio in method.ratios.values()})
    ratio_text = (f"coreset ratio {ratios[0]}" if len(ratios) == 1
                  else "coreset ratios " + ", ".join(f"{bank} {ratio}" for bank, ratio in method.ratios.items()))
    backbones = "; ".join(sorted({entry.metadata["backbone"] for entry in entries}))
    notes.append(f"Settings: d={method.consecutive}, c'={method.cnl_pool}, p={method.pool_for_sm}, {ratio_text} "
                 f"unless the row says otherwise; {backbones}.")
    if table.key == "3":
        notes.append(f"Random: the channels of Memorization.features.random_channels with seed {method.compression_seed}.")
    if table.fps:
        seconds, device = timing
        scoring = "; ".join(sorted({entry.metadata["scoring_device"] for entry in entries}))
        notes.append(f"FPS = scored test frames / (test feature extraction + scoring at that ratio). Feature "
                     f"extraction (reading frames and object crops, CLIP forward, writing the feature files; object "
                     f"detection not included), measured once: {seconds:.1f} s on {device}. Scoring (patches and "
                     f"nearest-neighbour search; reading the feature files excluded) on {scoring}. The paper's FPS "
                     f"were measured on the authors' hardware.")
    return notes


def render(table, entries, base, timing):
    """Markdown of one table from the entries of its configurations."""
    measured, used = [], []
    for row in table.rows:
        entry = entries[results_name(configure(base, row.variant).method)]
        fps = None
        if table.fps:
            fps = entry.metadata["scored_frames"] / (timing[0] + entry.metadata["scoring_seconds"])
        measured.append(measured_from_results(entry.results, row.metric, fps))
        used.append(entry)
    return format_table(table, base.method.dataset, measured, table_notes(table, used, base, timing))


def reproduce_tables(base, keys):
    """Markdown of the tables ``keys`` for the base run: cached configurations read, the others computed."""
    tables = [build_table(key, base.method.dataset) for key in keys]
    encoder = LazyEncoder(base, default_device())
    work = base.work
    with work_lock(work.root, work.dataset, work.dataset_folders()):
        entries = run_configurations(base, configurations_of(tables, base), encoder)
        timing = feature_time(base, encoder) if any(table.fps for table in tables) else None
    return "\n".join(render(table, entries, base, timing) for table in tables)
