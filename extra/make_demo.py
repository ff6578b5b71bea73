"""A small synthetic video-anomaly dataset in the exact layout of avenue, shanghai or iitb.

    python -m extra.make_demo --out DIR --seed 0 [--dataset avenue|shanghai|iitb]
        [--n_train N] [--n_test N] [--n_frames N] [--width W --height H] [--as_video_files]
        [--overwrite | --skip_existing]

One static camera: a textured background (wall with windows, lawn, paved walkway) on which
person-like figures walk left to right at a normal pace. Each test video adds one labelled
anomaly of the paper's kinds, in turn: a figure running, one walking the wrong way, a foreign
object (a cart or a bicycle) and a thrown object flying on a parabola. As in Avenue, a test video
is mostly normal: its anomaly is in view on 20-35 % of its frames, with normal stretches before
and after it. Runners, wrong-way walkers, carts and bicycles cross the frame within that span,
so in short videos they move far faster than the walkers. A test frame is anomalous exactly when
an anomalous element is visible in it (at least one of its pixels more than half covered);
``test_regions/<video>.json`` gives that element's box on each such frame (DATA_README.md,
Region tracks). Everything is a function of the seed; files are byte-identical between runs
with the same arguments.

The dataset is built in a hidden folder beside the target and renamed into place at the end, so
an interrupted run never leaves a complete-looking tree. ``demo_manifest.json`` in the dataset
folder records the arguments, the videos and the anomalous intervals.
"""
import io
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

# OpenCV and scipy are imported where they draw and write: --help and argument errors come without them.
from extra.cli import OneLineErrorParser, add_bool_flag, dataset_settings
from extra.datasets import SPLITS, intervals_from_labels, split_dir
from extra.errors import VPCError, run_main
from extra.progress import progress

ANOMALY_KINDS = ("running", "wrong_way", "object", "thrown")
NORMAL = "normal"
MANIFEST_NAME = "demo_manifest.json"
JPEG_QUALITY = 90
FPS = 25
MIN_FRAMES = 8          # room for normal frames before and after an anomaly of 20-35 % of them
NORMAL_RUN = 10         # frames of one Avenue clip: the normal stretches' length where there is room
REGIONS_DIR = "test_regions"
MIN_SIDE = 32
# Independent random streams, so a video's content does not depend on how many others exist.
BACKGROUND_STREAM = 0
SPLIT_STREAMS = {"train": 1, "test": 2}
# scipy writes the creation time into the MAT header; a fixed text keeps the bytes reproducible.
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by extra.make_demo"
MAT_HEADER_BYTES = 116

# Fractional drawing coordinates (OpenCV's `shift`), so slow motion is smooth, not 1-px steps.
SHIFT = 4
SUBPIXELS = 1 << SHIFT

SKIN = ((140, 170, 210), (100, 135, 185), (60, 85, 125))                    # BGR
SHIRTS = ((40, 40, 210), (210, 90, 30), (40, 170, 40), (30, 200, 230), (170, 50, 170), (230, 200, 40))
TROUSERS = ((70, 45, 30), (35, 35, 35), (130, 90, 40), (60, 60, 120))
OBJECT_COLOURS = ((30, 110, 230), (200, 40, 40), (40, 40, 220), (20, 220, 220))


# --- scene geometry -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Scene:
    """Sizes and speeds of one camera view, all derived from the frame size."""

    width: int
    height: int

    @property
    def figure_height(self):
        """About 1/8 of the frame height (45 px at 360p), never below 12 px."""
        return max(self.height / 8, 12.0)

    @property
    def walk_speed(self):
        """Pixels per frame of a normal walker."""
        return 0.06 * self.figure_height

    @property
    def walkway(self):
        """Range of feet rows of the walkway (the figure's head stays inside the frame)."""
        return 0.68 * self.height, 0.92 * self.height


