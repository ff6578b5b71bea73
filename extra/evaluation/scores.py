"""Per-frame score streams of test videos with the labels of the frames they cover: what every
method hands the evaluation (extra.evaluation.harness). A stream is named (a memory bank's name for
VideoPatchCore) and says which kind of features it reads ("local" or "global"), which decides how
the published protocol normalises it.
"""
from dataclasses import dataclass

import numpy as np

from extra.errors import VPCError

@dataclass
class VideoScores:
    """Per-frame scores of the test videos in video order: per bank a vector per video; ``streams``
    says which stream each bank reads ("local" | "global"). ``labels`` are cut from the start of each
    video to the length of its scores, as the published protocol does; ``aligned`` are the labels of
    the frames actually scored (they differ where clips start after the first frame: IITB), None
    when they are the same. Both None where there are no labels."""

    names: list
    banks: dict
    streams: dict
    labels: list = None
    aligned: list = None

    @property
    def aligned_labels(self):
        return self.labels if self.aligned is None else self.aligned

    @property
    def lengths(self):
        return [len(x) for x in next(iter(self.banks.values()))]

    def concat(self, bank):
        return np.concatenate(self.banks[bank])

    def all_labels(self):
        return np.concatenate(self.labels)

    def split(self, x):
        """Cut a vector over all frames back into per-video pieces."""
        return np.split(x, np.cumsum(self.lengths)[:-1])


def make_video_scores(per_bank, labels, streams, names=None, first_frames=None):
    """Check and pack per-video scores ({bank: [vector per video]}); each label vector is cut, from
    its start, to the length of its video's scores (the last ``len mod d`` frames have no score), and
    also aligned with the frames scored: from ``first_frames[v]`` (the first frame with a clip) on."""
    names = [str(i + 1) for i in range(len(labels))] if names is None else [str(x) for x in names]
    n = len(names)
    if n == 0:
        raise VPCError("no test video to evaluate: check the test split and the ground truth")
    counts = {bank: len(vectors) for bank, vectors in per_bank.items()}
    if any(count != n for count in counts.values()) or len(labels) != n:
        found = ", ".join(f"{count} {bank}" for bank, count in counts.items())
        raise VPCError(f"evaluation needs one score vector of each bank and one label vector per video; got "
                       f"{found}, {len(labels)} label vectors, {n} names")
    packed = VideoScores(names, {bank: [] for bank in per_bank}, {bank: streams[bank] for bank in per_bank}, [], [])
    for v, (name, y) in enumerate(zip(names, labels)):
        vectors = {bank: np.asarray(per_bank[bank][v], dtype=np.float64).ravel() for bank in per_bank}
        y = np.asarray(y).ravel()
        lengths = {len(x) for x in vectors.values()}
        if len(lengths) != 1:
            found = ", ".join(f"{bank} {len(x)}" for bank, x in vectors.items())
            raise VPCError(f"video {name}: the banks' scores have different lengths ({found}); "
                           f"they must have the same length")
        length = lengths.pop()
        if len(y) < length:
            raise VPCError(f"video {name}: {len(y)} labels for {length} scored frames; "
                           f"the ground truth must cover every frame of the video")
        if not all(np.isfinite(x).all() for x in vectors.values()):
            raise VPCError(f"video {name}: scores contain NaN or infinity; recompute the scores")
        if not np.isin(y, (0, 1)).all():
            raise VPCError(f"video {name}: labels must be 0 (normal) or 1 (anomalous)")
        first = 0 if first_frames is None else first_frames[v]
        if len(y) < first + length:
            raise VPCError(f"video {name}: {len(y)} labels for {length} scored frames from frame {first}; "
                           f"the ground truth must cover every frame of the video")
        for bank, x in vectors.items():
            packed.banks[bank].append(x)
        packed.labels.append(y[:length].astype(np.int64))
        packed.aligned.append(y[first:first + length].astype(np.int64))
    if all(np.array_equal(a, b) for a, b in zip(packed.aligned, packed.labels)):
        packed.aligned = None
    return packed
