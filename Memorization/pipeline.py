"""The Memorization stage end to end: features, memory banks, scores, evaluation.

Every step reuses what a previous run left when it was made with the same settings (each file
records them), so a rerun only does what is missing. ``save_feature`` / ``save_memory`` keep
the published meaning: when false, saved test features / memory banks are used and never made.
"""
import time
from dataclasses import asdict

import h5py
import torch

from extra.datasets import list_videos, labelled_test_videos
from extra.device import default_device
from extra.errors import VPCError
from extra.io import atomic_path
from extra.provenance import check_record, read_h5_record, read_sidecar_record, write_sidecar_record
from extra.workdir import WorkDir, clip_key
from Memorization.coreset import build_memory_bank
from Memorization.evaluation import (
    RESULTS_FILE, SCORES_FILE, FusionWeights, evaluate, format_results, fused_per_video,
    make_video_scores, save_results,
)
from Memorization.options import BANKS, ablation_tags, bank_record, results_folder
from Memorization.features import backbone_record, extract_split_features, is_placeholder
from Memorization.patches import highlevel_patches, spatial_patches, temporal_patches, temporal_pooling
from Memorization.scoring import clip_scores, frame_scores, object_scores

# Clips scored per nearest-neighbour call: bounds the memory of one video's local features.
CLIPS_PER_CALL = 32


# --- reading feature files ------------------------------------------------------------------------

def read_clip_arrays(path):
    """The per-clip arrays of a feature file, in clip order, and the file's settings record."""
    if not path.is_file():
        raise VPCError(f"features not found: {path}; run without --save_feature=False to extract them")
    with h5py.File(path, "r") as f:
        keys = sorted(f.keys())
        if keys != [clip_key(i) for i in range(len(keys))]:
            raise VPCError(f"{path} does not hold clips 0000..{len(keys) - 1:04d} in order")
        return [torch.from_numpy(f[key][()]) for key in keys], read_h5_record(f)


def stack_objects(local_clips):
    """All objects of some clips in one (N, c', d, 28, 28) tensor, and the object count per clip."""
    present = [lf for lf in local_clips if not is_placeholder(lf)]
    counts = [0 if is_placeholder(lf) else lf.shape[0] for lf in local_clips]
    return (torch.cat(present) if present else None), counts


def video_patches(local_clips, global_clips, options, stage, banks=BANKS):
    """The patches of one video for each of ``banks`` (training) or for scoring (test), stage 'train' | 'test'.

    Only the clips the banks need are read: ``local_clips`` for spatial / temporal,
    ``global_clips`` for high-level (the other may be None).
    """
    patches = {}
    if "spatial" in banks or "temporal" in banks:
        objects, _ = stack_objects(local_clips)
        empty = torch.zeros(0, options.cnl_pool)
        if "spatial" in banks:
            patches["spatial"] = empty if objects is None else spatial_patches(objects, options.pool_for_sm)
        if "temporal" in banks:
            pooling = temporal_pooling(stage, options.temporal_pooling)
            patches["temporal"] = (empty if objects is None
                                   else temporal_patches(objects, pooling, options.absolute_difference))
    if "highlevel" in banks:
        patches["highlevel"] = torch.cat([highlevel_patches(gf) for gf in global_clips])
    return patches


def read_video_features(work, options, split, video_name, local=True, glob=True):
    """A video's local clips (options' compression) and global clips (options' normalisation); None where not asked."""
    return (read_clip_arrays(work.local_features(options.local_folder, split, video_name))[0] if local else None,
            read_clip_arrays(work.global_features(options.global_folder, split, video_name))[0] if glob else None)


# --- memory banks ---------------------------------------------------------------------------------

def load_bank(path, record):
    check_record(read_sidecar_record(path), record, path)
    bank = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(bank, torch.Tensor) or bank.ndim != 2:
        raise VPCError(f"{path} is not a memory bank (expected a 2-D tensor)")
    return bank


def bank_path(work, bank, options):
    """A bank's file: the authors' name for the published settings, a distinct one for ablations."""
    folder = options.global_folder if bank == "highlevel" else options.local_folder
    return work.memory_bank(bank, folder, options.ratios[bank], "_".join(ablation_tags(options, bank)))


def training_patches(train_videos, work, options, banks=BANKS):
    """{bank: [patches of each training video]} for each of ``banks``, read from the training features."""
    per_video = {bank: [] for bank in banks}
    needs_local = "spatial" in banks or "temporal" in banks
    for video in train_videos:
        local, glob = read_video_features(work, options, "train", video.name, needs_local, "highlevel" in banks)
        for bank, patches in video_patches(local, glob, options, "train", banks).items():
            per_video[bank].append(patches)
    return per_video


def memorise(per_video_patches, bank, options):
    """One memory bank (on the CPU) from its per-video training patches, with the options' ratio and order."""
    print(f"memorising {bank} patches (coreset ratio {options.ratios[bank]}, {options.bank_order})", flush=True)
    return build_memory_bank(per_video_patches, options.ratios[bank], order=options.bank_order,
                             random_projection=options.random_projection, eps=options.eps_coreset,
                             seed=options.seed).cpu()


def make_banks(train_videos, work, options, consecutive, dataset, backbone_fields):
    """Build the three banks from the training features and save them with their records."""
    per_video = training_patches(train_videos, work, options)
    banks = {}
    for bank in BANKS:
        banks[bank] = memorise(per_video[bank], bank, options)
        path = bank_path(work, bank, options)
        with atomic_path(path) as tmp:
            torch.save(banks[bank], tmp)
        write_sidecar_record(path, bank_record(bank, options, consecutive, dataset, backbone_fields))
    return banks


