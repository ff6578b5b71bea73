"""The measured error of an approximate search (--search faiss-*) on the banks' test items: a fixed
seeded sample of test clips gathered while scoring, searched exactly and approximately once per bank.
"""
import math

import numpy as np
import torch

from Memorization.banks.specs import stack_items
from Memorization.knn.search import CHECK_ROWS, CHECK_SEED, measure_search

CHECK_CLIPS = 400           # clips drawn for it over all test videos, each bank


class SearchCheck:
    """A fixed seeded sample of the test items of every bank, gathered video by video while scoring
    (a few random clips of each), then measured once per bank (``report``)."""

    def __init__(self, specs, method, n_videos):
        self.specs, self.method = specs, method
        self.per_video = max(1, math.ceil(CHECK_CLIPS / max(n_videos, 1)))
        self.items = {spec.name: [] for spec in specs}      # bank -> [(items, rows, D) test patches]

    @classmethod
    def of(cls, model, n_videos):
        """A check of the model's search, or None for the exact one."""
        return None if model.method.search == "exact" else cls(model.specs, model.method, n_videos)

    def add(self, features, video_index):
        """Sample one video's clips (VideoFeatures); the draw depends on the video's position only."""
        rng = np.random.default_rng([CHECK_SEED, video_index])
        for spec in self.specs:
            clips = features.clips[spec.stream]
            chosen = rng.choice(len(clips), min(self.per_video, len(clips)), replace=False)
            items, _ = stack_items([clips[i] for i in sorted(chosen)])
            if items is not None:
                patches = spec.patches(items, self.method, "test")
                self.items[spec.name].append(patches.view(items.shape[0], -1, patches.shape[1]))

    def report(self, banks):
        """Measure every bank's search on its sample and print one line each; {bank: record}."""
        records = {}
        for spec in self.specs:
            if not self.items[spec.name]:
                continue
            items = torch.cat(self.items[spec.name])
            keep = max(1, CHECK_ROWS // items.shape[1])
            order = torch.from_numpy(np.random.default_rng(CHECK_SEED).permutation(len(items))[:keep])
            patches = items[order].reshape(-1, items.shape[2])
            bank = banks[spec.name]
            error = measure_search(patches.to(bank.device), len(order), bank, self.method.search,
                                   self.method.power_n)
            print(error.line(spec.name), flush=True)
            records[spec.name] = error.record()
        return records
