"""Local (object) and global (frame) CLIP features of clips, and their per-video files.

SPEC section 3 for the math, section 8 for the files: one HDF5 file per video and stream, one
dataset per clip named by ``clip_key``. ``lf`` is (n_objects, c', d, G, G) with G the encoder's
``layout.local_grid`` (28 for RN101); a clip without objects keeps the detector's placeholder (a
one-element zero array) in the local file. ``gf`` is (1, C, d) with C the taps' channels (1536 for
RN101). The encoder's ``layout`` (``Memorization.encoders.contract.TapLayout``) gives every size. Each file also keeps how long its extraction took and where
(``extraction_time``), which the table runner turns into frames per second.
"""
import functools
import json
import time
from contextlib import ExitStack, closing
from dataclasses import replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from extra.datasets import normalize_frame
from extra.device import device_description
from extra.errors import VPCError
from extra.progress import Ticker
from extra.sharding import WorkerModel, map_videos
from extra.store import clip_key, is_empty_clip, is_finished, open_clip_file, write_clip_file
from extra.workdir import OBJECT_BATCHES
from Memorization.banks.specs import STREAMS
from Memorization.options import COMPRESSIONS, NORMALIZATIONS, precision_record

# CLIP's own input normalisation (clip.clip._transform), on RGB in [0, 1].
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# HDF5 attribute of a feature file: {"seconds": extraction time, "device": where it ran}.
TIMING_ATTRIBUTE = "vpc_extraction"


# --- math on tensors ------------------------------------------------------------------------------

def _check_kept(n_out, channels):
    if not 1 <= n_out <= channels:
        raise VPCError(f"cannot keep {n_out} of {channels} feature channels: use 1 <= --cnl_pool <= {channels}")


def random_channels(channels, n_out, seed):
    """The channels the "random" compression keeps: ``n_out`` of ``channels`` drawn with ``seed``
    from a generator of their own (so every call, train or test, draws the same), in increasing order."""
    _check_kept(n_out, channels)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(channels, generator=generator)[:n_out].sort().values


@functools.cache      # the same few matrices for every clip; callers never change them in place
def channel_matrix(channels, n_out, compression="split", seed=0):
    """(n_out, channels) of 0 and 1: which channels each output channel averages (Table 3).

    split: split pooling (the published method), ``channels // n_out`` consecutive channels a
    row; head: the first ``n_out`` channels; random: the ``n_out`` channels of
    ``random_channels(channels, n_out, seed)``. ``compress_channels`` sums then divides by the
    row's count, as a mean does, so selections copy values.
    """
    if compression == "split":
        if channels % n_out:
            raise VPCError(f"--cnl_pool {n_out} must divide the {channels} feature channels")
        return torch.eye(n_out).repeat_interleave(channels // n_out, dim=1)
    if compression == "head":
        _check_kept(n_out, channels)
        return torch.eye(channels)[:n_out]
    if compression == "random":
        return torch.eye(channels)[random_channels(channels, n_out, seed)]
    raise VPCError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)}")


def channel_sums(matrix, x):
    """Sums of the channels of x (B, C, H, W) that each row of ``matrix`` (O, C) keeps -> (B, O, H, W)."""
    return (matrix @ x.flatten(2)).unflatten(2, x.shape[2:])


def per_row(matrix):
    """How many channels each output channel averages, shaped to divide (B, O, H, W) maps."""
    return matrix.sum(dim=1)[:, None, None]


def compress_channels(x, n_out, compression="split", seed=0):
    """(B, C, H, W) -> (B, n_out, H, W): the means of ``channel_matrix``'s channels."""
    matrix = channel_matrix(x.shape[1], n_out, compression, seed).to(x.device)
    return channel_sums(matrix, x) / per_row(matrix)


def compressed_maps(taps, matrix, out_size):
    """``compress_channels`` of the taps pooled to out_size and concatenated, computed in the cheaper
    order: both pools are linear and the same on every channel, so the channels are summed first and
    only O maps per tap are pooled (equal up to rounding, about 1e-7; selections to the bit)."""
    total, start = None, 0
    for tap in taps:
        part = pool_map(channel_sums(matrix[:, start:start + tap.shape[1]], tap), out_size)
        total, start = part if total is None else total + part, start + tap.shape[1]
    return total / per_row(matrix)


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
    """The encoder's taps pooled to out_size and concatenated along channels, in its order (layer2 first)."""
    return torch.cat([pool_map(tap, out_size) for tap in backbone(images)], dim=1)


