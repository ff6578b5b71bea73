"""Does the label-free alarm threshold hold on new normal video of the training camera? (issue #23)

    python benchmarks/bench_threshold.py [--out /tmp/bench_threshold] [--runs demo@1,large@1,later@5,...]
        [--footage PATH.avi] [--clip_weights FILE]

For each run (a set at a target false-alarm rate in %), runs object detection (motion) and the
Memorization stage with its label-free calibration at that rate, and prints the target against the
false-alarm rate measured on the normal test frames (offline, and clip by clip as live scoring
alarms), the label-free AUROC against the fixed weights' (total, micro), and what the calibration
says it cannot support. Beside them, "before": the same numbers from the calibration before issue
#23 (measured with that code on the same sets, settings and encoder, recorded in BEFORE; shown only
for the encoder and rate they were measured with). The features, banks and objects of a set are
reused by a rerun; its calibration is made anew. The default runs each set at 1 % (the issue's
target) and the footage sets also at 5 %, a rate their normal footage supports.

The sets:
- ``demo``: ``make demo``'s data (extra.make_demo, seed 0, 2 training and 4 test videos of 60 frames,
  640 x 360) and settings (Avenue's: clips of 10, coreset 0.01);
- ``long``: generated too, but longer (seed 1, 4 training and 4 test videos of 300 frames, 320 x 180),
  with the footage sets' settings: enough normal clips for a 5 % target (the demo has too few for any);
- ``large``: generated (seed 2, 10 training and 16 test videos of 240 frames, 256 x 144), the footage
  sets' settings: enough held-out normal clips for a 1 % target, and enough normal test clips to
  measure it (about 5 expected above the threshold per 500);
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


SETS = ("demo", "long", "large", "later", "interleaved")
RUNS = "demo@1,long@5,large@1,later@1,later@5,interleaved@1,interleaved@5"
FOOTAGE_STAGE = ["--consecutive=4", "--spatial_f_coreset=0.25", "--temporal_f_coreset=0.25",
                 "--highlevel_f_coreset=0.25"]
# Before issue #23 (git bea4ee8, the same sets and flags), per encoder as results.json names it, per set
# and target rate: (measured FA on normal test frames, label-free total micro AUROC).
BEFORE = {
    "RN101": {"demo": {0.01: (0.1445, 0.9085)}},          # random weights: what make demo runs offline
    # a small random CLIP ResNet (tests.helpers.small_random_checkpoint)
    "ResNet(layers=(1, 1, 1), width=8)": {"demo": {0.01: (0.0, 0.8835)}, "long": {0.05: (0.1062, 0.8644)},
                                          "large": {0.01: (0.0, 0.8589)},
                                          "later": {0.01: (0.1667, 0.5101), 0.05: (0.1802, 0.5101)},
                                          "interleaved": {0.01: (0.0, 0.4925), 0.05: (0.0, 0.4925)}},
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
    if name == "large":
        make_demo(data, "avenue", seed=2, n_train=10, n_test=16, n_frames=240, width=256, height=144,
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


def parse_runs(text):
    """[(set, target rate)] from "set@percent,...", checked."""
    runs = []
    for item in text.split(","):
        name, _, percent = item.partition("@")
        try:
            rate = float(percent) / 100
        except ValueError:
            rate = None
        if name not in SETS or rate is None or not 0 < rate < 1:
            raise VPCError(f"--runs: {item!r} is not SET@PERCENT with SET among {', '.join(SETS)} and "
                           f"0 < PERCENT < 100")
        runs.append((name, rate))
    return runs


def within_two(results):
    """Whether the measured false-alarm rate lies within a factor of 2 of the target: "yes", "no", or, where
    the normal test clips are too few to tell (the 95 % interval reaches into the factor of 2), "cannot tell"."""
    free = results["label_free"]
    target, measured = free["target_false_alarm_rate"], free["measured_false_alarm_rate"]
    low, high = free["measured_false_alarm"]["interval"]
    if target / 2 <= measured <= 2 * target:
        return "yes"
    return "cannot tell" if low <= 2 * target and high >= target / 2 else "no"


def row(name, results, before):
    """One line of the table; ``before``: the recorded (FA, AUROC) of the old calibration, or None."""
    free = results["label_free"]
    live = free.get("clip_alarms", free["alarms"])["false_alarm_rate"]
    fixed, label_free = results["fixed"]["streams"]["total"]["micro"], free["streams"]["total"]["micro"]
    was, was_auroc = ("", "") if before is None else (f"{100 * before[0]:.2f} -> ", f"{100 * before[1]:.2f} -> ")
    measured, spread = free["measured_false_alarm_rate"], free["measured_false_alarm"]
    low, high = spread["interval"]
    support = free["calibration"]["support"]
    held_out = f"{support['normal_clips']} clips: " + ("yes" if support["supported"] else "no")
    return (f"| {name} | {100 * free['target_false_alarm_rate']:g} | {was}{100 * measured:.2f} "
            f"| {100 * low:.2g}-{100 * high:.2g} ({spread['normal']} {spread['unit']}) | {within_two(results)} "
            f"| {100 * live:.2f} | {was_auroc}{100 * label_free:.2f} | {100 * fixed:.2f} | {held_out} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_threshold"), help="data and work files")
    parser.add_argument("--runs", default=RUNS, help=f"comma-separated SET@PERCENT, SET among {', '.join(SETS)} "
                                                      f"(default {RUNS})")
    parser.add_argument("--footage", type=Path, default=VTEST, help="the video the footage sets are cut from")
    parser.add_argument("--clip_weights", default=None, help="CLIP weights file (default: random RN101)")
    args = parser.parse_args(argv)
    runs = parse_runs(args.runs)
    encoder = [f"--clip_weights={args.clip_weights}"] if args.clip_weights else ["--random_weights"]
    measured = [(name, rate, *measure(name, args.out, args.footage, rate, encoder)) for name, rate in runs]
    metadata = measured[0][3]
    backbone = metadata.get("backbone")
    recorded = BEFORE.get(backbone, {})
    weights = "RANDOM weights" if metadata.get("random_weights") else "pretrained weights"
    print(f"\nlabel-free threshold, encoder {backbone} with {weights}; FA in % of normal test frames, AUROC of "
          f"the total (micro) in %; before -> after where recorded\n")
    print("| set | target FA | measured FA | its 95 % interval (normal test clips) | within 2x | clip-by-clip FA "
          "| label-free AUROC | fixed AUROC | held-out normal footage supports the target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rate, results, _ in measured:
        print(row(name, results, recorded.get(name, {}).get(rate)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
