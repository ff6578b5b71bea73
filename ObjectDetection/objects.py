"""The stage's files: per-video HDF5 object batches and the per-split boxes pickle (SPEC sections 2, 8).

Object batches: one dataset per clip, named ``clip_key(i)``, holding float32 (n_objects, 3, d, H, W)
or the one-element placeholder. Each dataset also carries its boxes as an attribute ``boxes``
(float64 (n_objects, 6)), so a later run can rebuild the pickle without detecting again; the file
carries the settings record of extra.provenance. Files are written under a temporary name and
renamed once every clip is in, so an existing file is a complete one.

Boxes pickle: ``{'1': [clip 0 boxes, clip 1 boxes, ...], '2': ...}`` keyed by the 1-based index of
the video in the split's sorted order; each box is ``[xmin, ymin, xmax, ymax, conf, cls]``.
"""
import contextlib
from dataclasses import dataclass
from pathlib import Path

import h5py

from extra.datasets import natural_key
from extra.errors import VPCError
from extra.io import atomic_path, load_pickle, save_pickle
from extra.provenance import check_record, read_h5_record, write_h5_record
from extra.workdir import clip_key
from ObjectDetection.boxes import as_detections

BOXES_ATTRIBUTE = "boxes"


# --- object batches --------------------------------------------------------------------------------

def n_objects(batch_shape):
    """Objects in a stored clip array of this shape (the placeholder has one dimension and none)."""
    return 0 if len(batch_shape) == 1 else batch_shape[0]


@contextlib.contextmanager
def object_batches_writer(path, record, n_clips):
    """Yield ``add(clip_index, objects, boxes)``; the file appears at ``path`` only once all n_clips are added."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        write_h5_record(file, record)

        def add(clip_index, objects, boxes):
            dataset = file.create_dataset(clip_key(clip_index), data=objects)
            dataset.attrs[BOXES_ATTRIBUTE] = as_detections(boxes)

        yield add
        if len(file) != n_clips:
            raise RuntimeError(f"{path}: {len(file)} of {n_clips} clips written")   # a bug, not bad input


@dataclass
class StoredVideo:
    """What a finished object-batches file says about its video."""

    objects_per_clip: list
    boxes: list        # per clip a list of box rows; None when the file carries no boxes (the authors' files)


def read_stored_video(path, record, n_clips, ignore=()):
    """Summary of a finished file, after checking it was made with ``record`` (but for the keys in
    ``ignore``) and has the video's clips."""
    with h5py.File(path, "r") as file:
        found = read_h5_record(file)
        if found is not None:
            found = {key: value for key, value in found.items() if key not in ignore}
        check_record(found, {key: value for key, value in record.items() if key not in ignore}, path)
        expected = [clip_key(i) for i in range(n_clips)]
        if sorted(file.keys()) != expected:
            raise VPCError(f"{path} holds {len(file)} clips, the video has {n_clips} (another --consecutive?); "
                           f"delete it, pass --overwrite, or use another --work_num")
        datasets = [file[key] for key in expected]
        has_boxes = all(BOXES_ATTRIBUTE in d.attrs for d in datasets)
        return StoredVideo(objects_per_clip=[n_objects(d.shape) for d in datasets],
                           boxes=[d.attrs[BOXES_ATTRIBUTE].tolist() for d in datasets] if has_boxes else None)


# --- boxes pickle ---------------------------------------------------------------------------------

def pickle_key(video):
    """Key of a video in the boxes pickle: its 1-based index in the split's sorted order, as text."""
    return str(video.index + 1)


def save_boxes_pickle(path, boxes_by_key):
    """``boxes_by_key``: pickle key -> per clip a list of boxes; written atomically, keys in video order."""
    content = {key: [[[float(v) for v in box] for box in clip] for clip in boxes_by_key[key]]
               for key in sorted(boxes_by_key, key=int)}
    save_pickle(content, path)


def load_boxes_pickle(path, videos, consecutive, split):
    """Boxes of each video (by name) from a pickle, checked against the videos' clips.

    Returns ``{video.name: [float64 array (k, 6) per clip]}``. The first video whose entry is
    missing, extra or has another number of clips is named in the error.
    """
    path = Path(path)
    if not path.is_file():
        raise VPCError(f"boxes pickle not found: {path} (make it with --is_save_{split}_pickle, or put the "
                       f"published {path.name} there)")
    try:
        content = load_pickle(path)
    except Exception as error:      # any unpickling failure means the same thing to the user
        raise VPCError(f"cannot read boxes pickle {path}: {error}") from None
    if not isinstance(content, dict):
        raise VPCError(f"{path} must hold a dict keyed '1', '2', ... (one entry per video), "
                       f"found {type(content).__name__}")
    content = {str(key): value for key, value in content.items()}
    check_pickle_videos(path, content, videos, consecutive, split)
    loaded = {}
    for video in videos:
        clips = content[pickle_key(video)]
        try:
            loaded[video.name] = [as_detections(boxes) for boxes in clips]
        except VPCError as error:
            raise VPCError(f"{path}, video {pickle_key(video)} ({video.name}): {error}") from None
    return loaded


def check_pickle_videos(path, content, videos, consecutive, split):
    """Same videos, and for each the same number of clips, in the pickle and in the data."""
    expected = [pickle_key(video) for video in videos]
    missing = [key for key in expected if key not in content]
    extra = sorted(set(content) - set(expected), key=natural_key)
    if missing or extra:
        first = (f"video {missing[0]} ({videos[expected.index(missing[0])].name}) is missing from it" if missing
                 else f"it has an entry {extra[0]!r} that matches no video")
        raise VPCError(f"{path} holds boxes of {len(content)} videos, the {split} split has {len(videos)} "
                       f"usable ones: {first}")
    for video in videos:
        clips = content[pickle_key(video)]
        n_clips = video.n_clips(consecutive)
        if not isinstance(clips, (list, tuple)) or len(clips) != n_clips:
            found = len(clips) if isinstance(clips, (list, tuple)) else type(clips).__name__
            raise VPCError(f"{path}: video {pickle_key(video)} ({video.name}) has {found} clips in the pickle "
                           f"but {n_clips} in the data with --consecutive={consecutive}")

