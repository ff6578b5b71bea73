"""Score footage with a model file: video files, frame folders, or a live source, clip by clip.

    python score.py camera.vpc clip1.mp4 frames_folder/ --out_dir scores --detector motion
    python score.py camera.vpc rtsp://camera/stream        (or a camera index: 0; a file with --live)

Writes per input <out_dir>/<name>.csv (frame, timestamp, a score per bank of the model (MNAD: psnr and
distance), fused, alarm),
<name>_alarms.json (alarm intervals, from the model's label-free threshold, and the threshold), with
--video_out <name>.mp4 (objects coloured by their score, a score strip, alarms framed in red) and, with
--report, <name>_report.html (the scores over time and each alarm explained, in one self-contained
page). --gt adds the AUROC against labels in any supported format (a .npy per-frame vector, or an avenue.mat entry).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extra.cli import OneLineErrorParser, add_bool_flag  # noqa: E402
from extra.errors import VPCError, run_main  # noqa: E402


def build_parser():
    from Memorization.cli import add_precision_argument
    from ObjectDetection.options import DETECTORS

    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model file written by fit.py, VideoPatchCore's or MNAD's (or by "
                                      "Memorization/run.py)")
    parser.add_argument("inputs", nargs="+", help="video files, frame folders, a camera index, or a stream URL")
    parser.add_argument("--out_dir", default="scores", help="where the CSV, JSON and MP4 files go (default scores/)")
    parser.add_argument("--detector", default=None, choices=DETECTORS,
                        help="the object detector (default: the one fit.py recorded in the model file, else yolov5; "
                             "MNAD and dual-memory models read whole frames and need none)")
    parser.add_argument("--yolo_weights", default=None,
                        help="YOLOv5 model name or local checkpoint (default: the model file's, else extra/config.py)")
    parser.add_argument("--clip_weights", default=None,
                        help="the CLIP weights file the model was fitted with, when neither the path it recorded nor "
                             "CLIP's cache holds it (found by its hash)")
    add_bool_flag(parser, "--live", False, "play video files at their frame rate, as a live source")
    add_bool_flag(parser, "--video_out", False, "also write an annotated MP4 per input")
    add_bool_flag(parser, "--report", False, "also write <name>_report.html per input: one self-contained page "
                                             "of the scores over time and each alarm's frame with the nearest "
                                             "normal memory item (README, Reviewing alarms)")
    add_bool_flag(parser, "--raw_scores", False, "write each stream's raw score (a distance, a PSNR) in the CSV, not "
                                                 "the calibrated one, where 1 is the top of the normal range "
                                                 "(README, Your own footage)")
    parser.add_argument("--gt", default=None, help="ground truth of a single input: .npy labels or an avenue.mat")
    parser.add_argument("--gt_video", type=int, default=1, help="which entry of the avenue.mat (1-based, default 1)")
    add_precision_argument(parser, None, "the model file's; another one scores features its banks were not made of")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.gt and len(args.inputs) != 1:
        raise VPCError("--gt goes with a single input")
    from extra.sources import ClipReader

    # The inputs are checked before the model code loads (seconds); their clip length comes from the model.
    readers = [ClipReader(source, None, args.live) for source in args.inputs]
    from extra.footage_outputs import ground_truth_labels, score_source
    from extra.methods import trained_scorer

    scorer = trained_scorer(args.model, args.raw_scores)
    if scorer is not None and args.precision is not None:
        raise VPCError("--precision is VideoPatchCore's: a training-based model scores in float32")
    if scorer is None:
        from Memorization.footage.live import FootageScorer

        scorer = FootageScorer.from_file(args.model, args.detector, args.precision, args.clip_weights,
                                         args.yolo_weights, args.raw_scores)
    labels = ground_truth_labels(args.gt, args.gt_video) if args.gt else None
    for reader in readers:
        reader.consecutive = scorer.consecutive
    for reader in readers:
        summary = score_source(scorer, reader, Path(args.out_dir), args.video_out, labels,
                               args.model if args.report else None)
        print(summary.line(), flush=True)
    print(f"results in {args.out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
