"""Held-out footage made pseudo-anomalous, for the label-free calibration of frame-level methods (MNAD,
the dual-memory model): each piece of footage held out of training is scored as the method scores test
video, once per pseudo-anomaly recipe (extra.pseudo_anomalies) with a stretch of a quarter of its windows
altered; no test video and no test label is read.

A recipe alters every frame of a window the same way (one seeded draw per stretch), so consecutive
windows show one consistent anomaly; temporal recipes need windows of two frames or more.
"""
import numpy as np
import torch

from extra.errors import VPCError, warn
from extra.evaluation.alarms import false_alarm_support
from extra.evaluation.scores import make_video_scores
from extra.progress import progress
from extra.pseudo_anomalies import (
    RECIPES, SEGMENT_FRACTION, TEMPORAL_RECIPES, freeze_index, pasted, shuffled_grid, skip_index, swapped,
)


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
    """Window ``index`` of ``windows`` (extra.windows.Windows) made pseudo-anomalous by ``recipe``; ``seed``
    draws its parameters (the same for every window of a stretch); ``donor``: frames of other normal
    footage, t of them, for ``paste``. Returns the window as the method reads it (``windows.to_input``)."""
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
    return windows.to_input(frames)


def donor_frames(windows, v):
    """Frames for ``paste`` into piece ``v``: the middle window of the next held-out piece (of the same
    one when it is the only one)."""
    u = (v + 1) % len(windows.pieces)
    start = windows.starts[windows.first_window(u) + windows.windows_of(u) // 2][1]
    return windows.frames(u, range(start, start + windows.t_length))


def calibration_sequences(windows, score, state, seed):
    """({stream: [per-window scores per sequence]}, [labels per sequence], names, recipes): each piece of
    ``windows`` scored once per recipe, a seeded stretch of a quarter of its windows pseudo-anomalous.
    ``score(windows, state)`` scores an iterable of window tensors in order from a method's ``state``
    (e.g. memory items updated online) and returns ({stream: array}, the state after them); every
    sequence starts from ``state``, and the windows before the stretch are scored once for all recipes."""
    recipes = recipes_for(windows.t_length)
    per_stream, labels, names = {}, [], []
    for v in progress(range(len(windows.pieces)), "calibration: held-out footage"):
        piece, first, n = windows.pieces[v], windows.first_window(v), windows.windows_of(v)
        if n < 2:
            raise VPCError(f"held-out {piece.name} gives {n} window(s) of {windows.t_length} frames: the "
                           f"label-free calibration needs 2 or more (a normal one and a pseudo-anomalous one)")
        length = max(1, round(SEGMENT_FRACTION * n))
        stretch = int(np.random.default_rng([seed, v]).integers(0, n - length + 1))
        before, at_stretch = score((windows[first + i] for i in range(stretch)), state)
        donor = donor_frames(windows, v)
        for r, recipe in enumerate(recipes):
            recipe_seed = [seed, v, r]

            def window(i):
                inside = stretch <= i < stretch + length
                return pseudo_window(recipe, windows, first + i, recipe_seed, donor) if inside else windows[first + i]

            after, _ = score((window(i) for i in range(stretch, n)), at_stretch)
            for stream, values in after.items():
                per_stream.setdefault(stream, []).append(np.concatenate([before[stream], values]))
            y = np.zeros(n, np.int64)
            y[stretch:stretch + length] = 1
            labels.append(y)
            names.append(f"{piece.name}/{recipe}")
    return per_stream, labels, names, recipes


def heldout_calibration(held_out, windows_of, score, state, streams, calibrate, config):
    """A frame-level method's label-free calibration: the ``held_out`` pieces (extra.windows.Piece) as the
    method reads them (``windows_of(pieces)``), scored by ``score`` from ``state`` (calibration_sequences),
    then ``calibrate(VideoScores of ``streams``, labels, false-alarm rate, details)``; ``config``: seed,
    false_alarm_rate. The details say what was held out and which recipes altered it, the ``support`` what
    the held-out normal frames (each counted once) can say about the rate (a warning where too little)."""
    if not held_out:
        raise VPCError("the label-free calibration needs training footage held out of training (--hold_out)")
    per_stream, labels, names, recipes = calibration_sequences(windows_of(held_out), score, state, config.seed)
    scores = make_video_scores(per_stream, labels, streams, names)
    details = {"held_out": [piece.name for piece in held_out], "recipes": list(recipes), "sequences": len(names),
               "seed": config.seed}
    calibration = calibrate(scores, labels, config.false_alarm_rate, details)
    # every recipe's sequence repeats its piece's normal frames: one sequence per piece counts them
    normal_frames = sum(int((y == 0).sum()) for y in labels[::len(recipes)])
    calibration["support"] = false_alarm_support(normal_frames, config.false_alarm_rate, "frames")
    if not calibration["support"]["supported"]:
        warn(calibration["support"]["note"])
    return calibration
