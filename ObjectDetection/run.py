"""Object Detection stage: objects of every clip, cut from its frames (SPEC section 2).

    python run.py --dataset=avenue            (from this folder, or ObjectDetection/run.py from the root)
"""
import argparse
import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extra import config  # noqa: E402
from extra.cli import add_bool_flag, base_parser, resolve_context  # noqa: E402
from extra.datasets import split_folder  # noqa: E402
from extra.errors import run_main  # noqa: E402
from ObjectDetection.options import DETECTORS, YOLO, DetectionOptions, plan_jobs  # noqa: E402

FLAG_SEMANTICS = """\
Without any of --is_save_*_pickle, --is_load_*_pickle, --save_image, --save_image_all the stage
runs plain detection: object batches of the splits --train_od / --test_od leave on. Any of them
turns plain detection off and only what they ask for is done (for the splits left on):
--is_load_<split>_pickle rebuilds that split's object batches from its boxes pickle (no detector);
--is_save_<split>_pickle detects, writes that split's object batches and its pickle; --save_image /
--save_image_all write images to od_save/ for each split (boxes from the pickle where one is loaded).
Videos whose object batches are complete are skipped (--overwrite redoes them).
Boolean flags take yes/no, true/false, t/f, y/n, 1/0; a bare flag means true."""


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    parser.epilog = FLAG_SEMANTICS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_bool_flag(parser, "--train_od", True, "process the training split (default true)")
    add_bool_flag(parser, "--test_od", True, "process the test split (default true)")
    add_bool_flag(parser, "--save_image", False, "draw the numbered boxes on each clip's key frame into od_save/")
    add_bool_flag(parser, "--save_image_all", False, "write every resized object crop into od_save/")
    for split in ("train", "test"):
        add_bool_flag(parser, f"--is_save_{split}_pickle", False,
                      f"save the {split} boxes to objects/<dataset>/<dataset>_{split}.pickle (with the object batches)")
        add_bool_flag(parser, f"--is_load_{split}_pickle", False,
                      f"rebuild the {split} object batches from that pickle, without a detector")
    parser.add_argument("--detector", default=YOLO, choices=DETECTORS,
                        help="yolov5 (default, the paper's YOLOv5-L), or an offline one needing no weights: "
                             "motion (background subtraction), hog (OpenCV's pedestrian detector)")
    parser.add_argument("--yolo_weights", default=config.yolo_weights,
                        help="YOLOv5 model name (looked up in, or downloaded to, torch's cache "
                             "$TORCH_HOME/hub/checkpoints) or a local checkpoint file (default: yolo_weights "
                             "in extra/config.py, yolov5l, the paper's)")
    parser.add_argument("--batch_size", type=int, default=16, help="key frames per YOLOv5 forward pass")
    add_bool_flag(parser, "--overwrite", False, "redo videos whose object batches already exist")
    add_bool_flag(parser, "--verify", False, "read every existing object-batches file whole and check it against "
                                             "its checksums before keeping it")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    context = resolve_context(args)
    options = DetectionOptions(**{f.name: getattr(args, f.name) for f in fields(DetectionOptions)})
    jobs = plan_jobs(options)
    for job in jobs:
        split_folder(context.settings, context.data_root, job.split)
    from ObjectDetection.pipeline import run_object_detection   # the model code, once the arguments are sound

    run_object_detection(context, options, jobs)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
