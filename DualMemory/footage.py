"""The dual-memory model on one's own footage: fit.py --method dual_memory trains on normal videos of any
names (some footage held out), calibrates the label-free normalisation and alarm threshold on what was
held out, and writes one model file; score.py scores any source with it, live ones included.

A clip of 16 frames scores its 9th frame (SPEC 7), so a frame's score comes once the 7 frames after it
have arrived: from a source's 9th frame on, 7 frames behind the newest; the last 7 frames of a source
get no score.
"""
import time
from collections import deque

import numpy as np
import torch

from DualMemory.checkpoints import FORM, load_checkpoint, save_checkpoint
from DualMemory.data import standardised
from DualMemory.evaluation import label_free_calibration
from DualMemory.model import clip_psnr
from DualMemory.options import CLIP_LENGTH, SCORED_FRAME
from DualMemory.scoring import STREAMS, calibrated_streams
from DualMemory.training import lock, train_on
from extra.checkpoints import is_record_file
from extra.device import default_device
from extra.errors import VPCError
from extra.evaluation.scores import make_video_scores
from extra.footage_outputs import ClipResult
from extra.windows import hold_out_pieces, resized


def is_checkpoint(path):
    """Whether ``path`` is a dual-memory checkpoint (False for anything else)."""
    return is_record_file(path, FORM)


def fit_footage(videos, config, out):
    """Train on ``videos`` less the held-out footage (resumable, in the run's folder), calibrate on the
    held-out footage, and write the model file ``out`` (a checkpoint whose settings also hold the
    calibration). Returns the calibration."""
    short = [v.name for v in videos if v.n_frames < CLIP_LENGTH]
    if short:
        raise VPCError(f"video {short[0]} is shorter than one clip of {CLIP_LENGTH} frames")
    _, held_out = hold_out_pieces(videos, config.hold_out, CLIP_LENGTH)
    with lock(config):
        checkpoint = load_checkpoint(train_on(config, videos))
        device = default_device()
        model = checkpoint.build().to(device).eval()
        calibration = label_free_calibration(model, held_out, config, device)
        save_checkpoint(out, model, {**checkpoint.settings, "calibration": calibration})
    return calibration


def summary(out, config, videos, calibration):
    """fit.py's closing line."""
    return (f"model: {out} (dual-memory, {len(videos)} normal videos, held out for calibration: "
            f"{', '.join(calibration['held_out'])}; alarm threshold {calibration['threshold']:.4g} for "
            f"{100 * config.false_alarm_rate:g}% false alarms)")


class Scorer:
    """Scores a source frame by frame with a calibrated dual-memory model file: the raw PSNR, the calibrated
    score, alarms above the calibration's threshold (score.py)."""

    streams = tuple(STREAMS)
    consecutive = 1         # frames read at a time: a clip slides by one

    def __init__(self, path, device=None, raw=False):
        checkpoint = load_checkpoint(path)
        self.calibration = checkpoint.settings.get("calibration")
        if not self.calibration:
            raise VPCError(f"{path} has no label-free calibration (a DualMemory/train.py checkpoint): make a model "
                           f"file with fit.py --method dual_memory")
        self.device, self.raw = device or default_device(), raw
        self.model = checkpoint.build().to(self.device).eval()
        training = checkpoint.settings["training"]
        self.height, self.width = training["h"], training["w"]

    def score(self, source):
        """A ClipResult per scored frame of ``source`` (extra.sources.ClipReader of clips of 1 frame), in
        order, once the clip around it is complete."""
        frames, clips = deque(maxlen=CLIP_LENGTH), deque(maxlen=CLIP_LENGTH)
        for clip in source:
            frames.append(standardised(resized(clip.frames[0], self.height, self.width)))
            clips.append(clip)
            if len(frames) < CLIP_LENGTH:
                continue
            psnr = clip_psnr(self.model, torch.stack(list(frames), dim=1)[None].to(self.device))
            single = make_video_scores({"psnr": [[psnr]]}, [[0]], STREAMS)
            calibrated = calibrated_streams(single, self.calibration)
            fused = calibrated["total"]
            scored = clips[SCORED_FRAME]
            yield ClipResult(scored, {"psnr": [psnr] if self.raw else calibrated["psnr"]}, fused,
                             fused > self.calibration["threshold"], [], np.zeros(0), time.perf_counter() - clip.arrived,
                             self.calibration["threshold"])
