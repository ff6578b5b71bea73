"""Local (object) and global (frame) CLIP features of clips, and their per-video files.

SPEC section 3 for the math, section 8 for the files: one HDF5 file per video and stream, one
dataset per clip named by ``clip_key``. ``lf`` is (n_objects, c', d, 28, 28); a clip without
objects keeps the detector's placeholder (a one-element zero array) in the local file. ``gf`` is
(1, C, d) with C = 1536 for RN101. Each file also keeps how long its extraction took and where
(``extraction_time``), which the table runner turns into frames per second.
"""
import json
import time
from contextlib import ExitStack

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from fastprogress.fastprogress import progress_bar

from extra.datasets import normalize_frame
from extra.device import device_description
from extra.errors import VPCError
from extra.io import atomic_path
from extra.provenance import check_record, read_h5_record, write_h5_record
from extra.workdir import clip_key
from Memorization.options import COMPRESSIONS, NORMALIZATIONS, compression_record, local_folder, global_folder

INPUT_SIZE = 224       # the encoder's input side
LOCAL_GRID = 28        # lf maps are LOCAL_GRID x LOCAL_GRID
GLOBAL_GRID = 14       # gf is pooled from GLOBAL_GRID x GLOBAL_GRID maps
# CLIP's own input normalisation (clip.clip._transform), on RGB in [0, 1].
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# HDF5 attribute of a feature file: {"seconds": extraction time, "device": where it ran}.
TIMING_ATTRIBUTE = "vpc_extraction"


# --- math on tensors ------------------------------------------------------------------------------

def split_pool(x, groups):
    """(B, C, ...) -> (B, groups, ...): channels cut into ``groups`` consecutive equal groups, each averaged."""
    channels = x.shape[1]
    if channels % groups:
        raise VPCError(f"--cnl_pool {groups} must divide the {channels} feature channels")
    return x.reshape(x.shape[0], groups, channels // groups, *x.shape[2:]).mean(dim=2)


def _check_kept(n_out, channels):
    if not 1 <= n_out <= channels:
        raise VPCError(f"cannot keep {n_out} of {channels} feature channels: use 1 <= --cnl_pool <= {channels}")


def random_channels(channels, n_out, seed):
    """The channels the "random" compression keeps: ``n_out`` of ``channels`` drawn with ``seed``
    from a generator of their own (so every call, train or test, draws the same), in increasing order."""
    _check_kept(n_out, channels)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(channels, generator=generator)[:n_out].sort().values


def compress_channels(x, n_out, compression="split", seed=0):
    """(B, C, ...) -> (B, n_out, ...): the local features' channel compression (Table 3).

    split: split pooling (the published method); head: the first ``n_out`` channels; random:
    the ``n_out`` channels of ``random_channels(C, n_out, seed)``.
    """
    if compression == "split":
        return split_pool(x, n_out)
    if compression == "head":
        _check_kept(n_out, x.shape[1])
        return x[:, :n_out]
    if compression == "random":
        return x.index_select(1, random_channels(x.shape[1], n_out, seed).to(x.device))
    raise VPCError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)}")


def pool_map(feature, out_size):
    """3 x 3 average pooling (stride 1, no padding), then adaptive average pooling to out_size x out_size."""
    return F.adaptive_avg_pool2d(F.avg_pool2d(feature, kernel_size=3, stride=1), out_size)


def gap_plus_gmp(x):
    """(B, C, H, W) -> (B, C): global average plus global max over the grid."""
    return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))


def frame_major(crops):
    """(n, 3, d, H, W) -> (d * n, 3, H, W), ordered all objects of frame 0, then of frame 1, ..."""
    n, channels, d, height, width = crops.shape
    return crops.permute(2, 0, 1, 3, 4).reshape(d * n, channels, height, width)


def tapped_maps(backbone, images, out_size):
    """Both taps pooled to out_size and concatenated along channels (layer2 first)."""
    layer2, layer3 = backbone(images)
    return torch.cat([pool_map(layer2, out_size), pool_map(layer3, out_size)], dim=1)


def is_placeholder(batch):
    """The detector's mark of a clip without objects: a one-dimensional (one-element) array."""
    return batch.ndim == 1