@dataclass(frozen=True)
class Mover:
    """One moving element: where it is at each frame, what it looks like, whether it is normal."""

    shape: str              # "person" | "cart" | "bicycle" | "ball"
    start: int              # first frame it exists in
    end: int                # last frame it exists in (inclusive)
    x0: float               # ground point (feet, wheels; ball centre) at frame `start`
    y0: float
    vx: float               # pixels per frame
    vy: float
    size: float             # height of the element in pixels (ball: radius)
    palette: tuple          # colours of its parts, in the order its drawing function expects
    kind: str = NORMAL      # NORMAL or one of ANOMALY_KINDS
    gravity: float = 0.0    # pixels per frame^2, downwards (thrown objects)
    swing: float = 0.0      # amplitude of the limbs' swing, radians
    stride: float = 1.0     # distance travelled per limb cycle, pixels
    phase0: float = 0.0

    @property
    def anomalous(self):
        return self.kind != NORMAL

    def exists(self, t):
        return self.start <= t <= self.end

    def position(self, t):
        dt = t - self.start
        return self.x0 + self.vx * dt, self.y0 + self.vy * dt + 0.5 * self.gravity * dt * dt

    def phase(self, t):
        """Limb phase: one cycle per `stride` pixels travelled."""
        travelled = math.hypot(self.vx, self.vy) * (t - self.start)
        return self.phase0 + 2 * math.pi * travelled / self.stride


# --- drawing ------------------------------------------------------------------------------------

def _point(x, y):
    return int(round(x * SUBPIXELS)), int(round(y * SUBPIXELS))


def _line(canvas, start, end, colour, thickness):
    import cv2

    cv2.line(canvas, _point(*start), _point(*end), colour, max(1, int(round(thickness))), cv2.LINE_AA, SHIFT)


def _disc(canvas, centre, radius, colour, thickness=-1):
    import cv2

    cv2.circle(canvas, _point(*centre), int(round(radius * SUBPIXELS)), colour, thickness, cv2.LINE_AA, SHIFT)


def _box(canvas, x0, y0, x1, y1, colour):
    import cv2

    cv2.rectangle(canvas, _point(x0, y0), _point(x1, y1), colour, -1, cv2.LINE_AA, SHIFT)


def draw_person(canvas, mover, t):
    """Head, torso, swinging legs and arms; feet at the mover's position."""
    skin, shirt, trousers = mover.palette
    x, y = mover.position(t)
    h = mover.size
    head_r = 0.11 * h
    hip_y = y - 0.47 * h
    shoulder_y = y - h + 2 * head_r + 0.04 * h
    angle = mover.swing * math.sin(mover.phase(t))
    for a in (angle, -angle):
        _line(canvas, (x, hip_y), (x + 0.47 * h * math.sin(a), hip_y + 0.47 * h * math.cos(a)), trousers, 0.1 * h)
    _box(canvas, x - 0.13 * h, y - h + 2 * head_r, x + 0.13 * h, hip_y + 0.02 * h, shirt)
    for a in (-0.8 * angle, 0.8 * angle):
        _line(canvas, (x, shoulder_y), (x + 0.36 * h * math.sin(a), shoulder_y + 0.36 * h * math.cos(a)),
              shirt, 0.07 * h)
    _disc(canvas, (x, y - h + head_r), head_r, skin)


def draw_cart(canvas, mover, t):
    """A box on two wheels with a handle; wheels on the ground at the mover's position."""
    body, wheels, handle = mover.palette
    x, y = mover.position(t)
    h = mover.size
    _box(canvas, x - 0.45 * h, y - 0.62 * h, x + 0.45 * h, y - 0.16 * h, body)
    _line(canvas, (x - 0.45 * h, y - 0.55 * h), (x - 0.62 * h, y - 0.85 * h), handle, 0.06 * h)
    for wx in (x - 0.3 * h, x + 0.3 * h):
        _disc(canvas, (wx, y - 0.09 * h), 0.09 * h, wheels)


def draw_bicycle(canvas, mover, t):
    """Two wheels, a frame, and a rider whose feet turn the pedals."""
    skin, shirt, trousers, frame, wheels = mover.palette
    x, y = mover.position(t)
    h = mover.size
    wheel_r = 0.2 * h
    rear, front = (x - 0.33 * h, y - wheel_r), (x + 0.33 * h, y - wheel_r)
    crank, seat, bars = (x, y - wheel_r), (x - 0.1 * h, y - 0.52 * h), (x + 0.24 * h, y - 0.58 * h)
    for hub in (rear, front):
        _disc(canvas, hub, wheel_r, wheels, max(1, int(round(0.05 * h))))
    for a, b in ((rear, crank), (crank, seat), (seat, rear), (crank, bars), (bars, front)):
        _line(canvas, a, b, frame, 0.04 * h)
    phase = mover.phase(t)
    pedal = (crank[0] + 0.1 * h * math.cos(phase), crank[1] + 0.1 * h * math.sin(phase))
    knee = ((seat[0] + pedal[0]) / 2 + 0.12 * h, (seat[1] + pedal[1]) / 2 - 0.04 * h)
    _line(canvas, seat, knee, trousers, 0.09 * h)
    _line(canvas, knee, pedal, trousers, 0.08 * h)
    shoulder = (x + 0.02 * h, y - 0.86 * h)
    _line(canvas, seat, shoulder, shirt, 0.2 * h)
    _line(canvas, shoulder, bars, shirt, 0.06 * h)
    _disc(canvas, (x + 0.07 * h, y - 0.97 * h), 0.1 * h, skin)


