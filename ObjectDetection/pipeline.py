"""The Object Detection stage end to end: which splits to run, per video boxes -> crops -> files.

Flags keep the published meaning (SPEC section 8): with none of ``--is_save_*_pickle``,
``--is_load_*_pickle``, ``--save_image``, ``--save_image_all`` the stage runs plain detection
(object batches of every split that ``--train_od`` / ``--test_od`` leave on). Any of them turns
plain detection off, and only what they ask for is done, for the splits left on:

- ``--is_load_<split>_pickle``: object batches from the split's boxes pickle; no detector.
- ``--is_save_<split>_pickle``: detection, object batches, and the boxes pickle.
- ``--save_image`` / ``--save_image_all``: images into od_save/ (boxes drawn on each key frame /
  every resized crop) for each split on; boxes from the pickle where it is loaded, else detected.

A video whose object-batches file exists (files appear only when complete) and was made with the
same settings is skipped, unless ``overwrite``; a file made with other settings stops the run.
With boxes from a pickle, a file holding exactly those boxes counts as done, whatever made it (so
``--is_save_*_pickle`` then ``--is_load_*_pickle`` in one working directory redoes nothing).
Images are always made afresh; a boxes pickle is written once its whole split is done.
"""
import functools
import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from extra.cli import RunContext
from extra.datasets import list_videos
from extra.errors import VPCError
from extra.io import atomic_path
from extra.lock import work_lock
from extra.sharding import map_videos, model_getter
from extra.store import clip_key
from extra.workdir import WorkDir
from ObjectDetection.boxes import clip_crops, key_frame_offset, object_boxes, objects_array
from ObjectDetection.detectors import detector_description, make_detector
from ObjectDetection.objects import (
    load_boxes_pickle, object_batches_writer, pickle_key, read_stored_video, save_boxes_pickle,
)
from ObjectDetection.options import DetectionOptions, SplitJob, plan_jobs


def object_record(settings, split, consecutive, threshold, boxes_from):
    """Settings the object batches depend on (stored in each file; a rerun must match them)."""
    return {"stage": "objects", "dataset": settings.name, "split": split, "consecutive": consecutive,
            "obj_size": settings.obj_size, "classes": list(settings.detector_classes),
            "conf_threshold": threshold, "box_factor": list(settings.box_factor),
            "max_w": settings.max_w, "max_h": settings.max_h, "boxes_from": boxes_from}


@dataclass
class SplitSummary:
    split: str
    videos: int = 0
    skipped: int = 0         # already complete
    clips: int = 0
    objects: int = 0
    empty_clips: int = 0

    def add(self, objects_per_clip):
        self.videos += 1
        self.clips += len(objects_per_clip)
        self.objects += sum(objects_per_clip)
        self.empty_clips += sum(1 for n in objects_per_clip if n == 0)

    def line(self):
        done = f" ({self.skipped} already done)" if self.skipped else ""
        return (f"{self.split}: {self.videos} videos{done}, {self.clips} clips, {self.objects} objects, "
                f"{self.empty_clips} clips with no object")


# --- images ---------------------------------------------------------------------------------------

