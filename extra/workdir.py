"""Paths of the working directory (WORK_README.md), the one place both stages take them from."""
from dataclasses import dataclass
from pathlib import Path


def clip_key(clip_index):
    """HDF5 dataset name of a clip: its index zero-padded to four digits."""
    return f"{clip_index:04d}"


@dataclass(frozen=True)
class WorkDir:
    root: Path
    dataset: str

    # --- stage 1: objects --------------------------------------------------------------------
    @property
    def objects(self):
        return self.root / "objects" / self.dataset

    def boxes_pickle(self, split):
        return self.objects / f"{self.dataset}_{split}.pickle"

    def object_batches(self, split, video_name):
        return self.objects / split / f"{video_name}_object_batches.h5"

    @property
    def od_save(self):
        return self.root / "od_save" / self.dataset

    # --- stage 2: features and memory banks ------------------------------------------------------
    def local_dir(self, cnl_pool):
        return self.root / "l_features" / self.dataset / str(cnl_pool)

    def global_dir(self, cnl_pool):
        return self.root / "g_features" / self.dataset / str(cnl_pool)

    def local_features(self, cnl_pool, split, video_name):
        return self.local_dir(cnl_pool) / "visual" / split / f"{video_name}_video_features.h5"

    def global_features(self, cnl_pool, split, video_name):
        return self.global_dir(cnl_pool) / "visual" / split / f"{video_name}_video_features.h5"

    def memory_bank(self, bank, cnl_pool, ratio, variant=""):
        """bank: 'spatial' | 'temporal' (local stream) | 'highlevel' (global stream); a non-empty
        ``variant`` (ablation settings) is appended to the authors' file name."""
        folder = self.global_dir(cnl_pool) if bank == "highlevel" else self.local_dir(cnl_pool)
        suffix = f"_{variant}" if variant else ""
        return folder / f"{bank}_memory_bank_{float(ratio)}{suffix}.pt"

    def results(self, cnl_pool):
        return self.root / "results" / self.dataset / str(cnl_pool)

    def reproduce(self, cnl_pool):
        """The table runner's cache: one folder of scores and results per configuration."""
        return self.root / "reproduce" / self.dataset / str(cnl_pool)