@torch.no_grad()
def local_feature_set(crops, backbone, cnl_pool, compressions=("split",), seed=0):
    """Object crops (n, 3, d, H, W), BGR in [-1, 1] -> {compression: lf (n, c', d, 28, 28) float32 on the CPU}.

    Returns None for a placeholder (a clip without objects): the caller keeps the placeholder.
    All n * d crops of the clip go through the encoder as one frame-major batch, once for all
    the ``compressions`` asked for (see ``compress_channels``; ``seed`` is the random draw's).
    """
    crops = torch.as_tensor(crops)
    if is_placeholder(crops):
        return None
    n, _, d = crops.shape[:3]
    images = frame_major(crops).to(backbone.device, torch.float32)
    if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=True)
    maps = tapped_maps(backbone, images, LOCAL_GRID)
    return {compression: _object_major(compress_channels(maps, cnl_pool, compression, seed), n, d)
            for compression in compressions}


def _object_major(pooled, n, d):
    """(d * n, c', H, W) frame-major -> (n, c', d, H, W) on the CPU."""
    return pooled.reshape(d, n, *pooled.shape[1:]).permute(1, 2, 0, 3, 4).contiguous().cpu()


def local_features(crops, backbone, cnl_pool, compression="split", seed=0):
    """``local_feature_set`` for one compression: lf (n, c', d, 28, 28), or None for a placeholder."""
    features = local_feature_set(crops, backbone, cnl_pool, (compression,), seed)
    return None if features is None else features[compression]


def frames_to_input(frames, normalization="published"):
    """d BGR uint8 frames -> (d, 3, 224, 224) float32, resized with OpenCV then scaled.

    published: x / 127.5 - 1 in BGR order (the official code); clip: CLIP's mean/std on RGB in [0, 1].
    """
    if normalization not in NORMALIZATIONS:
        raise VPCError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")
    resized = np.stack([cv2.resize(frame, (INPUT_SIZE, INPUT_SIZE)) for frame in frames])
    if normalization == "published":
        scaled = normalize_frame(resized)
    else:
        rgb = resized[..., ::-1].astype(np.float32) / 255.0
        scaled = (rgb - np.float32(CLIP_MEAN)) / np.float32(CLIP_STD)
    return torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)).permute(0, 3, 1, 2)


@torch.no_grad()
def global_features(frames, backbone, normalization="published"):
    """d BGR uint8 frames -> gf (1, C, d) float32 on the CPU (C = 1536 for RN101)."""
    images = frames_to_input(frames, normalization).to(backbone.device)
    per_frame = gap_plus_gmp(tapped_maps(backbone, images, GLOBAL_GRID))     # (d, C)
    return per_frame.t().unsqueeze(0).contiguous().cpu()


# --- per-video files ------------------------------------------------------------------------------

def backbone_record(backbone):
    return {"backbone": backbone.name, "random_weights": bool(backbone.random_weights)}


def _write_timing(h5_file, seconds, device):
    h5_file.attrs[TIMING_ATTRIBUTE] = json.dumps({"seconds": seconds, "device": device_description(device)})


def extraction_time(path):
    """{"seconds", "device"} of a feature file's extraction, None when it has none (older or the authors' files)."""
    with h5py.File(path, "r") as f:
        text = f.attrs.get(TIMING_ATTRIBUTE)
    return None if text is None else json.loads(text)


def _is_done(path, record, n_clips, overwrite):
    """A finished file (files appear only when complete) made with the same settings."""
    if overwrite or not path.is_file():
        return False
    with h5py.File(path, "r") as f:
        check_record(read_h5_record(f), record, path)
        if len(f) != n_clips:
            raise VPCError(f"{path} holds {len(f)} clips but the video has {n_clips}; delete it or pass --overwrite")
    return True


def _object_batches(path, n_clips, consecutive):
    """Open the detector's per-video file after checking it matches the video's clips."""
    if not path.is_file():
        raise VPCError(f"object batches not found: {path}; run ObjectDetection/run.py with the same "
                       f"--dataset, --consecutive and --work_num first")
    objects = h5py.File(path, "r")
    found, recorded = len(objects), (read_h5_record(objects) or {}).get("consecutive")
    if found != n_clips or recorded not in (None, consecutive):
        objects.close()
        made_with = "" if recorded is None else f" made with --consecutive {recorded}"
        raise VPCError(f"{path} holds {found} clips{made_with} but the video gives {n_clips} clips of "
                       f"{consecutive} frames: rerun ObjectDetection with --consecutive {consecutive}")
    return objects