# --- scoring --------------------------------------------------------------------------------------

def local_object_scores(objects, banks, options, power):
    """Spatial and temporal score of each object, objects (n, c', d, 28, 28) -> two (n,) CPU tensors."""
    n = len(objects)
    pooling = temporal_pooling("test", options.temporal_pooling)
    spatial = object_scores(spatial_patches(objects, options.pool_for_sm), n, banks["spatial"], power)
    temporal = object_scores(temporal_patches(objects, pooling, options.absolute_difference), n,
                             banks["temporal"], power)
    return spatial.cpu(), temporal.cpu()


def score_video(local_clips, global_clips, banks, options, power, consecutive, device):
    """Per-frame spatial, temporal and high-level scores of one test video (SPEC 6)."""
    spatial, temporal = [], []
    for start in range(0, len(local_clips), CLIPS_PER_CALL):
        chunk = local_clips[start:start + CLIPS_PER_CALL]
        objects, counts = stack_objects(chunk)
        if objects is None:
            spatial.append(torch.zeros(len(chunk)))
            temporal.append(torch.zeros(len(chunk)))
            continue
        spatial_of_objects, temporal_of_objects = local_object_scores(objects.to(device), banks, options, power)
        spatial.append(clip_scores(spatial_of_objects, counts))
        temporal.append(clip_scores(temporal_of_objects, counts))
    highlevel_rows = torch.cat([highlevel_patches(gf) for gf in global_clips]).to(device)
    highlevel = object_scores(highlevel_rows, len(global_clips), banks["highlevel"], power).cpu()
    return tuple(frame_scores(torch.cat(s) if isinstance(s, list) else s, consecutive)
                 for s in (spatial, temporal, highlevel))


def video_scores(per_video, videos, labels):
    """``score_video``'s (S, T, H) of each video, with the videos' labels, as evaluation's VideoScores."""
    return make_video_scores(*(list(stream) for stream in zip(*per_video)), [labels[v.name] for v in videos],
                             names=[v.name for v in videos])


# --- the whole stage ------------------------------------------------------------------------------

def run_memorization(context, options):
    """Run the stage for one dataset and return the evaluation results (a dict)."""
    started = time.time()
    settings, d = context.settings, context.consecutive
    work = WorkDir(context.work_dir, settings.name)
    device = default_device()
    test_videos, labels = labelled_test_videos(settings, context.data_root, d)
    bank_paths = {bank: bank_path(work, bank, options) for bank in BANKS}

    backbone = None
    if options.save_feature or options.save_memory:
        from Memorization.backbone import load_backbone   # CLIP's import is slow: only when a model is needed

        backbone = load_backbone(options.backbone, device=device, random_weights=options.random_weights)
        print(f"backbone: {backbone.description}", flush=True)
    fields = backbone_fields(backbone, work, options, test_videos)

    def records(bank):
        return bank_record(bank, options, d, settings.name, fields)

    reusable = not options.overwrite and all(p.is_file() for p in bank_paths.values())
    if options.save_memory and not reusable:
        train_videos = list_videos(settings, context.data_root, "train", d)
        extract_split_features(train_videos, "train", work, backbone, settings, d, options.cnl_pool,
                               options.normalization, options.overwrite, (options.compression,),
                               options.compression_seed)
        banks = make_banks(train_videos, work, options, d, settings.name, fields)
    else:
        missing = [str(p) for p in bank_paths.values() if not p.is_file()]
        if missing:
            raise VPCError(f"memory bank not found: {missing[0]}; run with --save_memory=True to build it")
        banks = {bank: load_bank(path, records(bank)) for bank, path in bank_paths.items()}
        print("memory banks: reusing " + ", ".join(f"{b} {tuple(banks[b].shape)}" for b in BANKS), flush=True)
    banks = {bank: tensor.to(device) for bank, tensor in banks.items()}

    if options.save_feature:
        extract_split_features(test_videos, "test", work, backbone, settings, d, options.cnl_pool,
                               options.normalization, options.overwrite, (options.compression,),
                               options.compression_seed)
    per_video = [score_video(*read_video_features(work, options, "test", video.name), banks, options,
                             settings.power_n, d, device) for video in test_videos]

    scores = video_scores(per_video, test_videos, labels)
    weights = FusionWeights.chosen(options.fixed_a1, options.fixed_b1, options.fixed_sigma)
    results = evaluate(scores, weights)
    metadata = {"dataset": settings.name, "consecutive": d, **asdict(options),
                **fields, "bank_sizes": {b: int(banks[b].shape[0]) for b in BANKS},
                "device": device, "seconds": round(time.time() - started, 1)}
    out = results_folder(work, options)
    save_results(out / SCORES_FILE, out / RESULTS_FILE, scores, results, metadata,
                 fused=fused_per_video(scores, weights))
    print(format_results(results, metadata), flush=True)
    print(f"scores and results: {out}", flush=True)
    return results


def backbone_fields(backbone, work, options, test_videos):
    """The backbone part of every record: from the loaded model, or (when no model is needed
    because features and banks are all reused) from the saved test features."""
    if backbone is not None:
        return backbone_record(backbone)
    if not test_videos:
        raise VPCError("no test video gives a clip")
    path = work.local_features(options.local_folder, "test", test_videos[0].name)
    if not path.is_file():
        raise VPCError(f"features not found: {path}; run without --save_feature=False to extract them")
    with h5py.File(path, "r") as f:
        record = read_h5_record(f) or {}
    return {key: record[key] for key in ("backbone", "random_weights") if key in record}

