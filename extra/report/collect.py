"""What a report gathers while a source is scored, in bounded memory whatever its length: every scored
frame's scores (a few numbers each), thumbnails sampled ever more sparsely as the source grows, and per
alarm interval (up to a cap) one full frame, of its peak, with what explains it."""
import base64
import functools
import math

import cv2
import numpy as np

from extra.datasets import intervals_from_labels
from extra.errors import VPCError
from extra.sources import frame_of

MAX_THUMBNAILS = 300         # an hour of footage keeps one every 16 s or so
THUMBNAIL_WIDTH = 320        # shown enlarged when the timeline is clicked
FRAME_WIDTH = 800            # alarm frames and memory crops are shrunk to at most this wide
CONTEXT_WIDTH = 320          # the training frame around a memory item
MAX_ALARMS = 100             # alarm intervals shown in detail; the rest are listed only
FRAME_LEVEL = ("this method scores whole frames: its alarms have no object to box and no memory item "
               "to show")


def jpeg_uri(image, width, quality=80):
    """A BGR image as a data: URI of a JPEG at most ``width`` pixels wide (its aspect kept)."""
    height, original = image.shape[:2]
    if original > width:
        image = cv2.resize(image, (width, max(1, round(height * width / original))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VPCError("cannot encode a report image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def rounded(values):
    """Scores as the page's JSON holds them: 5 decimals, None where not finite (JSON has no NaN)."""
    return [round(v, 5) if math.isfinite(v) else None for v in values]


@functools.lru_cache(maxsize=8)     # the banks of one alarm often point into the same training frame
def _training_frame(source, index):
    return frame_of(source, index)


def memory_images(nearest):
    """The nearest memory item's images as data URIs: its crop from its training frame, and that frame
    small (its size given, for the box drawn on it); or why they could not be read ("missing")."""
    try:
        frame = _training_frame(nearest["source"], nearest["frame"])
    except VPCError as error:
        return {"missing": f"training footage not readable where the model recorded it: {error}"}
    height, width = frame.shape[:2]
    crop, box = frame, nearest.get("box")
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        if x2 <= x1 or y2 <= y1:
            return {"missing": f"its box {box} lies outside frame {nearest['frame']} of {nearest['source']}"}
        crop = frame[y1:y2, x1:x2]
    return {"crop": jpeg_uri(crop, FRAME_WIDTH, 90), "context": jpeg_uri(frame, CONTEXT_WIDTH, 70),
            "size": [width, height], "missing": None}


class ReportCollector:
    """Fed every ClipResult of one source (``add``), then ``data`` gives what the page shows.
    ``explain`` (result -> per bank dicts, sorted by score; or None for a frame-level method) is asked
    once per alarm interval, for its peak clip, when the interval ends. ``raw``: the stream columns are
    raw scores, not calibrated; ``source`` and ``model`` (paths) are named at the page's top;
    ``false_alarm_rate``: the calibration's target, set beside the one measured where there is ground truth."""

    def __init__(self, name, streams, explain=None, raw=False, source=None, model=None, false_alarm_rate=None):
        self.name, self.streams, self.explain, self.raw = name, tuple(streams), explain, raw
        self.source, self.model, self.false_alarm_rate = source, model, false_alarm_rate
        self.frames, self.times, self.fused, self.alarm = [], [], [], []
        self.columns = {stream: [] for stream in self.streams}
        self.thumbnails, self.step, self.due = [], 1, 0     # [frame, time, uri]; keep one every ``step`` frames
        self.threshold, self.peak, self.details, self.left_out = None, None, [], 0

    def add(self, result):
        clip = result.clip
        if result.threshold is not None:
            self.threshold = float(result.threshold)
        for t, frame in enumerate(clip.frames):
            index, stamp, value = clip.first_frame + t, float(clip.timestamps[t]), float(result.fused[t])
            self.frames.append(index)
            self.times.append(round(stamp, 3))
            self.fused.append(value)
            for stream in self.streams:
                self.columns[stream].append(float(result.banks[stream][t]))
            alarmed = bool(result.alarms[t])
            self.alarm.append(int(alarmed))
            if index >= self.due:
                self._thumbnail(index, stamp, frame)
            if not alarmed:
                self._end_interval()
            elif self.peak is None or value > self.peak[0]:
                self.peak = (value, result, t)

    def _thumbnail(self, index, stamp, frame):
        self.thumbnails.append([index, round(stamp, 3), jpeg_uri(frame, THUMBNAIL_WIDTH, 60)])
        if len(self.thumbnails) > MAX_THUMBNAILS:      # twice as sparse from here on
            self.thumbnails, self.step = self.thumbnails[::2], 2 * self.step
        self.due = index + self.step

    def _end_interval(self):
        if self.peak is None:
            return
        if len(self.details) < MAX_ALARMS:
            self.details.append(self._detail(*self.peak))
        else:
            self.left_out += 1
        self.peak = None

    def _detail(self, value, result, t):
        """The peak frame of an alarm interval (of its peak clip, the frame its objects were detected on),
        its objects' boxes, the responsible one, and per bank the nearest normal memory item with its crop."""
        boxes = [[float(v) for v in box[:4]] for box in result.boxes]
        t = result.key_frame if boxes else t
        frame = result.clip.frames[t]
        responsible = None
        if boxes and result.object_fused is not None and len(result.object_fused):
            responsible = int(np.argmax(result.object_fused))
        banks = []
        for entry in (self.explain(result) if self.explain else []):
            nearest = entry.get("nearest")
            row = {"bank": entry["bank"], "item": int(entry["item"]), "score": float(entry["score"]),
                   "raw": float(entry["raw"]), "nearest": None}
            if nearest is not None:
                row["nearest"] = {**{k: nearest[k] for k in ("video", "frame", "clip", "object")},
                                  "source": str(nearest["source"]),
                                  "box": None if nearest.get("box") is None else [float(v) for v in nearest["box"]],
                                  "crop": None, "context": None, "size": None, **memory_images(nearest)}
            banks.append(row)
        return {"frame": result.clip.first_frame + t, "time": round(float(result.clip.timestamps[t]), 3),
                "peak": value, "size": [int(frame.shape[1]), int(frame.shape[0])],
                "image": jpeg_uri(frame, FRAME_WIDTH), "boxes": boxes, "responsible": responsible, "banks": banks}

    def data(self, intervals, fps, frames_read=None, labels=None, notes=()):
        """Everything the page shows, as JSON-ready values. ``intervals``: the alarm intervals of the
        alarms JSON (the same runs of alarmed frames this collector saw); ``labels``: per-frame 0/1
        ground truth or None; ``notes``: sentences about the run (a failure, unscored frames)."""
        self._end_interval()
        notes = list(notes)
        if self.explain is None:
            notes.append(FRAME_LEVEL)
        if self.left_out:
            notes.append(f"{len(intervals)} alarm intervals: the first {MAX_ALARMS} are shown in detail, the other "
                         f"{self.left_out} are listed only")
        false_alarms = None if labels is None else self.false_alarms(labels)
        if false_alarms is not None:
            notes.append(false_alarms["note"])
        return {
            "name": self.name, "source": None if self.source is None else str(self.source),
            "model": None if self.model is None else str(self.model),
            "fps": float(fps), "frame_base": 0, "frames_scored": len(self.frames),
            "frames_read": max(frames_read or 0, self.frames[-1] + 1 if self.frames else 0),
            "threshold": self.threshold, "streams": list(self.streams), "raw": bool(self.raw),
            "explained": self.explain is not None,
            "series": {"frame": self.frames, "time": self.times, "fused": rounded(self.fused), "alarm": self.alarm,
                       "streams": {s: rounded(self.columns[s]) for s in self.streams}},
            "intervals": [{**interval, "detail": i if i < len(self.details) else None}
                          for i, interval in enumerate(intervals)],
            "alarms": self.details,
            "ground_truth": None if labels is None else [[int(s), int(e), round(s / fps, 3), round(e / fps, 3)]
                                                         for s, e in intervals_from_labels(labels).T - 1],
            "thumbnails": {"every": self.step, "items": self.thumbnails},
            "false_alarms": false_alarms,
            "notes": notes,
        }

    def false_alarms(self, labels):
        """{"measured", "target", "normal_frames", "note"}: the share of the scored normal frames (label 0;
        frames past the labels count as normal) that alarmed, beside the calibration's target; None when no
        scored frame is normal."""
        labels = np.asarray(labels)
        normal = [alarm for frame, alarm in zip(self.frames, self.alarm) if frame >= len(labels) or labels[frame] == 0]
        if not normal:
            return None
        measured = float(np.mean(normal))
        target = "" if self.false_alarm_rate is None else (
            f", against a target of {100 * self.false_alarm_rate:g}% set on normal held-out training footage")
        return {"measured": measured, "target": self.false_alarm_rate, "normal_frames": len(normal),
                "note": f"false alarms: {100 * measured:.2f}% of the {len(normal)} normal frames scored{target}"}
