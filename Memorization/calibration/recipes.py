"""Pseudo-anomaly recipes: how a stretch of normal clips is made anomalous, seeded (the idea of the
pseudo-anomaly synthesizer of the dual-memory paper in ../shared/seeds). The frame-level
transforms (``freeze_index``, ``skip_index``, ``shuffled_grid``, ``pasted``, ``swapped``) are pure
functions on frames or crops that any method can use, a training-based one included; ``Recipes``
applies them to VideoPatchCore's features.

- temporal: ``reverse`` (the clip played backwards), ``freeze`` (the middle frame repeated to the
  end), ``skip`` (frames taken with a stride of 2 to 5: a sudden speed-up);
- spatial: ``paste`` (an object crop of another training video pasted into each object with a soft
  edge), ``shuffle`` (each object crop cut into a 4 x 4 grid whose cells are shuffled);
- global: ``swap`` (a third of the frame, at a seeded place, taken from the clip half a video away).

Reversing and freezing act on the features directly (the features of a frame do not depend on the
other frames, so this equals extracting them from the reordered frames); the others run the
encoder on the altered crops or frames.
"""
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from extra.store import is_empty_clip
from Memorization.features import global_features, local_features
from ObjectDetection.boxes import clip_crops, objects_array

RECIPES = ("reverse", "freeze", "skip", "paste", "shuffle", "swap")


ENCODER_RECIPES = ("skip", "paste", "shuffle", "swap")


SEGMENT_FRACTION = 0.25


GRID = 4


def freeze_index(d):
    """Frame order of a clip frozen on its middle frame: 0 .. d//2 - 1, then d//2 repeated."""
    return torch.tensor([min(t, d // 2) for t in range(d)])


def skip_index(start, length, stride, last):
    """Frame indices of a sped-up clip: ``length`` frames from ``start``, every ``stride``-th, the stride
    lowered until the clip ends by frame ``last`` (the skip-frame pseudo-anomaly)."""
    while stride > 1 and start + stride * (length - 1) > last:
        stride -= 1
    return [start + stride * k for k in range(length)]


def shuffled_grid(crops, rng):
    """Crops (n, 3, d, H, W) with their GRID x GRID cells permuted (the same permutation for all)."""
    n, c, d, h, w = crops.shape
    ch, cw = h // GRID, w // GRID
    cells = crops[..., :ch * GRID, :cw * GRID].reshape(n, c, d, GRID, ch, GRID, cw).permute(0, 1, 2, 3, 5, 4, 6)
    cells = cells.reshape(n, c, d, GRID * GRID, ch, cw)[:, :, :, torch.from_numpy(rng.permutation(GRID * GRID))]
    out = crops.clone()
    out[..., :ch * GRID, :cw * GRID] = cells.reshape(n, c, d, GRID, GRID, ch, cw).permute(0, 1, 2, 3, 5, 4, 6) \
        .reshape(n, c, d, ch * GRID, cw * GRID)
    return out


def soft_square(size, side, corner):
    """A (size, size) alpha mask: 1 inside the square of ``side`` at ``corner``, blurred at its edge."""
    mask = np.zeros((size[0], size[1]), np.float32)
    mask[corner[0]:corner[0] + side, corner[1]:corner[1] + side] = 1
    blur = max(side // 4 * 2 + 1, 3)
    return torch.from_numpy(cv2.GaussianBlur(mask, (blur, blur), 0))


def pasted(crops, donor, rng):
    """Each object of ``crops`` with the first object of ``donor`` (another video's crops), shrunk to
    half the crop's side, blended in with a soft edge at a seeded place, frame by frame."""
    n, _, d, h, w = crops.shape
    side = min(h, w) // 2
    corner = (int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)))
    donor_frames = donor[0].permute(1, 0, 2, 3)                                  # (d, 3, H', W')
    small = F.interpolate(donor_frames, size=(side, side), mode="bilinear", align_corners=False)
    patch = torch.zeros(d, 3, h, w)
    patch[:, :, corner[0]:corner[0] + side, corner[1]:corner[1] + side] = small
    alpha = soft_square((h, w), side, corner)
    return crops * (1 - alpha) + patch.permute(1, 0, 2, 3).unsqueeze(0) * alpha


def swapped(frames, partners, rng):
    """Frames with a third of their area (a seeded rectangle) taken from the partner frames."""
    h, w = frames[0].shape[:2]
    rh, rw = h // 2, w * 2 // 3
    y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    out = [frame.copy() for frame in frames]
    for frame, partner in zip(out, partners):
        frame[y:y + rh, x:x + rw] = partner[y:y + rh, x:x + rw]
    return out


class Recipes:
    """The pseudo-anomalous (lf, gf) of a piece's clip for each recipe."""

    def __init__(self, method, backbone, donors):
        self.method, self.backbone, self.donors = method, backbone, donors

    def local(self, crops):
        features = local_features(crops, self.backbone, self.method.cnl_pool, self.method.compression,
                                  self.method.compression_seed)
        return crops if features is None else features

    def __call__(self, recipe, piece, position, rng):
        method, d = self.method, self.method.consecutive
        lf, gf = piece.features.clips["local"][position], piece.features.clips["global"][position]
        if recipe in ("reverse", "freeze"):
            order = torch.arange(d - 1, -1, -1) if recipe == "reverse" else freeze_index(d)
            return (lf if is_empty_clip(lf) else lf.index_select(2, order)), gf.index_select(2, order)
        crops, boxes = piece.objects(position)
        crops = torch.from_numpy(crops)
        clip = piece.clips[position]
        raw = piece.video.clips(d)[clip]
        if recipe == "skip":
            last = piece.video.clips(d)[-1][-1]
            frames = piece.video.frames_at(skip_index(raw[0], d, int(rng.integers(2, 6)), last))
            moved = lf if is_empty_clip(crops) or boxes is None else self.local(
                torch.from_numpy(objects_array(clip_crops(frames, boxes, crops.shape[-1]))))
            return moved, global_features(frames, self.backbone, method.normalization)
        if recipe == "shuffle":
            return (lf if is_empty_clip(crops) else self.local(shuffled_grid(crops, rng))), gf
        if recipe == "paste":
            if is_empty_clip(crops) or not self.donors:
                return lf, gf
            donor = self.donors[int(rng.integers(len(self.donors)))]
            return self.local(pasted(crops, torch.from_numpy(donor), rng)), gf
        partner = piece.video.clips(d)[(clip + piece.video.n_clips(d) // 2) % piece.video.n_clips(d)]
        frames = piece.video.frames_at(raw)
        return lf, global_features(swapped(frames, piece.video.frames_at(partner), rng), self.backbone,
                                   method.normalization)


def donor_crops(pieces, limit=8):
    """Object crops of the pieces' clips that hold objects, for pasting into other videos."""
    donors = []
    for piece in pieces:
        for position in range(len(piece.clips)):
            crops, _ = piece.objects(position)
            if not is_empty_clip(crops):
                donors.append((piece.name, crops))
                break
    return donors[:limit]
