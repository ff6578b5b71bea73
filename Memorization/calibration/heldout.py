"""Label-free calibration, the data: training videos held out and scored by memory banks built
without them, with pseudo-anomalies (Memorization.calibration.recipes) spliced in; then the weights,
normalisation and thresholds (Memorization.calibration.weights).

Each held-out training video is scored by memory banks built without it, the size of the model's: the
coreset ratio is raised by N / (N - 1) for N training videos (capped at all rows), so a held-out video
meets as dense a bank as a new video meets in the model (with the model's ratio, a bank of one video
of two is half as dense, and every held-out score, so the threshold, comes out too high). With the
published order (a coreset per video, then concatenation) the bank is the concatenation of the other
videos' coresets at that ratio.
With a single training video, its two halves hold each other out (the documented fallback: a
calibration from one video is weak, and the run says so). At most ``MAX_HELD_OUT`` videos, spread
evenly over the split, are held out. In each held-out video one stretch of clips (a quarter of
them, at a seeded place) is replaced by a pseudo-anomalous version, once per recipe, giving one
labelled sequence per recipe; the weights are chosen on those. The normalisation and the alarm
thresholds rest on the held-out videos as they are, every clip once: that is what normal footage
looks like to the model, and a quarter more of it than the normal part of a spliced sequence.
"""
import numpy as np
import torch

from extra.device import default_device
from extra.errors import VPCError, warn
from extra.evaluation.scores import make_video_scores
from extra.progress import progress
from extra.pseudo_anomalies import RECIPES, SEGMENT_FRACTION
from extra.store import open_clip_file
from extra.workdir import OBJECT_BATCHES
from Memorization.banks.coreset import subsample
from Memorization.banks.scores import score_clips
from Memorization.banks.specs import training_patches
from Memorization.calibration.recipes import ENCODER_RECIPES, Recipes, donor_crops
from Memorization.calibration.weights import calibrate
from Memorization.model import VideoFeatures

MAX_HELD_OUT = 10


class Piece:
    """A held-out unit: a training video, or one half of the only one; its clips' features and
    what the encoder recipes need (the video, object crops and boxes, on demand)."""

    def __init__(self, name, video, clips, features, objects_path):
        self.name, self.video, self.clips, self.features, self.objects_path = (
            name, video, clips, features, objects_path)

    def objects(self, clip_position):
        """Crops (n, 3, d, H, W) and boxes (n, 6) of a clip of the piece (the placeholder and None when empty)."""
        with open_clip_file(self.objects_path, OBJECT_BATCHES) as opened:
            clip = self.clips[clip_position]
            return opened.clip(clip), opened.attribute(clip, "boxes")