@torch.no_grad()
def local_feature_set(crops, backbone, cnl_pool, compressions=("split",), seed=0):
    """Object crops (n, 3, d, H, W), BGR in [-1, 1] -> {compression: lf (n, c', d, G, G) float32 on the CPU}.

    Returns None for a placeholder (a clip without objects): the caller keeps the placeholder.
    All n * d crops of the clip go through the encoder as one frame-major batch, once for all
    the ``compressions`` asked for (see ``channel_matrix``; ``seed`` is the random draw's); G is the
    encoder's ``layout.local_grid``.
    """
    crops = torch.as_tensor(crops)
    if is_empty_clip(crops):
        return None
    n, _, d = crops.shape[:3]
    layout = backbone.layout
    images = frame_major(crops).to(backbone.device, torch.float32)
    if images.shape[-2:] != (layout.input_size, layout.input_size):
        images = F.interpolate(images, size=(layout.input_size,) * 2, mode="bilinear", align_corners=True)
    taps = backbone(images)
    channels = sum(tap.shape[1] for tap in taps)
    return {compression: _object_major(compressed_maps(
                taps, channel_matrix(channels, cnl_pool, compression, seed).to(taps[0].device), layout.local_grid),
                n, d)
            for compression in compressions}


def _object_major(pooled, n, d):
    """(d * n, c', H, W) frame-major -> (n, c', d, H, W) on the CPU."""
    return pooled.reshape(d, n, *pooled.shape[1:]).permute(1, 2, 0, 3, 4).contiguous().cpu()


def local_features(crops, backbone, cnl_pool, compression="split", seed=0):
    """``local_feature_set`` for one compression: lf (n, c', d, G, G), or None for a placeholder."""
    features = local_feature_set(crops, backbone, cnl_pool, (compression,), seed)
    return None if features is None else features[compression]


def frames_to_input(frames, normalization="published", size=224):
    """d BGR uint8 frames -> (d, 3, size, size) float32, resized with OpenCV then scaled (size: the
    encoder's ``layout.input_size``; CLIP's 224 by default).

    published: x / 127.5 - 1 in BGR order (the official code); clip: CLIP's mean/std on RGB in [0, 1].
    """
    if normalization not in NORMALIZATIONS:
        raise VPCError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")
    resized = np.stack([cv2.resize(frame, (size, size)) for frame in frames])
    if normalization == "published":
        scaled = normalize_frame(resized)
    else:
        rgb = resized[..., ::-1].astype(np.float32) / 255.0
        scaled = (rgb - np.float32(CLIP_MEAN)) / np.float32(CLIP_STD)
    return torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)).permute(0, 3, 1, 2)


@torch.no_grad()
def global_features(frames, backbone, normalization="published"):
    """d BGR uint8 frames -> gf (1, C, d) float32 on the CPU (C = 1536 for RN101)."""
    layout = backbone.layout
    images = frames_to_input(frames, normalization, layout.input_size).to(backbone.device)
    per_frame = gap_plus_gmp(tapped_maps(backbone, images, layout.global_grid))     # (d, C)
    return per_frame.t().unsqueeze(0).contiguous().cpu()


# --- per-video files ------------------------------------------------------------------------------

def backbone_record(backbone):
    """The backbone fields of every record: its architecture and whether its weights are random."""
    return {"backbone": backbone.name, "random_weights": bool(backbone.random_weights)}


def feature_record(stream, method, backbone):
    """What a stream's feature files depend on (recorded in each); ``backbone``: its record fields."""
    return {"dataset": method.dataset, "consecutive": method.consecutive, **backbone,
            **precision_record(method.precision), **stream.record(method)}


def extraction_time(path, kind):
    """{"seconds", "device"} of a feature file's extraction, None when it has none (older or the authors' files)."""
    with open_clip_file(path, kind) as opened:
        text = opened.file_attribute(TIMING_ATTRIBUTE)
    return None if text is None else json.loads(text)


def _timing(started, backbone):
    return json.dumps({"seconds": time.perf_counter() - started, "device": device_description(backbone.device)})


