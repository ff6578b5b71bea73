"""Pseudo-anomaly recipes (extra.pseudo_anomalies) applied to VideoPatchCore's features: the
pseudo-anomalous (lf, gf) of a held-out clip, per recipe.

- temporal: ``reverse``, ``freeze``, ``skip`` on the clip's frames;
- spatial: ``paste`` (an object crop of another training video pasted into each object with a soft
  edge), ``shuffle`` (each object crop cut into a 4 x 4 grid whose cells are shuffled);
- global: ``swap`` (a third of the frame, at a seeded place, taken from the clip half a video away).

Reversing and freezing act on the features directly (the features of a frame do not depend on the
other frames, so this equals extracting them from the reordered frames); the others run the
encoder on the altered crops or frames.
"""
import torch

from extra.pseudo_anomalies import freeze_index, pasted, shuffled_grid, skip_index, swapped
from extra.store import is_empty_clip
from Memorization.features import global_features, local_features
from ObjectDetection.boxes import clip_crops, objects_array

ENCODER_RECIPES = ("skip", "paste", "shuffle", "swap")      # those that run the encoder again


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