def draw_boxes(frame, boxes):
    """A copy of the frame with each box drawn and numbered by its row in the clip's object array."""
    image = frame.copy()
    for number, box in enumerate(boxes):
        xmin, ymin, xmax, ymax = (int(v) for v in box[:4])
        cv2.rectangle(image, (xmin, ymin), (xmax - 1, ymax - 1), (0, 255, 0), 2)
        cv2.putText(image, str(number), (xmin + 2, ymin + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1,
                    cv2.LINE_AA)
    return image


def write_image(path, image):
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise VPCError(f"cannot write image {path}")


def clip_image_writer(od_save, split, video_name, job):
    """``save(clip_index, key_frame, boxes, crops)`` writing what the job asks for:
    od_save/<split>/boxes/<video>/<clip>.jpg and od_save/<split>/objects/<video>/<clip>_obj<k>_frame<t>.jpg."""
    boxes_folder, objects_folder = (od_save / split / kind / video_name for kind in ("boxes", "objects"))

    def save(clip_index, key_frame, boxes, crops):
        if job.save_image:
            write_image(boxes_folder / f"{clip_key(clip_index)}.jpg", draw_boxes(key_frame, boxes))
        if job.save_image_all:
            for k, object_crops in enumerate(crops):
                for t, crop in enumerate(object_crops):
                    write_image(objects_folder / f"{clip_key(clip_index)}_obj{k}_frame{t}.jpg", crop)
    return save


# --- one video ------------------------------------------------------------------------------------

def process_video(video, consecutive, clip_boxes, obj_size, add_clip=None, save_images=None):
    """Boxes of each clip -> crops -> ``add_clip(clip_index, objects, boxes)`` and ``save_images(...)``.

    ``clip_boxes`` yields the final boxes of each clip in order. Returns the video's boxes (per clip
    a list of rows) and its number of objects per clip.
    """
    offset = key_frame_offset(consecutive)
    all_boxes, objects_per_clip = [], []
    for (clip_index, frames), boxes in zip(video.iter_clips(consecutive), clip_boxes):
        crops = clip_crops(frames, boxes, obj_size)
        if add_clip is not None:
            add_clip(clip_index, objects_array(crops), boxes)
        if save_images is not None:
            save_images(clip_index, frames[offset], boxes, crops)
        all_boxes.append([list(map(float, box)) for box in boxes])
        objects_per_clip.append(len(boxes))
    if len(all_boxes) != video.n_clips(consecutive):
        raise RuntimeError(f"{video.name}: boxes for {len(all_boxes)} of {video.n_clips(consecutive)} clips")
    return all_boxes, objects_per_clip


# --- one split ------------------------------------------------------------------------------------

def stored_video(path, record, n_clips, pickled_boxes=None, verify=False):
    """A finished file that this run would write the same; else an error (``--overwrite`` redoes it).

    With boxes from a pickle, a file holding exactly those boxes counts as the same whatever made
    them (a detector run that also saved this pickle, typically).
    """
    if pickled_boxes is None:
        return read_stored_video(path, record, n_clips, verify=verify)
    stored = read_stored_video(path, record, n_clips, ignore=("boxes_from",), verify=verify)
    if stored.boxes is None or any(not np.array_equal(np.reshape(a, (-1, 6)), b)
                                   for a, b in zip(stored.boxes, pickled_boxes)):
        raise VPCError(f"{path} holds other boxes than {record['boxes_from']}; delete it, pass --overwrite, "
                       f"or use another --work_num")
    return stored


@dataclass(frozen=True)
class VideoObjects:
    """The per-video step of a split job: ``self(video)`` makes (or keeps) the video's object batches and
    images and returns (its boxes, its objects per clip, whether its file was already done). Plain
    data and a detector getter, so that Ray can run it on a worker (extra.sharding)."""

    job: SplitJob
    context: RunContext
    work: WorkDir
    record: dict                 # the settings the object batches record
    threshold: float             # detector confidence kept
    pickled: dict                # the split pickle's boxes per video name; None: detect
    get_detector: Callable
    options: DetectionOptions

    def clip_boxes(self, video):
        if self.pickled is not None:
            return iter(self.pickled[video.name])
        settings, d = self.context.settings, self.context.consecutive
        return (object_boxes(detections, settings, self.threshold)
                for detections in self.get_detector().detect_video(video, d))

    def __call__(self, video):
        job, options, d = self.job, self.options, self.context.consecutive
        path = self.work.object_batches(job.split, video.name)
        stored = None
        if (job.write_batches or job.save_pickle) and path.is_file() and not options.overwrite:
            stored = stored_video(path, self.record, video.n_clips(d), self.pickled and self.pickled[video.name],
                                  options.verify)
        if stored is not None and not job.images and (not job.save_pickle or stored.boxes is not None):
            return stored.boxes, stored.objects_per_clip, True
        save_images = None
        if job.images:
            save_images = clip_image_writer(self.work.od_save, job.split, video.name, job)
        run = functools.partial(process_video, video, d, self.clip_boxes(video), self.context.settings.obj_size,
                                save_images=save_images)
        if job.write_batches and stored is None:
            with object_batches_writer(path, self.record, video.n_clips(d)) as add_clip:
                return (*run(add_clip=add_clip), False)
        return (*run(), False)


def run_split(job, context, work, get_detector, options):
    """Run one split job, each video on a Ray worker with --ray; returns its SplitSummary."""
    settings, d, split = context.settings, context.consecutive, job.split
    videos = list_videos(settings, context.data_root, split, d)
    threshold = settings.train_conf if split == "train" else settings.test_conf
    pickle_path = work.boxes_pickle(split)
    pickled = load_boxes_pickle(pickle_path, videos, d, split) if job.load_pickle else None
    if job.load_pickle:
        boxes_from = f"pickle {pickle_path.name}"
    else:
        boxes_from = detector_description(options.detector, options.yolo_weights)
    record = object_record(settings, split, d, threshold, boxes_from)
    per_video = VideoObjects(job, context, work, record, threshold, pickled, get_detector, options)

    summary = SplitSummary(split)
    boxes_by_key = {}
    for video, (boxes, objects_per_clip, done_before) in zip(
            videos, map_videos(per_video, videos, f"{split} objects", context.ray)):
        boxes_by_key[pickle_key(video)] = boxes
        summary.add(objects_per_clip)
        summary.skipped += done_before
    if job.save_pickle:
        save_boxes_pickle(pickle_path, boxes_by_key)
    return summary


def run_object_detection(context, options, jobs=None):
    """Every split job the options ask for (``jobs``: ``plan_jobs(options)``, when the caller has them
    already); prints a summary; returns the SplitSummary list."""
    start = time.perf_counter()
    work = WorkDir(context.work_dir, context.settings.name)
    jobs = plan_jobs(options) if jobs is None else jobs

    # Loaded on first use (a run that needs no detection needs no weights), once per Ray worker with --ray.
    get_detector = model_getter(context.ray, make_detector, options.detector, options.yolo_weights, None,
                                options.batch_size)
    with work_lock(work.root, work.dataset, work.dataset_folders()):
        summaries = [run_split(job, context, work, get_detector, options) for job in jobs]
    for summary in summaries:
        print(summary.line())
    print(f"object detection on {context.settings.name} done in {time.perf_counter() - start:.1f} s; "
          f"files under {work.objects}")
    return summaries
