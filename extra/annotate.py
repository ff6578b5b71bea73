"""Drawing of the annotated video score.py writes: each frame enlarged so its text reads, the boxes of
the objects a method scored, an alarm marker, and a timeline strip under it. All functions take and
return numpy BGR images; none keeps state (footage_outputs.ScoreWriter holds the history).

What a reader sees:
- a box per object, where the method took it: on the clip's key frame (the one the detector ran on,
  ObjectDetection.boxes.key_frame_offset), drawn solid; on the clip's other frames the same box, dashed
  and tagged "key frame"
  (nothing tracks the object, so the box says where it was, not where it is). Its colour compares the
  object's score with the alarm threshold: green below ``NEAR`` of it, amber from there to the
  threshold, red above; its label is the score itself, to read against the threshold the strip prints.
- a red border and "ALARM" on a frame whose fused score is above the threshold.
- the timeline: the fused score of every frame so far as bars (red where alarmed, none where no full
  clip covers a frame), the threshold as a white line with its value, a yellow cursor at the current
  frame, the time (mm:ss.s) and frame number. For a file the strip spans the whole video (its frame
  count fixes the scale); for a live source, the last ``LIVE_WINDOW_SECONDS``, which the strip says.

Frames narrower than ``MIN_WIDTH`` are enlarged by a whole factor, pixels kept square (nearest
neighbour: no detail is invented), so text of a fixed size stays legible on the demo's small frames;
text, lines and the strip grow with the canvas so a 1920-pixel frame reads as a 640-pixel one.
"""
import math
from dataclasses import dataclass

import numpy as np

from extra.errors import VPCError
from extra.io import atomic_path

MIN_WIDTH = 640                # narrower frames are enlarged by a whole factor to at least this
NEAR = 0.8                     # an object above this fraction of the threshold is drawn amber
LIVE_WINDOW_SECONDS = 60       # what the strip of a live source (of unknown length) spans
STRIP_HEIGHT = 112             # the timeline's height at MIN_WIDTH; it grows with the canvas (kept even)

# BGR colours
GREEN, AMBER, RED = (0, 190, 0), (0, 180, 255), (0, 0, 255)
NEUTRAL = (200, 200, 200)      # a box without a score comparable with a threshold
WHITE, BLACK, CURSOR = (255, 255, 255), (0, 0, 0), (0, 255, 255)
STRIP_BACKGROUND = (30, 30, 30)
PLOT_BACKGROUND = (60, 60, 60)  # frames the strip spans, not scored (yet)
GAP = (10, 10, 10)             # frames passed that no full clip covers: no score
BAR = (170, 170, 170)          # a scored frame below the threshold


def enlargement(width):
    """The whole factor a frame ``width`` pixels wide is enlarged by: the smallest that makes it at
    least MIN_WIDTH wide (1 for frames as wide or wider)."""
    return max(1, math.ceil(MIN_WIDTH / width))


def unit(canvas_width):
    """The size of text and lines relative to a MIN_WIDTH canvas."""
    return canvas_width / MIN_WIDTH


def strip_height(canvas_width):
    return 2 * round(STRIP_HEIGHT * unit(canvas_width) / 2)


def level_colour(score, threshold):
    """The colour of a score against the alarm threshold: RED above it, AMBER from NEAR of it (for a
    threshold at or below 0, within (1 - NEAR) * |threshold| under it), GREEN lower; NEUTRAL without
    a score or a threshold."""
    if score is None or threshold is None or not np.isfinite(score):
        return NEUTRAL
    if score > threshold:
        return RED
    return AMBER if score >= threshold - (1 - NEAR) * abs(threshold) else GREEN


def score_label(score, threshold):
    """A box's label: its score, two decimals, to read against the threshold the strip prints (a share of
    the threshold would mislead: calibrated scores fall below 0 under the normal range)."""
    if score is None or threshold is None or not np.isfinite(score):
        return ""
    return f"{score:.2f}"


def _text(image, text, origin, size, colour, background=None):
    """``text`` with its top-left corner at ``origin``, optionally on a filled ``background``;
    ``size`` is the unit. Returns the text's (width, height)."""
    import cv2

    scale, thickness = 0.45 * size, max(1, round(size))
    (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = origin
    if background is not None:
        pad = max(1, round(2 * size))
        cv2.rectangle(image, (x - pad, y - pad), (x + width + pad, y + height + base), background, -1)
    cv2.putText(image, text, (x, y + height), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
    return width, height + base


def text_height(size):
    import cv2

    (_, height), base = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, 0.45 * size, max(1, round(size)))
    return height + base


def _dashed_rectangle(image, corner, opposite, colour, thickness, dash):
    """A rectangle of dashes ``dash`` pixels long with gaps as long (less the lines' round caps)."""
    import cv2

    (x1, y1), (x2, y2) = corner, opposite
    for start, end in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        start, step = np.array(start), np.array(end) - start
        length = max(int(np.abs(step).max()), 1)
        for offset in range(0, length + 1, 2 * dash):
            a, b = start + step * offset // length, start + step * min(offset + dash, length) // length
            cv2.line(image, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), colour, thickness)


