"""The Memorization stage end to end: features, memory banks, scores, evaluation.

Every step reuses what a previous run left when it was made with the same settings (each file
records them), so a rerun only does what is missing. ``save_feature`` / ``save_memory`` keep
the published meaning: when false, saved test features / memory banks are used and never made.
"""
import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from extra.datasets import labelled_test_videos, list_videos
from extra.device import default_device
from extra.errors import VPCError, warn
from extra.evaluation.fusion import LOCAL_FUSION, calibrated_local, fused_per_video, local_score
from extra.evaluation.harness import evaluate
from extra.evaluation.protocol import VIDEOPATCHCORE
from extra.evaluation.regions import DEFAULT_CONVENTION, load_mask_tracks, load_region_tracks, rbdc_tbdc
from extra.evaluation.results import RESULTS_FILE, SCORES_FILE, format_results, save_results
from extra.evaluation.scores import make_video_scores
from extra.lock import work_lock
from extra.progress import progress
from extra.provenance import read_json_record, write_json_record
from extra.sharding import map_videos
from extra.store import open_clip_file, read_clip_file
from Memorization.banks.origins import Provenance, items_per_clip, training_origins
from Memorization.banks.search_check import SearchCheck
from Memorization.banks.specs import STREAMS, bank_path, specs_of, stream_titles, streams_of
from Memorization.calibration.weights import CALIBRATION_VERSION
from Memorization.encoders.loader import load_backbone_for
from Memorization.features import backbone_record, extract_split_features, feature_record
from Memorization.model import VideoFeatures, VideoPatchCore, video_coresets
from Memorization.options import BANK_ORDERS, method_record, results_folder, results_name
from ObjectDetection.objects import clip_boxes_of


def read_video_features(run, split, video_name, backbone, streams=("local", "global")):
    """A video's saved features of ``streams`` (VideoFeatures), each file checked against the records
    this run would write (``backbone``: the backbone's record fields)."""
    work, method = run.work, run.method
    clips = {}
    for name in streams:
        stream = STREAMS[name]
        arrays, _ = read_clip_file(stream.path(work, method, split, video_name), stream.kind,
                                   feature_record(stream, method, backbone))
        clips[name] = [torch.from_numpy(array) for array in arrays]
    return VideoFeatures(clips)


def reused_backbone(run, test_videos):
    """The backbone record fields when no backbone is loaded (features and banks all reused): those
    of the saved test features, which every other reused file must then share."""
    if not test_videos:
        raise VPCError("no test video gives a clip")
    stream = STREAMS["local"]
    with open_clip_file(stream.path(run.work, run.method, "test", test_videos[0].name), stream.kind) as opened:
        record = opened.record or {}
    return {key: record[key] for key in ("backbone", "random_weights") if key in record}


def training_features(run, videos, backbone, specs=None):
    """The saved training features of the streams ``specs`` (default: the run's banks) read, video by video."""
    streams = streams_of(specs_of(run.method.banks) if specs is None else specs)
    for video in progress(videos, "reading training features"):
        yield read_video_features(run, "train", video.name, backbone, streams)


def fitted_model(run, videos, fields, specs=None, device=None):
    """The model of ``specs`` (default: the run's banks) memorising the training videos' saved features
    (``fields``: the backbone's record fields), with the provenance of every bank row (the boxes from the
    videos' object batches). With --ray and the published order, each video's coresets are drawn on a
    Ray worker, from the features it reads itself, and only they (and their rows' clips and objects)
    come back, concatenated in video order."""
    model = VideoPatchCore(run.method, specs)
    specs = model.specs
    origins = training_origins(run.work, videos, run.method.consecutive)
    if run.context.ray is None or run.method.bank_order != BANK_ORDERS[0]:
        return model.fit(training_features(run, videos, fields, specs), device, origins)
    per_video = map_videos(functools.partial(coresets_of_video, run=run, fields=fields, specs=specs), videos,
                           "coresets of training videos", run.context.ray)
    return model.fit_coresets(per_video, origins)


def coresets_of_video(video, run, fields, specs):
    """``video_coresets`` of one training video's saved features (coresets and their rows' clips and objects)."""
    return video_coresets(read_video_features(run, "train", video.name, fields, streams_of(specs)), specs, run.method)


@dataclass(frozen=True)
class TestScores:
    """What scoring the test videos gives."""
    per_bank: dict           # {bank: [per-frame scores of each video]}
    objects: list            # per video: (objects per clip, {local bank: their scores})
    seconds: float           # the search and scores alone, reading the feature files excluded
    search_errors: dict      # an approximate search's measured error per bank ({} for the exact one)


