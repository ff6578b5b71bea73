"""Test fixtures shared by several test files."""
import cv2
import h5py
import numpy as np

from extra.config import DATASETS
from extra.datasets import list_videos, normalize_frame
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
    from Memorization.evaluation import FusionWeights
    from Memorization.options import PUBLISHED_BANKS, MemorizationRun, MethodConfig

    settings = DATASETS[dataset]
    defaults = dict(cnl_pool=settings.cnl_pool, power_n=settings.power_n,
                    ratios=dict.fromkeys(PUBLISHED_BANKS, settings.coreset_ratio))
    context = RunContext(settings=settings, consecutive=consecutive, data_root=data_root, work_dir=work_dir)
    return MemorizationRun(context, MethodConfig(dataset, consecutive, **{**defaults, **method}),
                           FusionWeights.chosen(0.5, 0.5, 0), overwrite=overwrite)


def small_random_checkpoint(path):
    """A tiny CLIP ResNet (taps of 64 + 128 channels) with seeded random weights, saved as a user's
    weights file would be; loaded back it says RANDOM WEIGHTS."""
    import torch
    from clip.model import convert_weights

    from Memorization.backbone import ResNetTaps, save_checkpoint

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ResNetTaps(layers=(1, 1, 1), width=8)
    convert_weights(model)
    model.random_weights, model.random_seed = True, 0
    return save_checkpoint(model, path)