def draw_box(image, box, colour, label, key_frame, scale=1):
    """Draw, in place, an object's box (x1, y1, x2, y2 in source pixels, ends exclusive; ``scale`` the
    frame's enlargement): solid on the key frame, dashed and tagged "key frame" on the others, with
    ``label`` on a tab of its colour above it (inside it at the top edge)."""
    import cv2

    size = unit(image.shape[1])
    thickness = max(1, round(2 * size))
    corner = (int(box[0]) * scale, int(box[1]) * scale)
    opposite = (int(box[2]) * scale - 1, int(box[3]) * scale - 1)
    if key_frame:
        cv2.rectangle(image, corner, opposite, colour, thickness)
    else:
        _dashed_rectangle(image, corner, opposite, colour, thickness, max(4, round(8 * size)))
        label = f"{label} key frame".strip()
    if label:
        pad, height = max(1, round(2 * size)), text_height(size)
        top = corner[1] - height - pad if corner[1] - height - pad >= 0 else corner[1] + thickness + pad
        _text(image, label, (corner[0] + pad, top), size, BLACK, colour)
    return image


def draw_alarm(image):
    """Mark, in place, a frame whose fused score is above the threshold: a red border and "ALARM"."""
    import cv2

    size = unit(image.shape[1])
    border = max(2, round(4 * size))
    cv2.rectangle(image, (0, 0), (image.shape[1] - 1, image.shape[0] - 1), RED, border)
    pad = border + max(1, round(2 * size))
    _text(image, "ALARM", (pad + 2, pad + 2), size, WHITE, RED)
    return image


def annotate_frame(frame, boxes=(), box_scores=None, threshold=None, key_frame=True, alarm=False):
    """The frame enlarged (``enlargement``), each box in ``boxes`` drawn in the colour of its score in
    ``box_scores`` (None: NEUTRAL, no label) against ``threshold``, and the alarm marker if ``alarm``."""
    import cv2

    scale = enlargement(frame.shape[1])
    image = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) if scale > 1 else frame.copy()
    scores = [None] * len(boxes) if box_scores is None else [float(s) for s in box_scores]
    for box, score in zip(boxes, scores):
        draw_box(image, box, level_colour(score, threshold), score_label(score, threshold), key_frame, scale)
    return draw_alarm(image) if alarm else image


