"""The stage's files: per-video HDF5 object batches and the per-split boxes pickle (SPEC sections 2, 8).

Object batches: a clip file of extra.store, each clip float32 (n_objects, 3, d, H, W) or the
empty-clip placeholder. Each clip's dataset also carries its boxes as an attribute ``boxes``
(float64 (n_objects, 6)), so a later run can rebuild the pickle without detecting again.

Boxes pickle: ``{'1': [clip 0 boxes, clip 1 boxes, ...], '2': ...}`` keyed by the 1-based index of
the video in the split's sorted order; each box is ``[xmin, ymin, xmax, ymax, conf, cls]``.
"""
import contextlib
from dataclasses import dataclass
from pathlib import Path

from extra.datasets import natural_key
from extra.errors import VPCError
from extra.io import load_pickle, save_pickle
from extra.store import open_clip_file, write_clip_file
from extra.workdir import OBJECT_BATCHES
from ObjectDetection.boxes import as_detections

BOXES_ATTRIBUTE = "boxes"


# --- object batches --------------------------------------------------------------------------------

def n_objects(batch_shape):
    """Objects in a stored clip array of this shape (the placeholder has one dimension and none)."""
    return 0 if len(batch_shape) == 1 else batch_shape[0]


@contextlib.contextmanager
def object_batches_writer(path, record, n_clips):
    """Yield ``add(clip_index, objects, boxes)``; the file appears at ``path`` only once all n_clips are added."""
    with write_clip_file(path, record, n_clips) as writer:
        yield lambda clip_index, objects, boxes: writer.add(clip_index, objects,
                                                            **{BOXES_ATTRIBUTE: as_detections(boxes)})


@dataclass
class StoredVideo:
    """What a finished object-batches file says about its video."""

    objects_per_clip: list
    boxes: list        # per clip a list of box rows; None when the file carries no boxes (the authors' files)


def read_stored_video(path, record, n_clips, ignore=(), verify=False):
    """Summary of a finished file, after checking it was made with ``record`` (but for the keys in
    ``ignore``), is whole and has the video's clips."""
    with open_clip_file(path, OBJECT_BATCHES, record, n_clips, ignore, verify) as opened:
        boxes = [opened.attribute(i, BOXES_ATTRIBUTE) for i in range(n_clips)]
        has_boxes = all(b is not None for b in boxes)
        return StoredVideo(objects_per_clip=[n_objects(shape) for shape in opened.shapes()],
                           boxes=[b.tolist() for b in boxes] if has_boxes else None)


def clip_boxes_of(path, clips):
    """The boxes (k, 6) stored with the given clips of an object-batches file; None for a clip without."""
    with open_clip_file(path, OBJECT_BATCHES) as opened:
        return [opened.attribute(c, BOXES_ATTRIBUTE) for c in clips]


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

