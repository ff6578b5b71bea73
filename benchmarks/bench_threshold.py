"""Does the label-free alarm threshold hold on new normal video of the training camera? (issue #23)

    python benchmarks/bench_threshold.py [--out /tmp/bench_threshold] [--sets demo,long,later,interleaved]
        [--footage PATH.avi] [--false_alarm_rate 0.01] [--clip_weights FILE]

For each set, runs object detection (motion) and the Memorization stage with its label-free
calibration, and prints the target false-alarm rate against the one measured on the normal test
frames (offline, and clip by clip as live scoring alarms), the label-free AUROC against the fixed
weights' (total, micro), and what the calibration says it cannot support. Beside them, "before":
the same numbers from the calibration before issue #23 (measured with that code on the same sets,
settings and encoder, recorded in BEFORE; shown only for the encoder and rate they were measured
with). The features, banks and objects of a set are reused by a rerun; its calibration is made anew.

The sets:
- ``demo``: ``make demo``'s data (extra.make_demo, seed 0, 2 training and 4 test videos of 60 frames,
  640 x 360) and settings (Avenue's: clips of 10, coreset 0.01);
- ``long``: generated too, but longer (seed 1, 4 training and 4 test videos of 300 frames, 320 x 180),
  with the footage sets' settings: enough normal clips for a 5 % target (the demo has too few for any);
- ``later`` and ``interleaved``: real footage, a pedestrian plaza (OpenCV's vtest.avi, 10 fps, 795
  frames, by default), 192 x 144, clips of 4, coreset 0.25 for every bank: four normal training
  videos of 120 frames and three test videos of 105, each with one injected anomaly on a stretch of
  it (a sudden speed-up, frames at a stride of 4: people running; a dark van-sized box crossing the
  frame; a small object thrown on a parabola). ``later`` takes the test videos after the training
  ones (the scene may have changed: people walk on the lawn near the camera only late in vtest);
  ``interleaved`` takes them in turn through the video.

CLIP runs with random weights unless --clip_weights is given (no pretrained file offline): the
numbers test the calibration, not the method. Each set's data and work files stay under --out.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extra.errors import VPCError, run_main  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SIZE = (192, 144)                   # the footage set's frame size (the source's quarter)
TRAIN_VIDEOS, TRAIN_FRAMES, TEST_VIDEOS, TEST_FRAMES = 4, 120, 3, 105
ANOMALY = {"speed-up": (35, 70), "van": (30, 65), "thrown": (50, 70)}     # frames of each test video


def read_frames(path, count):
    import cv2

    if not Path(path).is_file():
        raise VPCError(f"{path} not found: install Debian's opencv-doc or pass --footage with another video")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA))
    capture.release()
    if len(frames) < count:
        raise VPCError(f"{path} gives {len(frames)} frames; the footage set needs {count}")
    return frames


def injected(kind, frames, source, start, end):
    """The test video's frames with ``kind`` drawn on frames start..end-1 (``source``: frames to speed up from)."""
    import cv2

    out = [f.copy() for f in frames]
    width, height = SIZE
    for t in range(start, end):
        progress_ = (t - start) / (end - start - 1)
        if kind == "speed-up":
            out[t] = source[min(start + 4 * (t - start), len(source) - 1)].copy()
        elif kind == "van":
            x = int(-60 + progress_ * (width + 60))
            cv2.rectangle(out[t], (x, 70), (x + 56, 100), (40, 40, 45), -1)
            cv2.rectangle(out[t], (x + 38, 74), (x + 52, 86), (180, 170, 150), -1)
        else:
            x = int(20 + progress_ * (width - 40))
            y = int(110 - 4 * 80 * progress_ * (1 - progress_))
            cv2.circle(out[t], (x, y), 5, (30, 110, 230), -1)
    return out


def footage_segments(layout):
    """(training starts, test starts) in frames of the source: ``later``, the training videos first and the
    test videos after them (the scene may have changed); ``interleaved``, taken in turn through the video."""
    if layout == "later":
        return ([v * TRAIN_FRAMES for v in range(TRAIN_VIDEOS)],
                [TRAIN_VIDEOS * TRAIN_FRAMES + v * TEST_FRAMES for v in range(TEST_VIDEOS)])
    step = TRAIN_FRAMES + TEST_FRAMES
    return [v * step for v in range(TRAIN_VIDEOS)], [v * step + TRAIN_FRAMES for v in range(TEST_VIDEOS)]


def make_footage_set(source, data_root, layout):
    """The footage set in the Avenue layout under ``data_root`` (kept when already there)."""
    import cv2
    import numpy as np

    from extra.make_demo import avenue_mat_bytes, frame_name

    root = Path(data_root) / "avenue"
    if (root / "avenue.mat").is_file():
        return root
    train, test = footage_segments(layout)
    frames = read_frames(source, max(train[-1] + TRAIN_FRAMES, test[-1] + TEST_FRAMES))

    def write(folder, video):
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(video):
            cv2.imwrite(str(folder / frame_name("avenue", "train", t)), frame)

    for v, first in enumerate(train):
        write(root / "training" / "frames" / f"{v + 1:02d}", frames[first:first + TRAIN_FRAMES])
    intervals = []
    for v, (first, (kind, (start, end))) in enumerate(zip(test, ANOMALY.items())):
        video = frames[first:first + TEST_FRAMES]
        write(root / "testing" / "frames" / f"{v + 1:02d}", injected(kind, video, frames[first:], start, end))
        intervals.append(np.array([[start + 1], [end]]))
    (root / "avenue.mat").write_bytes(avenue_mat_bytes(intervals))
    return root