def score_videos(model, run, videos, backbone, device):
    """Every bank's per-frame scores of each test video, and each video's objects and their scores
    (for the region metrics), as TestScores. With an approximate search its error is measured and
    printed per bank. ``backbone``: the backbone's record fields the feature files must hold."""
    per_bank, objects, seconds = {spec.name: [] for spec in model.specs}, [], 0.0
    model.banks_on(device)            # moved once, before the timing
    check = SearchCheck.of(model, len(videos))
    for index, video in enumerate(progress(videos, "scoring test videos")):
        features = read_video_features(run, "test", video.name, backbone, streams_of(model.specs))
        if check is not None:
            check.add(features, index)
        items = {}
        started = time.perf_counter()
        for bank, frames in model.score_banks(features, device, items).items():
            per_bank[bank].append(frames)
        seconds += time.perf_counter() - started
        counts = items_per_clip(features.clips["local"])
        objects.append((counts, {spec.name: items[spec.name] for spec in model.specs if spec.stream == "local"}))
    errors = check.report(model.banks_on(device)) if check is not None else {}
    return TestScores(per_bank, objects, seconds, errors)


def region_ground_truth(run, videos):
    """Region tracks of each test video ({name: tracks}), from test_regions/<video>.json or from
    pixel masks in test_masks/ (a folder of mask images or a .npy per video); None without either."""
    root = Path(run.context.data_root) / run.method.dataset
    if (root / "test_regions").is_dir():
        return {v.name: load_region_tracks(root / "test_regions" / f"{v.name}.json") for v in videos}
    if (root / "test_masks").is_dir():
        masks = root / "test_masks"
        return {v.name: load_mask_tracks(masks / v.name if (masks / v.name).is_dir() else masks / f"{v.name}.npy")
                for v in videos}
    return None


def object_score(scores, weights, calibration):
    """One score per object from its spatial and temporal scores: a1 S + a2 T, normalised per bank
    with the label-free calibration's weights when there is one, raw with ``weights`` otherwise."""
    spatial, temporal = (np.asarray(scores[bank], dtype=np.float64) for bank in LOCAL_FUSION)
    if calibration:
        return calibrated_local(spatial, temporal, calibration)
    return local_score(weights.a1, weights.a2, spatial, temporal)


def region_results(run, videos, objects, weights, calibration):
    """RBDC and TBDC (extra.evaluation.regions) of every test object as a region on each frame of its clip,
    against the region tracks; None when the dataset has none or the object files hold no boxes."""
    truth = region_ground_truth(run, videos)
    if truth is None:
        return None
    d, work = run.method.consecutive, run.work
    detections, tracks, offset = [], [], 0
    for video, (counts, scores) in zip(videos, objects):
        clips = video.clips(d)
        boxes = clip_boxes_of(work.object_batches("test", video.name), range(len(clips)))
        if any(b is None and n for b, n in zip(boxes, counts)):
            warn(f"{work.object_batches('test', video.name)} holds no boxes: no region metrics")
            return None
        per_object = iter(object_score(scores, weights, calibration))
        for frames, clip_boxes, n in zip(clips, boxes, counts):
            for box in clip_boxes[:n] if n else ():
                score = next(per_object)
                detections += [[offset + frame, *box[:4], score] for frame in frames]
        for track in truth[video.name]:
            if len(track):
                tracks.append(np.column_stack([track[:, 0] + offset, track[:, 1:]]))
        offset += video.n_raw_frames
    if not tracks:
        return None
    # Every test frame and every ground-truth region counts, those no clip covers (a skipped first frame,
    # the tail after the last full clip) too: they count in the false positives per frame and as regions
    # no detection finds, as the reference scripts count the whole test set.
    rbdc, tbdc = rbdc_tbdc(np.asarray(detections, dtype=np.float64).reshape(-1, 6), tracks, offset,
                           DEFAULT_CONVENTION)
    return {"rbdc": rbdc, "tbdc": tbdc, "tracks": len(tracks), "regions": int(sum(len(t) for t in tracks)),
            "detections": len(detections), "frames": offset, "convention": DEFAULT_CONVENTION,
            "object_score": ("a1 S + a2 T, normalised per bank, label-free weights" if calibration
                             else "a1 S + a2 T, raw, fixed weights")}


def memory_of(run, backbone, fields, device):
    """The model of the run's banks and whether a bank was built now: each bank reused when it is saved
    with this run's settings, the others built from the training features (extracted where missing) and
    saved (a bank added to a run costs its own coresets alone). The model has the provenance of the banks
    built now and of those reused that keep it beside them (not the authors' files)."""
    work, method = run.work, run.method
    specs = specs_of(method.banks)
    missing = [spec for spec in specs if not bank_path(work, spec, method).is_file()]
    if missing and not run.save_memory:
        raise VPCError(f"memory bank not found: {bank_path(work, missing[0], method)}; run with --save_memory=True "
                       f"to build it")
    to_build = specs if run.save_memory and run.overwrite else missing
    reused = VideoPatchCore.from_bank_files(work, method, fields, [s for s in specs if s not in to_build])
    banks, provenance = reused.banks, reused.provenance
    if banks:
        print("memory banks: reusing " + ", ".join(f"{name} {tuple(bank.shape)}" for name, bank in banks.items()),
              flush=True)
    if to_build:
        train_videos = list_videos(run.context.settings, run.context.data_root, "train", method.consecutive)
        extract_split_features(train_videos, "train", run, backbone)
        built = fitted_model(run, train_videos, fields, to_build, device)
        built.save_bank_files(work, fields)
        banks.update(built.banks)
        provenance = Provenance.joined([built.provenance, provenance])
    return (VideoPatchCore(method, specs, {spec.name: banks[spec.name] for spec in specs}, provenance=provenance),
            bool(to_build))