def write_local_features(objects_path, n_clips, backbone, method, outputs, label="local features"):
    """One pass of the encoder over a video's object crops, written once per compression, its progress
    shown as ``label`` clip by clip.

    ``outputs``: {compression: (out_path, record)}.
    """
    started = time.perf_counter()
    d = method.consecutive
    with ExitStack() as stack:
        ticker = stack.enter_context(closing(Ticker(label, n_clips, unit="clips")))
        objects = stack.enter_context(open_clip_file(objects_path, OBJECT_BATCHES, n_clips=n_clips))
        writers = {compression: stack.enter_context(write_clip_file(path, record, n_clips))
                   for compression, (path, record) in outputs.items()}
        for clip in range(n_clips):
            batch = objects.clip(clip)
            if not is_empty_clip(batch) and (batch.ndim != 5 or batch.shape[2] != d):
                raise VPCError(f"{objects_path}, clip {clip_key(clip)}: expected crops (n, 3, {d}, H, W), "
                               f"found shape {batch.shape}; rerun ObjectDetection/run.py with --consecutive {d}")
            features = local_feature_set(batch, backbone, method.cnl_pool, tuple(outputs), method.compression_seed)
            for compression, writer in writers.items():
                writer.add(clip, batch if features is None else features[compression].numpy())
            ticker.update(clip + 1)
        for writer in writers.values():
            writer.attrs[TIMING_ATTRIBUTE] = _timing(started, backbone)


def write_global_features(video, backbone, method, out_path, record, label="global features"):
    started = time.perf_counter()
    n_clips = video.n_clips(method.consecutive)
    with write_clip_file(out_path, record, n_clips) as writer, closing(Ticker(label, n_clips, unit="clips")) as ticker:
        for clip, frames in video.iter_clips(method.consecutive):
            writer.add(clip, global_features(frames, backbone, method.normalization).numpy())
            ticker.update(clip + 1)
        writer.attrs[TIMING_ATTRIBUTE] = _timing(started, backbone)


def extract_video_features(video, split, run, backbone, compressions=None):
    """Write one video's lf file(s) and gf file where missing; a file already complete with the same
    settings is kept (``run.overwrite`` redoes it, ``run.verify`` reads it whole first).

    ``compressions``: the local features' compressions to write (default: the method's), all
    from one encoder pass. Returns (local_written, global_written).
    """
    method, work = run.method, run.work
    n_clips = video.n_clips(method.consecutive)
    fields = backbone_record(backbone)
    local_todo = {}
    for compression in compressions or (method.compression,):
        variant = replace(method, compression=compression)
        path = STREAMS["local"].path(work, variant, split, video.name)
        record = feature_record(STREAMS["local"], variant, fields)
        if not is_finished(path, STREAMS["local"].kind, record, n_clips, run.overwrite, run.verify):
            local_todo[compression] = (path, record)
    global_path = STREAMS["global"].path(work, method, split, video.name)
    global_record = feature_record(STREAMS["global"], method, fields)
    global_todo = not is_finished(global_path, STREAMS["global"].kind, global_record, n_clips, run.overwrite,
                                  run.verify)
    if local_todo:
        write_local_features(work.object_batches(split, video.name), n_clips, backbone, method, local_todo,
                             f"{split} {video.name}: local features")
    if global_todo:
        write_global_features(video, backbone, method, global_path, global_record,
                              f"{split} {video.name}: global features")
    return bool(local_todo), global_todo


def extract_split_features(videos, split, run, backbone, compressions=None):
    """``extract_video_features`` for each video of a split, with one progress line per video. With
    --ray each video runs on a Ray worker, which loads the run's encoder itself (``worker_encoder``),
    once; ``backbone`` is then only this process's."""
    encoder = (lambda: backbone) if run.context.ray is None else worker_encoder(run)
    map_videos(functools.partial(_extract_with, encoder, split=split, run=run, compressions=compressions),
               videos, f"{split} features", run.context.ray)


def worker_encoder(run):
    """The run's encoder as a Ray worker loads it: the way this process does (``load_backbone_for``)."""
    from Memorization.encoders.loader import load_backbone_for

    return WorkerModel(load_backbone_for, (run, None))


def _extract_with(get_backbone, video, split, run, compressions):
    extract_video_features(video, split, run, get_backbone(), compressions)
