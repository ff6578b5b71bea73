"""Test fixtures shared by several test files (and what Ray workers must import: tests/ is not on their path)."""
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

from extra.config import DATASETS
from extra.datasets import Video, list_videos, normalize_frame
from extra.store import clip_key
from extra.workdir import WorkDir


def write_fixed_box_objects(data_root, work_dir, consecutive, objects_in_clip=lambda clip: clip % 3):
    """Avenue object batches without a detector: object k of a clip is cut at rows 8k..8k+32 and
    columns 16k..16k+32 of each frame, resized to 64 x 64; a clip with no object gets the placeholder."""
    work = WorkDir(work_dir, "avenue")
    for split in ("train", "test"):
        for video in list_videos(DATASETS["avenue"], data_root, split, consecutive):
            path = work.object_batches(split, video.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                for clip, frames in video.iter_clips(consecutive):
                    objects = [np.stack([normalize_frame(cv2.resize(frame[8 * k:8 * k + 32, 16 * k:16 * k + 32],
                                                                    (64, 64))).transpose(2, 0, 1)
                                         for frame in frames], axis=1) for k in range(objects_in_clip(clip))]
                    batch = np.stack(objects) if objects else np.zeros(1, dtype=np.float32)
                    f.create_dataset(clip_key(clip), data=batch.astype(np.float32))


def make_run(work_dir, dataset="avenue", consecutive=2, data_root=None, overwrite=False, **method):
    """A MemorizationRun of the dataset's defaults with ``method`` fields changed (cnl_pool, ratios, ...)."""
    from extra.cli import RunContext
    from extra.evaluation.fusion import FusionWeights
    from Memorization.options import PUBLISHED_BANKS, MemorizationRun, MethodConfig

    settings = DATASETS[dataset]
    defaults = dict(cnl_pool=settings.cnl_pool, power_n=settings.power_n,
                    ratios=dict.fromkeys(PUBLISHED_BANKS, settings.coreset_ratio))
    context = RunContext(settings=settings, consecutive=consecutive, data_root=data_root, work_dir=work_dir)
    return MemorizationRun(context, MethodConfig(dataset, consecutive, **{**defaults, **method}),
                           FusionWeights.chosen(0.5, 0.5, 0), overwrite=overwrite)


def to_mp4(source, path, frames=None):
    """A video (file or frames) written again as .mp4 (mp4v), optionally only its first ``frames``."""
    from extra.datasets import open_video

    video = open_video(source)
    images = video.frames_at(range(video.n_raw_frames if frames is None else frames))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, images[0].shape[1::-1])
    for image in images:
        writer.write(image)
    writer.release()
    return path


def normal_footage(root, n_frames, names=None):
    """(data, normal): demo data under ``root/data`` (3 training and 1 test video of ``n_frames`` frames,
    160 x 96) and its training videos written again as .mp4 files into ``root/normal``, named ``names``
    (default "cam 01", ...): normal footage of one camera for fit.py."""
    from extra.make_demo import make_demo

    data = make_demo(root / "data", "avenue", seed=0, n_train=3, n_test=1, n_frames=n_frames, width=160, height=96)
    normal = root / "normal"
    normal.mkdir()
    sources = sorted((data / "training" / "frames").iterdir())
    for path, name in zip(sources, names or [f"cam {path.name}" for path in sources]):
        to_mp4(path, normal / f"{name}.mp4")
    return data, normal


def small_random_checkpoint(path):
    """A tiny CLIP ResNet (taps of 64 + 128 channels) with seeded random weights, saved as a user's
    weights file would be; loaded back it says RANDOM WEIGHTS."""
    import torch
    from clip.model import convert_weights

    from Memorization.encoders.clip_resnet import ResNetTaps
    from Memorization.encoders.contract import save_checkpoint

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ResNetTaps(layers=(1, 1, 1), width=8)
    convert_weights(model)
    model.random_weights, model.random_seed = True, 0
    return save_checkpoint(model, path)


@dataclass
class DyingVideo(Video):
    """A video whose reader kills its process after the first clip, the first time only (the marker
    file remembers): a Ray worker lost mid-video, its file half written."""

    marker: Path = None

    def iter_clips(self, consecutive, clip_indices=None):
        for number, clip in enumerate(super().iter_clips(consecutive, clip_indices)):
            if number == 1 and not self.marker.exists():
                self.marker.touch()
                os._exit(1)
            yield clip


# What the stages write per video and per bank (WORK_README.md).
STAGE_OUTPUTS = ("objects/**/*", "l_features/**/*", "g_features/**/*")


def stage_outputs(work, patterns=STAGE_OUTPUTS):
    """The files under ``work`` that match ``patterns``, relative, sorted."""
    work = Path(work)
    return sorted({str(p.relative_to(work)) for pattern in patterns for p in work.glob(pattern) if p.is_file()})


def clip_file_content(path):
    """A clip file's datasets (values with their dtype, attributes) and file attributes, but the
    extraction timing that feature files record (it differs from run to run)."""
    from Memorization.features import TIMING_ATTRIBUTE

    def plain(attributes):
        return {key: np.asarray(value).tolist() for key, value in attributes.items() if key != TIMING_ATTRIBUTE}

    with h5py.File(path, "r") as f:
        return ({key: (str(f[key].dtype), f[key][()].tolist(), plain(f[key].attrs)) for key in f}, plain(f.attrs))


def output_differences(expected, actual, patterns=STAGE_OUTPUTS):
    """The outputs of two working directories that are not identical: files one lacks, feature files
    whose content differs (``clip_file_content``), any other file whose bytes differ. Empty: identical."""
    expected, actual = Path(expected), Path(actual)
    names, others = stage_outputs(expected, patterns), stage_outputs(actual, patterns)
    differences = sorted(set(names) ^ set(others))
    for name in sorted(set(names) & set(others)):
        if (expected / name).read_bytes() == (actual / name).read_bytes():
            continue
        is_features = name.endswith(".h5") and name.split("/")[0].endswith("_features")
        if not is_features or clip_file_content(expected / name) != clip_file_content(actual / name):
            differences.append(name)
    return differences


def synthetic_features(seed, n_clips, channels=8, consecutive=3):
    """Features of a video (VideoFeatures): clip c holds c % 3 objects (the first none: the placeholder),
    ``channels`` local channels (16 global), clips of ``consecutive`` frames."""
    import torch

    from Memorization.model import VideoFeatures

    generator = torch.Generator().manual_seed(seed)
    local = [torch.rand(c % 3, channels, consecutive, 28, 28, generator=generator) if c % 3 else torch.zeros(1)
             for c in range(n_clips)]
    glob = [torch.rand(1, 16, consecutive, generator=generator) for _ in range(n_clips)]
    return VideoFeatures({"local": local, "global": glob})