def calibration_path(run):
    """The label-free calibration of a run's banks, beside them."""
    return STREAMS["local"].directory(run.work, run.method) / f"calibration_{results_name(run.method)}.json"


def calibration_of(run, model, backbone, fields, rebuilt):
    """The model's label-free calibration: reused when saved for the same banks and settings, else made
    from the training videos (Memorization.calibration.heldout) and saved; None (with a warning) when it cannot be
    made because the encoder is not loaded."""
    path = calibration_path(run)
    record = {**method_record(run.method), **fields, "false_alarm_rate": run.false_alarm_rate,
              "calibration_version": CALIBRATION_VERSION}
    if path.is_file() and not (run.overwrite or rebuilt):
        saved = read_json_record(path, record)
        if saved is not None:
            return saved
    if backbone is None:
        warn(f"no label-free calibration at {path}, and making one needs the encoder: run with "
             f"--save_feature=True once; the label-free column is left out")
        return None
    from Memorization.calibration.heldout import label_free_calibration   # torch-heavy recipes, only when calibrating

    videos = list_videos(run.context.settings, run.context.data_root, "train", run.method.consecutive)
    extract_split_features(videos, "train", run, backbone)
    calibration = label_free_calibration(model, run, videos, backbone,
                                         lambda video: read_video_features(run, "train", video.name, fields))
    write_json_record(path, record, calibration)
    return calibration


def run_memorization(run):
    """Run the stage for one dataset and return the evaluation results (a dict)."""
    work = run.work
    with work_lock(work.root, work.dataset, work.dataset_folders()):
        return _run_memorization(run, work)


def _run_memorization(run, work):
    started = time.time()
    settings, method = run.context.settings, run.method
    device = default_device()
    test_videos, labels = labelled_test_videos(settings, run.context.data_root, method.consecutive)
    backbone = load_backbone_for(run, device) if run.save_feature or run.save_memory else None
    fields = backbone_record(backbone) if backbone is not None else reused_backbone(run, test_videos)
    model, rebuilt = memory_of(run, backbone, fields, device)
    calibration = calibration_of(run, model, backbone, fields, rebuilt) if run.label_free else None
    model.calibration = calibration or {}
    model_file = work.model(results_name(method))
    if backbone is not None and (rebuilt or calibration is not None or not model_file.is_file()):
        model.backbone = backbone.identity()
        model.save(model_file)
        print(f"model file: {model_file}", flush=True)
    if run.save_feature:
        extract_split_features(test_videos, "test", run, backbone)
    scored = score_videos(model, run, test_videos, fields, device)
    scores = make_video_scores(scored.per_bank, [labels[v.name] for v in test_videos], model.streams,
                               [v.name for v in test_videos], [v.first_frame for v in test_videos])
    results = evaluate(scores, VIDEOPATCHCORE, run.fixed, calibration)
    regions = region_results(run, test_videos, scored.objects, run.fixed, calibration)
    if regions is not None:
        results["regions"] = regions
    metadata = {**method_record(method), "save_feature": run.save_feature, "save_memory": run.save_memory,
                "overwrite": run.overwrite, "fixed": asdict(run.fixed), **fields,
                "bank_sizes": {name: int(bank.shape[0]) for name, bank in model.banks.items()},
                **({"search_errors": scored.search_errors} if scored.search_errors else {}),
                "device": device, "seconds": round(time.time() - started, 1)}
    out = results_folder(work, method)
    save_results(out / SCORES_FILE, out / RESULTS_FILE, scores, results, metadata,
                 fused=fused_per_video(scores, run.fixed))
    print(format_results(results, metadata, stream_titles(model.specs)), flush=True)
    print(f"scores and results: {out}", flush=True)
    if run.report:
        from Memorization.stage_report import write_stage_reports

        streams = streams_of(model.specs)
        reports = write_stage_reports(model, scores, scored.objects, test_videos, labels,
                                      lambda video: read_video_features(run, "test", video.name, fields, streams),
                                      lambda video: work.object_batches("test", video.name), out / "reports",
                                      device, model_file if model_file.is_file() else None)
        print(f"reports: {len(reports)} in {out / 'reports'}", flush=True)
    return results