def draw_ball(canvas, mover, t):
    (colour,) = mover.palette
    _disc(canvas, mover.position(t), mover.size, colour)


DRAWERS = {"person": draw_person, "cart": draw_cart, "bicycle": draw_bicycle, "ball": draw_ball}


def render_background(seed, width, height):
    """The static scene, BGR uint8: wall with windows, lawn, paved walkway, smooth texture."""
    import cv2

    rng = np.random.default_rng([seed, BACKGROUND_STREAM])
    h = Scene(width, height).figure_height
    image = np.empty((height, width, 3), np.float32)
    rows = np.arange(height) / height
    for (top, bottom), colour in (((0.0, 0.45), (150, 160, 172)), ((0.45, 0.62), (70, 135, 85)),
                                  ((0.62, 0.96), (178, 176, 170)), ((0.96, 1.01), (105, 105, 110))):
        image[(rows >= top) & (rows < bottom)] = colour
    for _ in range(int(rng.integers(3, 6))):
        x0, y0 = rng.uniform(0.02, 0.85) * width, rng.uniform(0.05, 0.2) * height
        x1, y1 = x0 + rng.uniform(0.06, 0.13) * width, y0 + rng.uniform(0.1, 0.2) * height
        cv2.rectangle(image, _point(x0, y0), _point(x1, y1), (95, 82, 70), -1, cv2.LINE_AA, SHIFT)
        cv2.rectangle(image, _point(x0, y0), _point(x1, y1), (200, 205, 210), max(1, int(h / 20)),
                      cv2.LINE_AA, SHIFT)
    line_width = max(1, int(round(h / 15)))
    for y in (0.62 * height, 0.96 * height):
        _line(image, (0, y), (width, y), (120, 120, 125), line_width)
    # Paving joints across the walkway, slanted as if seen in perspective.
    spacing = 0.8 * h
    slant = 0.3 * 0.34 * height
    for x in np.arange(rng.uniform(0, spacing), width + slant, spacing):
        _line(image, (x, 0.62 * height), (x - slant, 0.96 * height), (145, 143, 140), line_width)
    # Smooth texture: mostly brightness, a little colour.
    coarse = rng.normal(size=(height // 16 + 2, width // 16 + 2, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += 12 * smooth[:, :, :1] + 3 * smooth
    image += rng.normal(0, 3, size=(height, width, 1)).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def render_frame(background, movers, t):
    """Background plus the movers existing at frame t: far ones first, anomalies on top."""
    frame = background.copy()
    present = sorted((m for m in movers if m.exists(t)), key=lambda m: (m.anomalous, m.position(t)[1]))
    for mover in present:
        DRAWERS[mover.shape](frame, mover, t)
    return frame


def mover_mask(mover, t, width, height):
    """uint8 coverage (0..255) of the mover's pixels at frame t."""
    mask = np.zeros((height, width), np.uint8)
    if mover.exists(t):
        DRAWERS[mover.shape](mask, replace(mover, palette=(255,) * len(mover.palette)), t)
    return mask


def anomaly_tracks(movers, n_frames, width, height):
    """One track per anomalous mover: [t, xmin, ymin, xmax, ymax] for each frame t where it is
    visible (a pixel more than half covered), the box of all its pixels, xmax and ymax exclusive."""
    tracks = []
    for mover in (m for m in movers if m.anomalous):
        track = []
        for t in range(max(mover.start, 0), min(mover.end, n_frames - 1) + 1):
            mask = mover_mask(mover, t, width, height)
            if (mask >= 128).any():
                rows, cols = np.nonzero(mask)
                track.append([t, int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1])
        tracks.append(track)
    return tracks


def track_labels(tracks, n_frames):
    """Per-frame 0/1 labels: 1 where some track has a box."""
    labels = np.zeros(n_frames, np.uint8)
    labels[[box[0] for track in tracks for box in track]] = 1
    return labels


# --- planning the videos ------------------------------------------------------------------------

def _pick(rng, options):
    return tuple(int(c) for c in options[int(rng.integers(len(options)))])


def _person_palette(rng):
    return _pick(rng, SKIN), _pick(rng, SHIRTS), _pick(rng, TROUSERS)


def _person(rng, scene, start, end, x, y, vx, vy, kind=NORMAL, swing=0.45, stride_factor=0.9):
    return Mover("person", start, end, x, y, vx, vy, scene.figure_height, _person_palette(rng), kind,
                 swing=swing, stride=stride_factor * scene.figure_height,
                 phase0=float(rng.uniform(0, 2 * math.pi)))


def plan_walkers(rng, scene, n_frames):
    """2 to 4 figures walking left to right along the walkway; about half already in view."""
    count = int(rng.integers(2, 5))
    walkers = []
    for k in range(count):
        already_there = k < (count + 1) // 2
        start = 0 if already_there else int(rng.integers(0, n_frames))
        x = rng.uniform(0.05, 0.85) * scene.width if already_there else -0.1 * scene.figure_height
        speed = scene.walk_speed * rng.uniform(0.85, 1.15)
        walkers.append(_person(rng, scene, start, n_frames - 1, x, rng.uniform(*scene.walkway), speed, 0.0))
    return walkers


def plan_anomaly(rng, scene, kind, start, length):
    """The anomalous mover of a test video, in view on frames start .. start + length - 1 only.

    Figures, carts and bicycles cross the frame in that time: on the first and the last of these
    frames their centre is 0.2 figure heights inside its left and right sides (runners, carts and
    bicycles go with the walkers, wrong-way walkers against them). A thrown ball flies that long,
    inside the frame.
    """
    h, w, end = scene.figure_height, scene.width, start + length - 1
    feet_y = rng.uniform(*scene.walkway)
    if kind == "thrown":
        apex = 1.2 * h
        gravity = 8 * apex / length ** 2            # back at launch height one frame after the last
        span = min(rng.uniform(2.5, 4.0) * h, 0.6 * w)
        left = rng.uniform(0.15 * w, 0.85 * w - span)
        vx = span / length if rng.random() < 0.5 else -span / length
        return Mover("ball", start, end, left if vx > 0 else left + span, feet_y - 0.6 * h, vx,
                     -gravity * length / 2, max(2.5, 0.12 * h), (_pick(rng, OBJECT_COLOURS),), kind, gravity=gravity)
    inset = 0.2 * h
    vx = (w - 2 * inset) / (length - 1)
    if kind == "running":
        return _person(rng, scene, start, end, inset, feet_y, vx, 0.0, kind, swing=0.8, stride_factor=1.6)
    if kind == "wrong_way":
        return _person(rng, scene, start, end, w - inset, feet_y, -vx, 0.0, kind)
    if kind == "object":
        if rng.random() < 0.5:
            palette = (_pick(rng, OBJECT_COLOURS), (30, 30, 30), (90, 90, 90))
            return Mover("cart", start, end, inset, feet_y, vx, 0.0, h, palette, kind)
        palette = _person_palette(rng) + (_pick(rng, OBJECT_COLOURS), (25, 25, 25))
        return Mover("bicycle", start, end, inset, feet_y, vx, 0.0, h, palette, kind,
                     stride=1.2 * h, phase0=float(rng.uniform(0, 2 * math.pi)))
    raise ValueError(f"unknown anomaly kind {kind!r}")


def anomaly_span(rng, n_frames):
    """(first frame, length) of a test video's anomaly: 20-35 % of the frames, with normal
    stretches before and after it of at least 15 % of them, and NORMAL_RUN frames where there is room."""
    shortest, longest = -(-n_frames // 5), 7 * n_frames // 20
    margin = max(-(-3 * n_frames // 20), min(NORMAL_RUN, (n_frames - shortest) // 2))
    length = int(rng.integers(shortest, min(longest, n_frames - 2 * margin) + 1))
    return int(rng.integers(margin, n_frames - margin - length + 1)), length


def plan_video(seed, split, index, n_frames, width, height):
    """All movers of one video (deterministic in its arguments)."""
    rng = np.random.default_rng([seed, SPLIT_STREAMS[split], index])
    scene = Scene(width, height)
    movers = plan_walkers(rng, scene, n_frames)
    if split == "test":
        kind = ANOMALY_KINDS[index % len(ANOMALY_KINDS)]
        movers.append(plan_anomaly(rng, scene, kind, *anomaly_span(rng, n_frames)))
    return movers


# --- layouts ------------------------------------------------------------------------------------

def video_names(dataset, split, n_train, n_test):
    """Names of the video folders (or files, without suffix) as the real datasets name them."""
    count = n_train if split == "train" else n_test
    if dataset == "shanghai":
        return [f"01_{i:03d}" if split == "train" else f"01_{i:04d}" for i in range(1, count + 1)]
    if dataset == "iitb":       # test ids continue after the training ids
        first = 1 if split == "train" else n_train + 1
        return [f"{i:06d}" for i in range(first, first + count)]
    return [f"{i:02d}" for i in range(1, count + 1)]


def frame_name(dataset, split, t):
    """File name of frame t (0-based); shanghai's training frames are not zero-padded."""
    if dataset == "shanghai":
        return f"{t}.jpg" if split == "train" else f"{t:03d}.jpg"
    if dataset == "iitb":
        return f"{t + 1:04d}.jpg"
    return f"{t:04d}.jpg"


def write_frames(frames, folder, name, dataset, split, as_video_file):
    """One video: a folder of JPEGs, or an MJPG .avi (OpenCV's own writer: reproducible bytes)."""
    import cv2

    if as_video_file:
        path = folder / f"{name}.avi"
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"),
                                             FPS, (width, height))
                    if not writer.isOpened():
                        raise VPCError(f"OpenCV cannot write {path}")
                    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, JPEG_QUALITY)
                writer.write(frame)
        finally:
            if writer is not None:
                writer.release()
        return
    video_dir = folder / name
    video_dir.mkdir(parents=True)
    for t, frame in enumerate(frames):
        path = video_dir / frame_name(dataset, split, t)
        if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise VPCError(f"cannot write {path}")


def avenue_mat_bytes(intervals_per_video):
    """avenue.mat content: `gt`, a 1 x n cell of 2 x K intervals (a plain pair when K = 1)."""
    from scipy.io import savemat

    cell = np.empty((1, len(intervals_per_video)), dtype=object)
    for i, intervals in enumerate(intervals_per_video):
        cell[0, i] = intervals[:, 0] if intervals.shape[1] == 1 else intervals
    buffer = io.BytesIO()
    savemat(buffer, {"gt": cell})
    data = bytearray(buffer.getvalue())
    data[:MAT_HEADER_BYTES] = MAT_HEADER.ljust(MAT_HEADER_BYTES, b"\0")
    return bytes(data)


def write_ground_truth(settings, dataset_dir, test_records):
    """Labels of every test video in the dataset's own ground-truth format."""
    path = dataset_dir / settings.gt_path
    if settings.gt_format == "avenue_mat":
        intervals = [np.asarray(r["intervals"], np.int64).reshape(-1, 2).T for r in test_records]
        path.write_bytes(avenue_mat_bytes(intervals))
        return
    for record in test_records:
        labels = np.asarray(record["labels"], np.uint8)
        file = path / record["name"] / f"{record['name']}.npy" if settings.gt_format == "per_video_npy" \
            else path / f"{record['name']}.npy"
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, labels)


# --- the whole dataset --------------------------------------------------------------------------

def _check_arguments(n_train, n_test, n_frames, width, height, seed):
    if n_train < 1 or n_test < 1:
        raise VPCError(f"need at least one training and one test video, got {n_train} and {n_test}")
    if n_frames < MIN_FRAMES:
        raise VPCError(f"--n_frames must be at least {MIN_FRAMES}, got {n_frames}")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise VPCError(f"frames must be at least {MIN_SIDE} x {MIN_SIDE} pixels, got {width} x {height}")
    if seed < 0:
        raise VPCError(f"--seed must be a non-negative integer, got {seed}")


def make_demo(out_dir, dataset="avenue", seed=0, n_train=4, n_test=4, n_frames=80, width=None, height=None,
              as_video_files=False, overwrite=False, skip_existing=False):
    """Write a synthetic dataset to ``out_dir/<dataset>`` and return that folder.

    A non-empty existing folder is an error unless ``overwrite`` (replace it) or
    ``skip_existing`` (keep it as it is, write nothing).
    """
    settings = dataset_settings(dataset)
    width = settings.max_w if width is None else int(width)
    height = settings.max_h if height is None else int(height)
    _check_arguments(n_train, n_test, n_frames, width, height, seed)
    if overwrite and skip_existing:
        raise VPCError("choose one of --overwrite and --skip_existing")
    out_dir = Path(out_dir)
    target = out_dir / dataset
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if skip_existing:
            print(f"{target} already exists: kept as it is")
            return target
        if not overwrite:
            raise VPCError(f"{target} already exists and is not empty: pass --overwrite to replace it "
                           f"or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{dataset}.partial-"))
    try:
        manifest = _write_dataset(settings, staging, seed, n_train, n_test, n_frames, width, height,
                                  as_video_files)
        if target.exists():
            os.rename(target, staging / "replaced")
        os.rename(staging / dataset, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    anomalous = manifest["anomalous_frames"]
    n_intervals = sum(len(r["intervals"]) for r in manifest["test"])
    print(f"wrote {target}: {n_train} training + {n_test} test videos of {n_frames} frames "
          f"({width}x{height}, {'avi' if as_video_files else 'jpg'}), {anomalous} of {n_test * n_frames} "
          f"test frames anomalous in {n_intervals} intervals")
    return target


def _write_dataset(settings, data_root, seed, n_train, n_test, n_frames, width, height, as_video_files):
    """Write every video, the ground truth and the manifest under ``data_root/<dataset>``."""
    dataset = settings.name
    background = render_background(seed, width, height)
    jobs = [(split, index, name) for split in SPLITS
            for index, name in enumerate(video_names(dataset, split, n_train, n_test))]
    records = {split: [] for split in SPLITS}
    dataset_dir = data_root / dataset
    for split, index, name in progress(jobs, "generating videos"):
        movers = plan_video(seed, split, index, n_frames, width, height)
        folder = split_dir(settings, data_root, split)
        folder.mkdir(parents=True, exist_ok=True)
        frames = (render_frame(background, movers, t) for t in range(n_frames))
        write_frames(frames, folder, name, dataset, split, as_video_files)
        record = {"name": name, "n_frames": n_frames}
        if split == "test":
            tracks = anomaly_tracks(movers, n_frames, width, height)
            regions = dataset_dir / REGIONS_DIR / f"{name}.json"
            regions.parent.mkdir(exist_ok=True)
            regions.write_text(json.dumps({"tracks": tracks}) + "\n")
            labels = track_labels(tracks, n_frames)
            record["labels"] = labels.tolist()
            record["intervals"] = intervals_from_labels(labels).T.tolist()
            record["anomalies"] = [_anomaly_record(m, track) for m, track in
                                   zip((m for m in movers if m.anomalous), tracks)]
        records[split].append(record)
    write_ground_truth(settings, dataset_dir, records["test"])
    manifest = {
        "dataset": dataset, "seed": seed, "width": width, "height": height, "n_frames": n_frames,
        "as_video_files": as_video_files, "figure_height": Scene(width, height).figure_height,
        "anomalous_frames": int(sum(sum(r["labels"]) for r in records["test"])),
        "train": records["train"], "test": records["test"],
    }
    (dataset_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def _anomaly_record(mover, track):
    """Kind, shape and 1-based first/last frames in which one anomalous mover is visible."""
    return {"kind": mover.kind, "shape": mover.shape,
            "first": track[0][0] + 1 if track else None, "last": track[-1][0] + 1 if track else None}


def load_manifest(dataset_dir):
    """The manifest make_demo wrote in ``dataset_dir``."""
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise VPCError(f"{path} not found: {dataset_dir} was not written by extra.make_demo")
    return json.loads(path.read_text())


# --- command line -------------------------------------------------------------------------------

def build_parser():
    parser = OneLineErrorParser(prog="python -m extra.make_demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder that receives <dataset>/ (a data root)")
    parser.add_argument("--dataset", default="avenue", help="layout to write: avenue, shanghai or iitb")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    parser.add_argument("--n_train", type=int, default=4, help="training videos (default 4)")
    parser.add_argument("--n_test", type=int, default=4, help="test videos (default 4)")
    parser.add_argument("--n_frames", type=int, default=80, help="frames per video (default 80)")
    parser.add_argument("--width", type=int, default=None, help="frame width (default: the dataset's)")
    parser.add_argument("--height", type=int, default=None, help="frame height (default: the dataset's)")
    add_bool_flag(parser, "--as_video_files", False, "write each video as an MJPG .avi, not a frame folder")
    add_bool_flag(parser, "--overwrite", False, "replace an existing dataset folder")
    add_bool_flag(parser, "--skip_existing", False, "keep an existing dataset folder and write nothing")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    make_demo(args.out, dataset=args.dataset, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
              n_frames=args.n_frames, width=args.width, height=args.height,
              as_video_files=args.as_video_files, overwrite=args.overwrite, skip_existing=args.skip_existing)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
