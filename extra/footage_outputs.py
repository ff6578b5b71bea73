"""Own footage, what scoring writes per input, whichever method scores it: the CSV of per-frame scores
(flushed clip by clip), the alarm intervals (JSON), the annotated video, and the AUROC against a
ground truth when given. A method's scorer has ``streams`` (its raw score columns, in order) and
``score(reader)``, which yields a ``ClipResult`` per clip as it is ready.
"""
import csv
import json
import time
from dataclasses import dataclass

import cv2
import numpy as np

from extra.errors import VPCError
from extra.io import atomic_path, make_folder
from extra.progress import Ticker


@dataclass
class ClipResult:
    clip: object                     # extra.sources.Clip
    banks: dict                      # stream -> per-frame raw scores of the clip
    fused: np.ndarray                # calibrated total, per frame
    alarms: np.ndarray               # fused above the calibration's clip threshold, per frame
    boxes: list                      # the clip's objects' boxes (none for a frame-level method)
    object_scores: np.ndarray        # each object's calibrated local score
    seconds: float                   # from reading the clip's last frame to its result (detection included)


def csv_columns(banks):
    """The CSV's header: frame, timestamp, a column per bank of the model in its order, fused, alarm."""
    return ("frame", "timestamp", *banks, "fused", "alarm")




def alarm_intervals(frames, timestamps, alarms, fused):
    """Runs of alarmed frames: [{start_frame, end_frame, start_time, end_time, peak}], ends inclusive."""
    intervals, start = [], None
    for i, alarm in enumerate(list(alarms) + [False]):
        if alarm and start is None:
            start = i
        elif not alarm and start is not None:
            intervals.append({"start_frame": int(frames[start]), "end_frame": int(frames[i - 1]),
                              "start_time": round(float(timestamps[start]), 3),
                              "end_time": round(float(timestamps[i - 1]), 3),
                              "peak": float(np.max(fused[start:i]))})
            start = None
    return intervals


class ScoreWriter:
    """The per-frame CSV, written and flushed clip by clip (a run that stops leaves whole rows), the
    alarm intervals as JSON at the end, and optionally an annotated MP4; a score column per bank of ``banks``."""

    def __init__(self, out_dir, name, fps, banks, video_out=False):
        make_folder(out_dir)
        self.banks = tuple(banks)
        self.csv_path, self.json_path = out_dir / f"{name}.csv", out_dir / f"{name}_alarms.json"
        self.video_path = out_dir / f"{name}.mp4" if video_out else None
        self.file = open(self.csv_path, "w", newline="")
        self.rows = csv.writer(self.file)
        self.rows.writerow(csv_columns(self.banks))
        self.fps, self.frames, self.stamps, self.fused, self.alarms = fps, [], [], [], []
        self.video, self.top = None, 1e-9          # the MP4 writer; the highest fused score so far
        self.next_row = 0                          # the frame the next CSV row is for: one row per input frame

    def unscored(self, stop):
        """Rows for the frames before ``stop`` that no full clip or window covers: empty scores, alarm 0."""
        for index in range(self.next_row, stop):
            self.rows.writerow([index, f"{index / self.fps:.3f}", *([""] * len(self.banks)), "", 0])
        self.next_row = max(self.next_row, stop)

    def add(self, result):
        clip = result.clip
        for t, frame in enumerate(clip.frames):
            index = clip.first_frame + t
            self.unscored(index)
            self.next_row = index + 1
            self.rows.writerow([index, f"{clip.timestamps[t]:.3f}", *(f"{result.banks[b][t]:.6g}" for b in self.banks),
                                f"{result.fused[t]:.6g}", int(result.alarms[t])])
            self.frames.append(index)
            self.stamps.append(clip.timestamps[t])
            self.fused.append(float(result.fused[t]))
            self.alarms.append(bool(result.alarms[t]))
            self.top = max(self.top, self.fused[-1])
            if self.video_path is not None:
                self._draw(frame, result, t)
        self.file.flush()

    def _draw(self, frame, result, t):
        """The frame, each object's box in the colour of its score (green low, red high), and a strip
        of the fused score so far under it, red while alarmed."""
        height, width = frame.shape[:2]
        strip = 40
        if self.video is None:
            self.video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                         (width, height + strip))
        canvas = np.zeros((height + strip, width, 3), np.uint8)
        canvas[:height] = frame
        top = self.top
        for box, score in zip(result.boxes, result.object_scores):
            level = float(np.clip(score / top, 0, 1))
            colour = (0, int(255 * (1 - level)), int(255 * level))
            cv2.rectangle(canvas, (int(box[0]), int(box[1])), (int(box[2]) - 1, int(box[3]) - 1), colour, 2)
        history = self.fused[-width:]
        for x, (value, alarm) in enumerate(zip(history, self.alarms[-width:])):
            y = height + strip - 1 - int((strip - 2) * min(max(value / top, 0.0), 1.0))
            cv2.line(canvas, (x, height + strip - 1), (x, y), (0, 0, 255) if alarm else (200, 200, 200), 1)
        if result.alarms[t]:
            cv2.rectangle(canvas, (0, 0), (width - 1, height - 1), (0, 0, 255), 4)
        self.video.write(canvas)

    def close(self, n_frames=0, failure=None):
        """Finish the files: rows for the last frames of no clip (up to ``n_frames`` read), the alarm
        intervals as JSON, saying the frame base and, when the source failed (``failure``), that it did."""
        self.unscored(n_frames)
        self.file.close()
        if self.video is not None:
            self.video.release()
        intervals = alarm_intervals(self.frames, self.stamps, self.alarms, np.asarray(self.fused))
        with atomic_path(self.json_path) as tmp:
            tmp.write_text(json.dumps({"alarm_intervals": intervals, "frames_scored": len(self.frames),
                                       "frames": max(n_frames, self.next_row), "frame_base": 0,
                                       **({"failed": failure} if failure else {})}, indent=1))
        return intervals