@dataclass(frozen=True)
class StripLayout:
    """Where the timeline of a canvas ``width`` wide draws, in the strip's own pixels: its text on the
    top row; the plot's columns ``left`` .. ``right`` - 1 and rows ``top`` (the highest score shown)
    .. ``bottom`` (the lowest)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    size: float           # text and line unit

    @classmethod
    def of(cls, width):
        size = unit(width)
        margin = max(2, round(6 * size))
        height = strip_height(width)
        return cls(width, height, margin, width - margin, text_height(size) + 2 * margin, height - margin - 1, size)

    @property
    def columns(self):
        return self.right - self.left


def score_range(threshold):
    """The scores the strip's plot spans (low, high): 0 to twice the threshold, which puts the
    threshold line halfway up, and at least 0 to 1 (calibrated scores' normal range)."""
    if threshold is None:
        return 0.0, 1.0
    return min(0.0, 2 * threshold), max(1.0, 2 * threshold)


def score_row(value, low, high, layout):
    """The strip row of a score (or of each of an array of them): ``bottom`` for ``low``, ``top`` for
    ``high``, linear between, rounded half to even; scores outside are held at the edges."""
    fraction = np.clip((np.asarray(value, float) - low) / (high - low), 0.0, 1.0)
    return (layout.bottom - np.rint(fraction * (layout.bottom - layout.top))).astype(int)


def column_frames(n_frames, n_columns):
    """The first of the frames each plot column shows (of ``n_frames`` spread over ``n_columns``): a
    column holds the frames from its entry to the next one's when frames outnumber columns (so no
    frame, and no peak, is dropped); otherwise a frame spans several columns, each showing it alone."""
    columns = np.arange(n_columns)
    if n_frames >= n_columns:
        return -(-columns * n_frames // n_columns)          # ceil(c * n / w)
    return columns * n_frames // n_columns


def cursor_column(frame, n_frames, n_columns):
    """The first plot column showing ``frame`` (0-based, of ``n_frames``)."""
    return int(np.searchsorted(_column_stops(n_frames, n_columns), frame, side="right"))


def _column_stops(n_frames, n_columns):
    first = column_frames(n_frames, n_columns)
    return np.append(first[1:], n_frames) if n_frames >= n_columns else first + 1


def timeline_window(frames, scores, alarms, current, n_frames=None, window=None):
    """What the strip spans: (first frame, per-frame scores, per-frame alarms) of the frames from
    ``first`` on; NaN (no bar) where a frame has no score yet or none at all. ``frames``, ``scores``,
    ``alarms``: the frames scored so far, in increasing order, with their fused scores and alarms;
    ``current``: the frame drawn. A file of ``n_frames`` is spanned whole; a live source (``n_frames``
    None) by its last ``window`` frames."""
    if n_frames is not None:
        first, span = 0, max(n_frames, current + 1)
    else:
        first, span = max(0, current + 1 - window), window
    recent = np.asarray(frames[-span:], dtype=np.int64)     # frames only increase: the span's are the last ones
    kept = recent >= first
    values, alarmed = np.full(span, np.nan), np.zeros(span, bool)
    values[recent[kept] - first] = np.asarray(scores[-span:], dtype=float)[kept]
    alarmed[recent[kept] - first] = np.asarray(alarms[-span:], dtype=bool)[kept]
    return first, values, alarmed


def clock(seconds):
    """mm:ss.s ("01:05.3"); minutes go past 59 rather than hours appearing."""
    minutes, tenths = divmod(round(10 * max(seconds, 0.0)), 600)     # rounded first: never "00:60.0"
    return f"{minutes:02d}:{tenths / 10:04.1f}"


def draw_timeline(width, first, scores, alarms, current, seconds, threshold, n_frames=None, window_seconds=None,
                  legend=False):
    """The timeline strip (``StripLayout.of(width)``) of the frames ``first`` .. ``first`` +
    len(``scores``) - 1 (see ``timeline_window``): a bar per column up to its score (the highest of its
    frames), red where any of them alarmed, dark where none has a score but the current frame has
    passed it; the threshold line; the cursor at ``current``; on top, the time ``seconds`` and frame
    number (of ``n_frames`` for a file; for a live source, the span, ``window_seconds``), the
    threshold's value and, with ``legend``, what box labels mean."""
    import cv2

    layout = StripLayout.of(width)
    strip = np.full((layout.height, width, 3), STRIP_BACKGROUND, np.uint8)
    low, high = score_range(threshold)
    span = len(scores)
    starts = column_frames(span, layout.columns)
    with np.errstate(invalid="ignore"):                      # all-NaN columns stay NaN: gaps
        peaks = np.fmax.reduceat(np.asarray(scores, float), starts)
    alarmed = np.logical_or.reduceat(np.asarray(alarms, bool), starts)
    passed = starts <= current - first
    plot = strip[layout.top:layout.bottom + 1, layout.left:layout.right]       # a view: drawing on it draws the strip
    plot[:] = PLOT_BACKGROUND
    scored = ~np.isnan(peaks)
    plot[:, ~scored & passed] = GAP
    bar_tops = np.minimum(score_row(np.where(scored, peaks, low), low, high, layout), layout.bottom - 1)
    bars = (np.arange(layout.top, layout.bottom + 1)[:, None] >= bar_tops) & scored   # the lowest score still shows
    plot[bars & alarmed] = RED
    plot[bars & ~alarmed] = BAR
    size, thickness = layout.size, max(1, round(layout.size))
    if threshold is not None:
        row = int(score_row(threshold, low, high, layout))
        cv2.line(strip, (layout.left, row), (layout.right - 1, row), WHITE, thickness)
    x = layout.left + cursor_column(current - first, span, layout.columns)
    cv2.line(strip, (x, layout.top), (x, layout.bottom), CURSOR, max(1, round(2 * size)))
    of = f" / {n_frames - 1}" if n_frames else ""
    _text(strip, f"{clock(seconds)}  frame {current}{of}", (layout.left, layout.left), size, WHITE)
    notes = ([f"last {window_seconds:g} s"] if n_frames is None and window_seconds else []) + (
        [f"threshold {threshold:.3g} (line)"] if threshold is not None else []) + (
        ["box: fused score as worst object"] if legend else [])
    note = "   ".join(notes)
    if note:
        text_width = cv2.getTextSize(note, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * size, thickness)[0][0]
        _text(strip, note, (layout.right - text_width, layout.left), size, WHITE)
    return strip


def save_annotated_frame(video, index, path):
    """Write frame ``index`` (0-based, of the frames the MP4 holds: the scored ones) of an annotated
    MP4 as a PNG at ``path`` (written atomically); e.g. for a README figure."""
    import cv2

    if index < 0:
        raise VPCError(f"frame {index} of {video}: frames count from 0")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise VPCError(f"cannot read the video {video}")
    try:
        for read in range(index + 1):          # read through: seeking in mp4v files is not frame-exact
            ok, image = capture.read()
            if not ok:
                raise VPCError(f"{video} has {read} frames, no frame {index}")
    finally:
        capture.release()
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise VPCError(f"cannot write {path} as a PNG")
    return path