SETS = ("demo", "long", "later", "interleaved")
FOOTAGE_STAGE = ["--consecutive=4", "--spatial_f_coreset=0.25", "--temporal_f_coreset=0.25",
                 "--highlevel_f_coreset=0.25"]
# Before issue #23 (git bea4ee8, the same sets and flags), per encoder as results.json names it, per set
# and target rate: (measured FA on normal test frames, label-free total micro AUROC).
BEFORE = {
    "RN101": {"demo": {0.01: (0.1445, 0.9085)}},          # random weights: what make demo runs offline
    # a small random CLIP ResNet (tests.helpers.small_random_checkpoint)
    "ResNet(layers=(1, 1, 1), width=8)": {"demo": {0.01: (0.0, 0.8835)}, "long": {0.05: (0.1062, 0.8644)},
                                          "later": {0.01: (0.1667, 0.5101)}, "interleaved": {0.01: (0.0, 0.4925)}},
}


def prepare(name, out, footage):
    """(data root, the stage's flags for the set) with the set's data written under ``out``."""
    from extra.make_demo import make_demo

    data = out / name / "data"
    if name == "demo":
        make_demo(data, "avenue", seed=0, n_train=2, n_test=4, n_frames=60, skip_existing=True)
        return data, []
    if name == "long":
        make_demo(data, "avenue", seed=1, n_train=4, n_test=4, n_frames=300, width=320, height=180,
                  skip_existing=True)
        return data, FOOTAGE_STAGE
    make_footage_set(footage, data, name)
    return data, FOOTAGE_STAGE


def measure(name, out, footage, false_alarm_rate, encoder):
    """(results, metadata) of the set's run (extra.evaluation.results) after detection and the stage."""
    from Memorization.run import main as stage
    from ObjectDetection.run import main as detect

    data, flags = prepare(name, out, footage)
    common = [f"--data_root={data}", "--dataset=avenue", f"--work_dir={out / name / 'work'}"]
    if not (out / name / "work" / "objects").is_dir():
        detect(common + [f for f in flags if f.startswith("--consecutive")] + ["--detector=motion"])
    for saved in (out / name / "work").rglob("calibration_*.json"):    # this code's calibration, not a saved one
        saved.unlink()
    stage(common + flags + encoder + [f"--false_alarm_rate={false_alarm_rate}"])
    (path,) = (out / name / "work" / "results").glob("avenue/*/*/results.json")
    document = json.loads(path.read_text())
    return document["results"], document["metadata"]


def row(name, results, before):
    """One line of the table; ``before``: the recorded (FA, AUROC) of the old calibration, or None."""
    free = results["label_free"]
    live = free.get("clip_alarms", free["alarms"])["false_alarm_rate"]
    fixed, label_free = results["fixed"]["streams"]["total"]["micro"], free["streams"]["total"]["micro"]
    was, was_auroc = ("", "") if before is None else (f"{100 * before[0]:.2f} -> ", f"{100 * before[1]:.2f} -> ")
    measured = free["measured_false_alarm_rate"]
    return (f"| {name} | {100 * free['target_false_alarm_rate']:g} | {was}{100 * measured:.2f} "
            f"| {100 * live:.2f} | {was_auroc}{100 * label_free:.2f} | {100 * fixed:.2f} | "
            f"{free['calibration']['support'].get('note', 'supported')} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_threshold"), help="data and work files")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, among {', '.join(SETS)}")
    parser.add_argument("--footage", type=Path, default=VTEST, help="the video the footage sets are cut from")
    parser.add_argument("--false_alarm_rate", type=float, default=0.01)
    parser.add_argument("--clip_weights", default=None, help="CLIP weights file (default: random RN101)")
    args = parser.parse_args(argv)
    sets = args.sets.split(",")
    if not set(sets) <= set(SETS):
        raise VPCError(f"unknown set in --sets {args.sets}: choose among {', '.join(SETS)}")
    encoder = [f"--clip_weights={args.clip_weights}"] if args.clip_weights else ["--random_weights"]
    runs = {name: measure(name, args.out, args.footage, args.false_alarm_rate, encoder) for name in sets}
    metadata = next(iter(runs.values()))[1]
    backbone = metadata.get("backbone")
    recorded = {name: rates.get(args.false_alarm_rate) for name, rates in BEFORE.get(backbone, {}).items()}
    weights = "RANDOM weights" if metadata.get("random_weights") else "pretrained weights"
    print(f"\nlabel-free threshold, encoder {backbone} with {weights}; FA in % of normal test frames, AUROC of "
          f"the total (micro) in %; before -> after where recorded\n")
    print("| set | target FA | measured FA | clip-by-clip FA | label-free AUROC | fixed AUROC | support |")
    print("|---|---|---|---|---|---|---|")
    for name, (results, _) in runs.items():
        print(row(name, results, recorded.get(name)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
