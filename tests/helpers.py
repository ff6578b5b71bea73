"""Test fixtures shared by several test files."""
import cv2
import h5py
import numpy as np

from extra.config import DATASETS
from extra.datasets import list_videos, normalize_frame
from extra.workdir import WorkDir, clip_key


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
