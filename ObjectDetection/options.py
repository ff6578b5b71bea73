"""The Object Detection stage's configuration: plain data, cheap to import, so that the commands'
--help and argument errors come before OpenCV or torch loads."""
from dataclasses import dataclass

from extra import config
from extra.datasets import SPLITS
from extra.errors import VPCError, warn

# --detector: the paper's YOLOv5, or one needing no weights (ObjectDetection.detectors makes each).
YOLO, MOTION, HOG = "yolov5", "motion", "hog"
DETECTORS = (YOLO, MOTION, HOG)


@dataclass(frozen=True)
class DetectionOptions:
    """The stage's flags (run.py --help)."""

    train_od: bool = True
    test_od: bool = True
    save_image: bool = False
    save_image_all: bool = False
    is_save_train_pickle: bool = False
    is_save_test_pickle: bool = False
    is_load_train_pickle: bool = False
    is_load_test_pickle: bool = False
    detector: str = YOLO
    yolo_weights: str = config.yolo_weights
    batch_size: int = 16
    overwrite: bool = False
    verify: bool = False


@dataclass(frozen=True)
class SplitJob:
    """What to do for one split."""

    split: str
    load_pickle: bool        # boxes from the split's pickle instead of a detector
    write_batches: bool
    save_pickle: bool
    save_image: bool
    save_image_all: bool

    @property
    def images(self):
        return self.save_image or self.save_image_all


def plan_jobs(options):
    """The split jobs the flags ask for, in SPEC section 8's semantics (ObjectDetection.pipeline's docstring);
    none is an error."""
    pickle_flags = {(split, action): getattr(options, f"is_{action}_{split}_pickle")
                    for split in SPLITS for action in ("save", "load")}
    plain = not (any(pickle_flags.values()) or options.save_image or options.save_image_all)
    jobs = []
    for split in SPLITS:
        load, save = pickle_flags[split, "load"], pickle_flags[split, "save"]
        if load and save:
            raise VPCError(f"--is_load_{split}_pickle and --is_save_{split}_pickle both given: the pickle would "
                           f"be rewritten from itself; choose one")
        if not getattr(options, f"{split}_od"):
            if load or save:
                warn(f"--{split}_od=False: the {split} pickle flag is ignored")
            continue
        job = SplitJob(split=split, load_pickle=load, write_batches=plain or load or save, save_pickle=save,
                       save_image=options.save_image, save_image_all=options.save_image_all)
        if job.write_batches or job.images:
            jobs.append(job)
    if not jobs:
        raise VPCError("nothing to do: --train_od / --test_od and the pickle flags leave no split to process")
    return jobs