@dataclass
class SourceSummary:
    name: str
    frames: int                      # frames scored
    total: int                       # frames read (one CSV row each)
    intervals: list                  # alarm intervals
    latencies: list                  # seconds per clip, from its last frame to its result
    seconds: float                   # wall time of the whole source
    note: str = None                 # what happened to the frames of no clip
    auroc: float = None              # with --gt

    def line(self):
        rate = self.frames / self.seconds if self.seconds else 0.0
        latency = (f"; per clip {1000 * np.mean(self.latencies):.0f} ms mean, {1000 * np.max(self.latencies):.0f} ms max"
                   if self.latencies else "")
        auroc = "" if self.auroc is None else f"; AUROC {100 * self.auroc:.2f}% against the ground truth"
        note = f" ({self.note})" if self.note else ""
        if self.total > self.frames:
            note += (f" ({self.total - self.frames} of {self.total} frames have no full clip or window around them: "
                     f"their CSV rows have empty scores)")
        return (f"{self.name}: {self.frames} frames scored, {len(self.intervals)} alarm interval(s), "
                f"{rate:.1f} frames/s{latency}{auroc}{note}")


def score_source(scorer, reader, out_dir, video_out=False, labels=None):
    """Score one source into ``out_dir`` (CSV, alarm intervals, optional MP4); returns a SourceSummary.
    The CSV has one row per frame read, frames counted from 0 (empty scores where no full clip or window
    covers a frame). Whatever stops the source (its end, a stall, a damaged frame, Ctrl-C), what was
    scored is kept: whole CSV rows and the alarm intervals so far; a failure is written in the JSON."""
    from extra.evaluation.metrics import micro_auroc

    writer = ScoreWriter(out_dir, reader.name, reader.fps, scorer.streams, video_out)
    started, latencies = time.perf_counter(), []
    ticker = Ticker(f"{reader.name}: scored", None if reader.video is None else reader.video.n_frames)
    try:
        for result in scorer.score(reader):
            writer.add(result)
            latencies.append(result.seconds)
            ticker.update(writer.next_row)
    except BaseException as error:     # the files say the source failed, then the error goes on
        writer.close(reader.frames, " ".join(str(error).split())[:200] or type(error).__name__)
        raise
    finally:
        ticker.close()
    intervals = writer.close(reader.frames)
    summary = SourceSummary(reader.name, len(writer.frames), max(reader.frames, writer.next_row), intervals,
                            latencies, time.perf_counter() - started, reader.note)
    if labels is not None:
        labels, extendable = labels
        needed = max(writer.frames, default=-1) + 1
        if len(labels) < needed and not extendable:
            raise VPCError(f"the ground truth has {len(labels)} frames, {reader.name} has at least {needed}")
        labels = np.concatenate([labels, np.zeros(max(needed - len(labels), 0), labels.dtype)])
        summary.auroc = micro_auroc(np.asarray(writer.fused), labels[writer.frames])
    return summary


def ground_truth_labels(path, video=1):
    """(per-frame 0/1 labels, extendable) of one video from any supported format: a .npy vector
    (ShanghaiTech's and IITB's; it must cover the video) or an avenue.mat (its ``video``-th entry,
    1-based; intervals, so the frames after the last one are normal: extendable)."""
    from pathlib import Path

    from extra.datasets import intervals_to_labels

    path = Path(path)
    if not path.is_file():
        raise VPCError(f"ground truth not found: {path}")
    if path.suffix == ".npy":
        try:
            labels = np.load(path, allow_pickle=False).ravel()
        except (ValueError, OSError):
            raise VPCError(f"cannot read ground truth {path}: not a readable .npy array") from None
        if not np.isin(labels, (0, 1)).all():
            raise VPCError(f"{path} must hold 0/1 frame labels")
        return labels.astype(np.uint8), False
    from scipy.io import loadmat

    try:
        entries = list(np.asarray(loadmat(str(path))["gt"], dtype=object).ravel())
        intervals = np.asarray(entries[video - 1], dtype=np.int64).reshape(2, -1)
    except (KeyError, ValueError, OSError, IndexError):
        raise VPCError(f"cannot read entry {video} of variable 'gt' from {path}") from None
    return intervals_to_labels(intervals, int(intervals.max()) if intervals.size else 0), True
