"""Own footage: which videos a list of inputs names, and any source read clip by clip.

A source is a video file or a folder of frames (read as the datasets are), or a live one: a camera
index (``0``), a stream URL (``rtsp://...``, ``http://...``), or a video file played at its frame
rate (``live=True``). Clips are non-overlapping runs of ``consecutive`` frames from the start; the
frames after the last whole clip are not scored, and the reader says so.
"""
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from extra.datasets import IMAGE_EXTENSIONS, open_video, video_entries
from extra.errors import VPCError

DEFAULT_FPS = 25.0                  # frame folders carry no frame rate
STALL_SECONDS = 10                  # a live source silent this long has stopped


@dataclass
class Clip:
    index: int
    frames: list                    # BGR uint8
    first_frame: int                # index in the source of its first frame
    timestamps: list                # seconds from the source's start, one per frame
    arrived: float = field(default_factory=time.perf_counter)   # when its last frame was read


def footage_videos(inputs):
    """The Videos the inputs name: video files, frame folders, and folders holding either (in natural
    order), with names unique across them (a repeated name gets its position appended)."""
    entries = []
    for item in map(Path, inputs):
        if item.is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in item.iterdir()):
            inner = video_entries(item)
            if not inner:
                raise VPCError(f"{item} holds no video files and no frames")
            entries += inner
        else:
            entries.append(item)
    videos, seen = [], {}
    for index, entry in enumerate(entries):
        video = open_video(entry, index)
        seen[video.name] = seen.get(video.name, 0) + 1
        if seen[video.name] > 1:
            video.name = f"{video.name}_{seen[video.name]}"
        videos.append(video)
    return videos


def is_live(source):
    text = str(source)
    return text.isdigit() or "://" in text


class ClipReader:
    """Clips of a source, as they come. After the loop, ``frames`` says how many frames were read and
    ``note`` (None or a sentence) what happened to the frames of no clip."""

    def __init__(self, source, consecutive, live=False):
        self.source, self.consecutive = source, consecutive
        self.live = live or is_live(source)
        self.frames, self.note, self.fps = 0, None, DEFAULT_FPS
        # a file or folder is checked now, before any model loads; a live source when it is opened
        self.video = None if is_live(source) else open_video(source)
        self.name = self.video.name if self.video else f"live_{str(source).replace('/', '_').replace(':', '')[-40:]}"
        if self.video is not None and self.video.is_file:   # known before the first clip: the outputs need it
            capture = cv2.VideoCapture(str(self.video.source))
            self.fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
            capture.release()

    def __iter__(self):
        return self._live() if self.live else self._video()

    def _video(self):
        video = self.video
        for index, frames in video.iter_clips(self.consecutive):
            first = index * self.consecutive
            self.frames = first + len(frames)
            yield Clip(index, frames, first, [(first + t) / self.fps for t in range(len(frames))])
        left = video.n_frames - self.frames
        if left:
            self.frames = video.n_frames
            self.note = f"the last {left} frames, fewer than a clip of {self.consecutive}, are not scored"

    def _capture(self):
        source = int(self.source) if str(self.source).isdigit() else str(self.source)
        capture = cv2.VideoCapture(source, cv2.CAP_ANY,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STALL_SECONDS * 1000,
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STALL_SECONDS * 1000])
        if not capture.isOpened():
            raise VPCError(f"cannot open the source {self.source} (no such camera, file or stream, or it is "
                           f"not reachable)")
        return capture

    def _live(self):
        capture = self._capture()
        self.fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        paced = not is_live(self.source)            # a file played as if live: at its frame rate
        started, frames, index = time.perf_counter(), [], 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                stamp = self.frames / self.fps if paced else time.perf_counter() - started
                if paced:
                    time.sleep(max(0.0, stamp - (time.perf_counter() - started)))
                frames.append((frame, stamp))
                self.frames += 1
                if len(frames) == self.consecutive:
                    first = self.frames - self.consecutive
                    yield Clip(index, [f for f, _ in frames], first, [s for _, s in frames])
                    frames, index = [], index + 1
        finally:
            capture.release()
        ended = "the source ended" if paced else "the source stopped delivering frames"
        self.note = f"{ended} after {self.frames} frames" + (
            f"; the last {len(frames)}, fewer than a clip of {self.consecutive}, are not scored" if frames else "")


def frame_of(source, index):
    """Frame ``index`` (counted from 0, as on disk) of a video file or a folder of frames, BGR uint8."""
    video = open_video(source)
    if index < 0 or (not video.is_file and index >= len(video.frame_paths)):
        raise VPCError(f"{source} has no frame {index}")
    return video.frames_at([index])[0]
