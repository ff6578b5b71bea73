"""MNAD on one's own footage: fit.py --method mnad trains on normal videos of any names (some footage held
out), calibrates the label-free alpha, normalisation and alarm threshold on what was held out, and writes
one model file; score.py scores any source with it frame by frame, live ones included.

A frame is scored as soon as the window that ends on it is complete (prediction: from the 5th frame
of a source on), with the memory items updated online as the official test loop does, carried through
the source and restarted from the trained ones for each source.
"""
import time
from collections import deque

import numpy as np
import torch

from extra.device import default_device
from extra.errors import VPCError
from extra.evaluation.scores import make_video_scores
from extra.footage_outputs import ClipResult
from extra.windows import hold_out_pieces, resized
from MNAD.calibration import label_free_calibration
from MNAD.checkpoints import is_checkpoint, load_checkpoint, save_checkpoint
from MNAD.data import input_frame
from MNAD.model import score_window
from MNAD.scoring import STREAMS, calibrated_streams
from MNAD.training import lock, train_on

SCORING_FIELDS = ("th", "update_norm", "point_score", "psnr_peak")
__all__ = ["Scorer", "fit_footage", "is_checkpoint", "summary"]


def fit_footage(videos, config, out):
    """Train on ``videos`` less the held-out footage (resumable, in the run's folder), calibrate on the
    held-out footage, and write the model file ``out`` (a checkpoint whose settings also hold the
    calibration and the scoring settings). Returns the calibration."""
    short = [v.name for v in videos if v.n_frames < config.t_length]
    if short:
        raise VPCError(f"video {short[0]} is shorter than one window of {config.t_length} frames (--t_length)")
    _, held_out = hold_out_pieces(videos, config.hold_out, config.t_length)
    with lock(config):
        checkpoint = load_checkpoint(train_on(config, videos))
        device = default_device()
        model = checkpoint.build().to(device).eval()
        calibration = label_free_calibration(model, checkpoint.items.to(device), held_out, config, device)
        scoring = {name: getattr(config, name) for name in SCORING_FIELDS}
        save_checkpoint(out, model, checkpoint.items, {**checkpoint.settings, "calibration": calibration,
                                                       "scoring": scoring})
    return calibration


def summary(out, config, videos, calibration):
    """fit.py's closing line."""
    return (f"model: {out} (MNAD {config.method}, {len(videos)} normal videos, held out for calibration: "
            f"{', '.join(calibration['held_out'])}; alpha {calibration['weights']['alpha']}, alarm threshold "
            f"{calibration['threshold']:.4g} for {100 * config.false_alarm_rate:g}% false alarms)")


class Scorer:
    """Scores a source frame by frame with a calibrated MNAD model file: raw PSNR and distance, the
    calibrated fused score, alarms above the calibration's threshold (score.py)."""

    streams = tuple(STREAMS)
    consecutive = 1         # frames read at a time: a window slides by one

    def __init__(self, path, device=None, raw=False):
        checkpoint = load_checkpoint(path)
        self.calibration = checkpoint.settings.get("calibration")
        if not self.calibration:
            raise VPCError(f"{path} has no label-free calibration (an MNAD/train.py checkpoint): make a model file "
                           f"with fit.py --method mnad")
        self.scoring, self.raw = checkpoint.settings["scoring"], raw
        self.device = device or default_device()
        self.model = checkpoint.build().to(self.device).eval()
        self.items = checkpoint.items.to(self.device)
        training = checkpoint.settings["training"]
        self.t_length, self.height, self.width = training["t_length"], training["h"], training["w"]

    def score(self, source):
        """A ClipResult per frame of ``source`` (extra.sources.ClipReader of clips of 1 frame) from the
        first complete window on, in order, as each is ready."""
        frames, items = deque(maxlen=self.t_length), self.items.clone()
        for clip in source:
            frames.append(input_frame(resized(clip.frames[0], self.height, self.width)))
            if len(frames) < self.t_length:
                continue
            window = torch.from_numpy(np.concatenate(frames, axis=0))[None].to(self.device)
            frame = score_window(self.model, window, items, self.scoring["th"], self.scoring["update_norm"],
                                 self.scoring["point_score"], self.scoring["psnr_peak"])
            items = frame.items
            single = make_video_scores({"psnr": [[frame.psnr]], "distance": [[frame.distance]]}, [[0]], STREAMS)
            calibrated = calibrated_streams(single, self.calibration)
            fused = calibrated["total"]
            columns = single.banks if self.raw else {name: calibrated[name] for name in STREAMS}
            yield ClipResult(clip, {name: np.ravel(x) for name, x in columns.items()}, fused,
                             fused > self.calibration["threshold"], [], np.zeros(0), time.perf_counter() - clip.arrived,
                             self.calibration["threshold"])
