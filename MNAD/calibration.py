"""MNAD's label-free calibration, the data: training footage held out of training (MNAD.data.
hold_out_pieces) scored by the trained model as the test loop scores, once per pseudo-anomaly recipe
(extra.pseudo_anomalies) with a stretch of a quarter of its windows made anomalous; then alpha,
normalisation and threshold (MNAD.scoring.calibrate). No test video and no test label is read.

Each sequence starts from the trained memory items and updates them online as the test loop does. The
windows before the stretch are the same for every recipe, so they are scored once. A recipe alters every
frame of a window the same way (one seeded draw per stretch), so consecutive windows show one
consistent anomaly; temporal recipes need windows of two frames or more (prediction).
"""
import numpy as np
import torch

from extra.errors import VPCError
from extra.evaluation.scores import make_video_scores
from extra.progress import progress
from extra.pseudo_anomalies import (
    RECIPES, SEGMENT_FRACTION, TEMPORAL_RECIPES, freeze_index, pasted, shuffled_grid, skip_index, swapped,
)
from MNAD.data import Windows, stacked
from MNAD.model import score_sequence
from MNAD.scoring import STREAMS, calibrate


def recipes_for(t_length):
    """The recipes that change a window of ``t_length`` frames (no temporal one for a single frame)."""
    return tuple(r for r in RECIPES if t_length > 1 or r not in TEMPORAL_RECIPES)


def as_crops(frames):
    """Frames (t of H x W x 3) -> a float tensor (1, 3, t, H, W), the layout of the crop recipes."""
    return torch.from_numpy(np.stack(frames).astype(np.float32)).permute(3, 0, 1, 2)[None]


def as_frames(crops):
    """The inverse of ``as_crops``: a list of t float frames H x W x 3 (values 0..255)."""
    return list(crops[0].permute(1, 2, 3, 0).numpy())


def shuffled_region(frames, rng):
    """The frames with one square of half their shorter side, at a seeded place, cut into a grid whose
    cells are shuffled (the same square and permutation in every frame)."""
    crops = as_crops(frames)
    height, width = crops.shape[-2:]
    side = min(height, width) // 2
    y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crops[..., y:y + side, x:x + side] = shuffled_grid(crops[..., y:y + side, x:x + side].contiguous(), rng)
    return as_frames(crops)


def partner_start(windows, index):
    """The raw start of the window half a piece away from window ``index`` (within its piece)."""
    v, start = windows.starts[index]
    first = windows.first_window(v)
    n = windows.windows_of(v)
    return windows.starts[first + (index - first + n // 2) % n][1]


def pseudo_window(recipe, windows, index, seed, donor):
    """Window ``index`` of ``windows`` (MNAD.data.Windows) made pseudo-anomalous by ``recipe``; ``seed``
    draws its parameters (the same for every window of a stretch); ``donor``: frames of other normal
    footage, t of them, for ``paste``. Returns the window tensor (3 t, h, w)."""
    rng = np.random.default_rng(seed)
    v, start = windows.starts[index]
    t = windows.t_length
    frames = windows.frames(v, range(start, start + t))
    if recipe == "reverse":
        frames = frames[::-1]
    elif recipe == "freeze":
        frames = [frames[i] for i in freeze_index(t).tolist()]
    elif recipe == "skip":
        piece = windows.pieces[v]
        last = piece.video.first_frame + piece.stop - 1
        frames = windows.frames(v, skip_index(start, t, int(rng.integers(2, 6)), last))
    elif recipe == "swap":
        partner = partner_start(windows, index)
        frames = swapped(frames, windows.frames(v, range(partner, partner + t)), rng)
    elif recipe == "shuffle":
        frames = shuffled_region(frames, rng)
    elif recipe == "paste":
        frames = as_frames(pasted(as_crops(frames), as_crops(donor), rng))
    else:
        raise ValueError(f"unknown pseudo-anomaly recipe {recipe!r}")
    return stacked(frames)


def donor_frames(windows, v):
    """Frames for ``paste`` into piece ``v``: the middle window of the next held-out piece (of the same
    one when it is the only one)."""
    u = (v + 1) % len(windows.pieces)
    start = windows.starts[windows.first_window(u) + windows.windows_of(u) // 2][1]
    return windows.frames(u, range(start, start + windows.t_length))


def calibration_sequences(model, items, pieces, config, device):
    """({stream: [per-window scores per sequence]}, [labels per sequence], names, recipes): each held-out
    piece scored once per recipe, a seeded stretch of a quarter of its windows pseudo-anomalous."""
    windows = Windows(pieces, config.t_length, config.h, config.w)
    recipes = recipes_for(config.t_length)
    per_stream, labels, names = {"psnr": [], "distance": []}, [], []
    for v in progress(range(len(pieces)), "MNAD calibration: held-out footage"):
        first, n = windows.first_window(v), windows.windows_of(v)
        if n < 2:
            raise VPCError(f"held-out {pieces[v].name} gives {n} window(s) of {config.t_length} frames: the label-free "
                           f"calibration needs 2 or more (a normal one and a pseudo-anomalous one)")
        length = max(1, round(SEGMENT_FRACTION * n))
        stretch = int(np.random.default_rng([config.seed, v]).integers(0, n - length + 1))
        before = score_sequence(model, (windows[first + i] for i in range(stretch)), items, config, device)
        donor = donor_frames(windows, v)
        for r, recipe in enumerate(recipes):
            seed = [config.seed, v, r]

            def window(i):
                inside = stretch <= i < stretch + length
                return pseudo_window(recipe, windows, first + i, seed, donor) if inside else windows[first + i]

            psnr, distance, _ = score_sequence(model, (window(i) for i in range(stretch, n)), before[2], config,
                                               device)
            per_stream["psnr"].append(np.concatenate([before[0], psnr]))
            per_stream["distance"].append(np.concatenate([before[1], distance]))
            y = np.zeros(n, np.int64)
            y[stretch:stretch + length] = 1
            labels.append(y)
            names.append(f"{pieces[v].name}/{recipe}")
    return per_stream, labels, names, recipes


def label_free_calibration(model, items, held_out, config, device):
    """The label-free calibration (a JSON-ready dict, MNAD.scoring.calibrate) of a model trained without
    the ``held_out`` pieces (MNAD.data.Piece), at ``config.false_alarm_rate``."""
    if not held_out:
        raise VPCError("the label-free calibration needs training footage held out of training (--hold_out)")
    per_stream, labels, names, recipes = calibration_sequences(model, items, held_out, config, device)
    scores = make_video_scores(per_stream, labels, STREAMS, names)
    details = {"held_out": [piece.name for piece in held_out], "recipes": list(recipes), "sequences": len(names),
               "seed": config.seed}
    return calibrate(scores, labels, config.false_alarm_rate, details)
