"""Own footage, what scoring writes per input, whichever method scores it: the CSV of per-frame scores
(flushed clip by clip), the alarm intervals (JSON), the annotated video, and the AUROC against a
ground truth when given. A method's scorer has ``streams`` (its raw score columns, in order) and
``score(reader)``, which yields a ``ClipResult`` per clip as it is ready.
"""
import csv
import json
import os
import time
from dataclasses import dataclass

import cv2
import numpy as np

from extra.errors import VPCError
from extra.io import atomic_path, make_folder, partial_path
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
    threshold: float = None          # the alarm threshold ``fused`` is compared with
    object_fused: np.ndarray = None  # per object, the clip's fused score were it the clip's worst object
    features: object = None          # the clip's VideoFeatures, for explaining it
    key_frame: int = 0               # the frame of the clip (0-based within it) its boxes were detected on


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
    alarm intervals as JSON at the end, and optionally an annotated MP4 (extra.annotate; the source's
    ``n_frames``, None for a live one, fixes its timeline); a score column per bank of ``banks``."""

    def __init__(self, out_dir, name, fps, banks, video_out=False, n_frames=None):
        make_folder(out_dir)
        self.banks = tuple(banks)
        self.csv_path, self.json_path = out_dir / f"{name}.csv", out_dir / f"{name}_alarms.json"
        self.video_path = out_dir / f"{name}.mp4" if video_out else None
        self.file = open(self.csv_path, "w", newline="")
        self.rows = csv.writer(self.file)
        self.rows.writerow(csv_columns(self.banks))
        self.fps, self.frames, self.stamps, self.fused, self.alarms = fps, [], [], [], []
        self.video, self.n_frames = None, n_frames  # the MP4 writer, opened on the first frame (its size)
        self.next_row = 0                          # the frame the next CSV row is for: one row per input frame
        self.threshold, self.report = None, None   # the results' alarm threshold; a ReportCollector (--report)

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
            if self.video_path is not None:
                self._draw(frame, result, t)
        self.threshold = None if result.threshold is None else float(result.threshold)
        if self.report is not None:
            self.report.add(result)
        self.file.flush()

    def _draw(self, frame, result, t):
        """Frame ``t`` of the result's clip annotated (extra.annotate): the clip's boxes where the method
        took them (solid on its key frame, ``result.key_frame``; dashed on the others) coloured against the threshold,
        the alarm marker, and the timeline under it. The MP4 is written under a temporary name and
        renamed when closed, so a run killed midway leaves no unreadable file under its name."""
        from extra.annotate import LIVE_WINDOW_SECONDS, annotate_frame, draw_timeline, timeline_window

        index = result.clip.first_frame + t
        image = annotate_frame(frame, result.boxes, result.object_fused, result.threshold, t == result.key_frame,
                               bool(result.alarms[t]))
        window = None if self.n_frames is not None else max(1, round(LIVE_WINDOW_SECONDS * self.fps))
        first, scores, alarms = timeline_window(self.frames, self.fused, self.alarms, index, self.n_frames, window)
        strip = draw_timeline(image.shape[1], first, scores, alarms, index, result.clip.timestamps[t],
                              result.threshold, self.n_frames, LIVE_WINDOW_SECONDS, result.object_fused is not None)
        canvas = np.vstack([image, strip])
        if self.video is None:
            video = cv2.VideoWriter(str(partial_path(self.video_path)), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                    canvas.shape[1::-1])
            if not video.isOpened():
                raise VPCError(f"cannot write the annotated video {self.video_path}: this OpenCV has no mp4v encoder "
                               f"or the folder is not writable")
            self.video = video
        self.video.write(canvas)

    def close(self, n_frames=0, failure=None):
        """Finish the files: rows for the last frames of no clip (up to ``n_frames`` read), the alarm
        intervals as JSON with the threshold (None: the method has none), saying the frame base and, when
        the source failed (``failure``), that it did."""
        self.unscored(n_frames)
        self.file.close()
        if self.video is not None:
            self.video.release()
            os.replace(partial_path(self.video_path), self.video_path)
        intervals = alarm_intervals(self.frames, self.stamps, self.alarms, np.asarray(self.fused))
        with atomic_path(self.json_path) as tmp:
            tmp.write_text(json.dumps({"alarm_intervals": intervals, "threshold": self.threshold,
                                       "frames_scored": len(self.frames),
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


def score_source(scorer, reader, out_dir, video_out=False, labels=None, report=None):
    """Score one source into ``out_dir`` (CSV, alarm intervals, optional MP4; with ``report``, the model
    file's path, the HTML report too: extra.report); returns a SourceSummary.
    The CSV has one row per frame read, frames counted from 0 (empty scores where no full clip or window
    covers a frame). Whatever stops the source (its end, a stall, a damaged frame, Ctrl-C), what was
    scored is kept: whole CSV rows and the alarm intervals so far; a failure is written in the JSON."""
    from extra.evaluation.metrics import micro_auroc

    writer = ScoreWriter(out_dir, reader.name, reader.fps, scorer.streams, video_out,
                         None if reader.video is None else reader.video.n_frames)
    calibration = getattr(scorer, "calibration", None) or {}
    if report is not None:
        from extra.report.collect import ReportCollector

        writer.report = ReportCollector(reader.name, scorer.streams, getattr(scorer, "explain", None),
                                        getattr(scorer, "raw", False), reader.source, report,
                                        calibration.get("false_alarm_rate"))
    # what the calibration says of its own threshold (too little normal footage for the rate), on the report
    support = calibration.get("support") or {}
    cautions = [f"the alarm threshold: {support['note']}"] if support.get("note") else []
    started, latencies = time.perf_counter(), []
    ticker = Ticker(f"{reader.name}: scored", None if reader.video is None else reader.video.n_frames)
    try:
        for result in scorer.score(reader):
            writer.add(result)
            latencies.append(result.seconds)
            ticker.update(writer.next_row)
    except BaseException as error:     # the files say the source failed, then the error goes on
        failure = " ".join(str(error).split())[:200] or type(error).__name__
        _write_report(writer, reader, out_dir, writer.close(reader.frames, failure), None,
                      [f"the source failed: {failure}", *cautions])
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
    _write_report(writer, reader, out_dir, intervals, labels, [*([reader.note] if reader.note else []), *cautions])
    return summary


def _write_report(writer, reader, out_dir, intervals, labels, notes):
    """The HTML report of what ``writer`` saw, when it collected one (sentences ``notes`` at its top)."""
    if writer.report is None:
        return
    from extra.report.html import report_path, write_report

    data = writer.report.data(intervals, reader.fps, max(reader.frames, writer.next_row), labels, notes)
    write_report(report_path(out_dir, reader.name), data)


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