def write_local_features(object_batches_path, n_clips, backbone, consecutive, cnl_pool, outputs, seed=0):
    """One pass of the encoder over a video's object crops, written once per compression.

    ``outputs``: {compression: (out_path, record)}.
    """
    started = time.perf_counter()
    with ExitStack() as stack:
        objects = stack.enter_context(_object_batches(object_batches_path, n_clips, consecutive))
        files = {}
        for compression, (path, record) in outputs.items():
            files[compression] = stack.enter_context(h5py.File(stack.enter_context(atomic_path(path)), "w"))
            write_h5_record(files[compression], record)
        for clip in range(n_clips):
            batch = objects[clip_key(clip)][()]
            if not is_placeholder(batch) and (batch.ndim != 5 or batch.shape[2] != consecutive):
                raise VPCError(f"{object_batches_path}, clip {clip_key(clip)}: expected crops "
                               f"(n, 3, {consecutive}, H, W), found shape {batch.shape}")
            features = local_feature_set(batch, backbone, cnl_pool, tuple(outputs), seed)
            for compression, out in files.items():
                out.create_dataset(clip_key(clip), data=batch if features is None else features[compression].numpy())
        for out in files.values():
            _write_timing(out, time.perf_counter() - started, backbone.device)


def write_global_features(video, backbone, consecutive, normalization, out_path, record):
    started = time.perf_counter()
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        write_h5_record(out, record)
        for clip, frames in video.iter_clips(consecutive):
            out.create_dataset(clip_key(clip), data=global_features(frames, backbone, normalization).numpy())
        _write_timing(out, time.perf_counter() - started, backbone.device)


def extract_video_features(video, object_batches_path, backbone, settings, consecutive, cnl_pool,
                           out_local_path, out_global_path, normalization="published", overwrite=False,
                           compression_seed=0):
    """Write one video's lf file(s) and gf file; a file already complete with the same settings is kept.

    ``out_local_path``: the lf file of split pooling, or {compression: path} for several
    compressions at once (one encoder pass for all of them). Returns (local_written, global_written).
    """
    local_paths = out_local_path if isinstance(out_local_path, dict) else {COMPRESSIONS[0]: out_local_path}
    n_clips = video.n_clips(consecutive)
    common = {"dataset": settings.name, "consecutive": consecutive, **backbone_record(backbone)}
    local_todo = {}
    for compression, path in local_paths.items():
        record = {**common, "cnl_pool": cnl_pool, **compression_record(compression, compression_seed)}
        if not _is_done(path, record, n_clips, overwrite):
            local_todo[compression] = (path, record)
    global_record = {**common, "normalization": normalization}
    global_todo = not _is_done(out_global_path, global_record, n_clips, overwrite)
    if local_todo:
        write_local_features(object_batches_path, n_clips, backbone, consecutive, cnl_pool, local_todo,
                             compression_seed)
    if global_todo:
        write_global_features(video, backbone, consecutive, normalization, out_global_path, global_record)
    return bool(local_todo), global_todo


def extract_split_features(videos, split, work, backbone, settings, consecutive, cnl_pool,
                           normalization="published", overwrite=False, compressions=(COMPRESSIONS[0],),
                           compression_seed=0):
    """``extract_video_features`` for each video of a split, paths from ``work`` (an extra.workdir.WorkDir):
    the local features of every compression in ``compressions`` (one encoder pass), the global ones once."""
    bar = progress_bar(videos)
    for video in bar:
        bar.comment = f"{split} features {video.name}"
        local_paths = {compression: work.local_features(local_folder(cnl_pool, compression), split, video.name)
                       for compression in compressions}
        extract_video_features(video, work.object_batches(split, video.name), backbone, settings, consecutive,
                               cnl_pool, local_paths, work.global_features(global_folder(cnl_pool, normalization),
                                                                           split, video.name),
                               normalization, overwrite, compression_seed)