def pieces_of(videos, read_features, work):
    """Held-out pieces: up to MAX_HELD_OUT training videos spread evenly, or the halves of a lone one."""
    def piece(video, name, clips, features):
        return Piece(name, video, clips, features, work.object_batches("train", video.name))

    if len(videos) >= 2:
        chosen = np.unique(np.linspace(0, len(videos) - 1, min(MAX_HELD_OUT, len(videos))).round().astype(int))
        pieces = []
        for index in chosen:
            features = read_features(videos[index])
            pieces.append(piece(videos[index], videos[index].name, list(range(len(features.clips["local"]))),
                                features))
        return pieces, [read_features(v) for i, v in enumerate(videos) if i not in set(chosen.tolist())]
    (video,) = videos
    features = read_features(video)
    n = len(features.clips["local"])
    halves = (list(range(n // 2)), list(range(n // 2, n)))
    return [piece(video, f"{video.name} (half {h + 1})", clips,
                  VideoFeatures({s: [c[i] for i in clips] for s, c in features.clips.items()}))
            for h, clips in enumerate(halves)], []


def held_out_ratio(ratio, n_videos):
    """The coreset ratio of a bank built without one of ``n_videos`` training videos (or halves) that
    keeps the model's bank size: ``ratio`` * n / (n - 1), at most 1 (all rows)."""
    return min(1.0, ratio * n_videos / (n_videos - 1))


def per_piece_coresets(patches_of_pieces, ratio, method, device):
    return [subsample(p, ratio, method.random_projection, method.eps_coreset, method.seed, device)
            if p.shape[0] else p for p in patches_of_pieces]


def held_out_banks(specs, pieces, others, method, device):
    """For each piece, {bank: the bank of every other training video} (LOO), built as the model builds
    its banks at the ratio that keeps the model's bank size (``held_out_ratio``); ``others``: the
    features of training videos that are never held out."""
    banks = [dict() for _ in pieces]
    n_videos = len(pieces) + len(others)

    def joined(parts, i):
        rows = [part for j, part in enumerate(parts) if j != i and part.shape[0]]
        if not rows:
            raise VPCError(f"the label-free calibration cannot hold out {pieces[i].name}: the other training "
                           f"videos give no {spec.name} patches (no objects?); pass --label_free=False")
        return torch.cat(rows)

    for spec in specs:
        patches = [training_patches(spec, p.features.clips[spec.stream], method) for p in pieces]
        rest = [training_patches(spec, f.clips[spec.stream], method) for f in others]
        ratio = held_out_ratio(method.ratios[spec.name], n_videos)
        if method.bank_order == "subsample_then_concat":
            kept = per_piece_coresets(patches + rest, ratio, method, device)
            for i in range(len(pieces)):
                banks[i][spec.name] = joined(kept, i)
        else:
            for i in range(len(pieces)):
                banks[i][spec.name] = subsample(joined(patches + rest, i), ratio, method.random_projection,
                                                method.eps_coreset, method.seed, device)
    return banks


def calibration_sequences(model, pieces, others, backbone, device, memo=None):
    """({bank: [per-frame scores per sequence]}, [labels per sequence], names, recipes, {bank: [per-frame
    scores per piece]}): per piece and recipe, the held-out piece scored with its stretch of
    pseudo-anomalous clips; last, each piece scored as it is. ``memo`` (a dict) keeps the
    pseudo-anomalous features for other configurations with the same features (the table runner)."""
    memo = {} if memo is None else memo
    method, d = model.method, model.method.consecutive
    recipes = RECIPES if backbone is not None else tuple(r for r in RECIPES if r not in ENCODER_RECIPES)
    banks_of = held_out_banks(model.specs, pieces, others, method, device)
    donors = donor_crops(pieces)
    per_bank, labels, names = {spec.name: [] for spec in model.specs}, [], []
    as_they_are = {spec.name: [] for spec in model.specs}
    for p, piece in enumerate(progress(pieces, "calibration: held-out training videos")):
        banks = {name: bank.to(device) for name, bank in banks_of[p].items()}
        normal = {spec.name: score_clips(spec, piece.features.clips[spec.stream], banks[spec.name], method, device)
                  for spec in model.specs}
        for name, frames in normal.items():
            as_they_are[name].append(frames)
        n = len(piece.clips)
        length = max(1, round(SEGMENT_FRACTION * n))
        for r, recipe in enumerate(recipes):
            rng = np.random.default_rng([method.seed, p, r])
            start = int(rng.integers(0, n - length + 1))
            key = (piece.name, recipe, method.local_folder, method.global_folder, method.consecutive, method.seed)
            if key not in memo:
                cook = Recipes(method, backbone, [c for name, c in donors if name != piece.name])
                memo[key] = [cook(recipe, piece, position, rng) for position in range(start, start + length)]
            altered = memo[key]
            clips = {"local": [lf for lf, _ in altered], "global": [gf for _, gf in altered]}
            for spec in model.specs:
                frames = normal[spec.name].copy()
                frames[start * d:(start + length) * d] = score_clips(spec, clips[spec.stream], banks[spec.name],
                                                                    method, device)
                per_bank[spec.name].append(frames)
            y = np.zeros(n * d, np.int64)
            y[start * d:(start + length) * d] = 1
            labels.append(y)
            names.append(f"{piece.name}/{recipe}")
    return per_bank, labels, names, recipes, as_they_are


def label_free_calibration(model, run, videos, backbone, read_features, memo=None):
    """The calibration of ``model`` (a dict, see Memorization.calibration) from the training videos,
    its alarm threshold at ``run.false_alarm_rate`` (a warning where the held-out footage is too short
    to support that rate); ``memo``: see ``calibration_sequences``. Runs where the encoder does (CUDA
    when present)."""
    if len(videos) == 1:
        warn("one training video: the label-free calibration holds out each half of it in turn (a weak "
             "calibration; give several normal videos for a reliable one)")
    work = run.work
    pieces, others = pieces_of(videos, read_features, work)
    if min(len(p.clips) for p in pieces) == 0:
        raise VPCError("the label-free calibration needs at least two clips of training video; pass "
                       "--label_free=False to go without it")
    device = backbone.device if backbone is not None else default_device()
    per_bank, labels, names, recipes, as_they_are = calibration_sequences(model, pieces, others, backbone, device,
                                                                          memo)
    scores = make_video_scores(per_bank, labels, model.streams, names)
    normal = make_video_scores(as_they_are, [np.zeros(len(x), np.int64) for x in as_they_are[model.specs[0].name]],
                               model.streams, [p.name for p in pieces])
    d = model.method.consecutive
    # Independent units are clips (their frames share a score); a piece's normal clips recur in each recipe's sequence.
    units = (int(sum(y.sum() for y in labels)) // d,
             sum(int((y == 0).sum()) for y in labels[::len(recipes)]) // d)
    details = {"recipes": list(recipes), "held_out": [p.name for p in pieces], "sequences": len(names),
               "seed": model.method.seed, "fallback": "halves of the only training video" if len(videos) == 1 else None}
    calibration = calibrate(scores, labels, run.false_alarm_rate, details, units=units,
                            kinds=[recipe for _ in pieces for recipe in recipes], clip_frames=d, normal=normal)
    if not calibration["support"]["supported"]:
        warn(calibration["support"]["note"])
    return calibration
