"""Paths of the working directory (WORK_README.md), the one place both stages take them from."""
from dataclasses import dataclass
from pathlib import Path

from extra.errors import FileKind

OBJECT_BATCHES = FileKind("object batches", "rerun ObjectDetection/run.py with the same --dataset, --consecutive "
                                            "and --work_num")
# The folders under the working directory that hold one subfolder per dataset.
DATASET_FOLDERS = ("objects", "l_features", "g_features", "od_save", "results", "reproduce", "figures", "models")


@dataclass(frozen=True)
class WorkDir:
    root: Path
    dataset: str

    def dataset_folders(self):
        """Every folder where the stages write this dataset's files."""
        return [self.root / folder / self.dataset for folder in DATASET_FOLDERS]

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

    # --- stage 2: features, memory banks, results ---------------------------------------------------
    def local_dir(self, folder):
        """Local-stream features and banks: l_features/<dataset>/<folder> (folder: c', or c'_<ablation>)."""
        return self.root / "l_features" / self.dataset / str(folder)

    def global_dir(self, folder):
        """Global-stream features and banks: g_features/<dataset>/<folder>."""
        return self.root / "g_features" / self.dataset / str(folder)

    @staticmethod
    def video_features(directory, split, video_name):
        """A video's feature file inside a stream's directory."""
        return directory / "visual" / split / f"{video_name}_video_features.h5"

    def local_features(self, folder, split, video_name):
        return self.video_features(self.local_dir(folder), split, video_name)

    def global_features(self, folder, split, video_name):
        return self.video_features(self.global_dir(folder), split, video_name)

    def results(self, cnl_pool):
        return self.root / "results" / self.dataset / str(cnl_pool)

    def reproduce(self, cnl_pool):
        """The table runner's cache: one folder of scores and results per configuration."""
        return self.root / "reproduce" / self.dataset / str(cnl_pool)

    def model(self, name):
        """A saved model file (Memorization.model)."""
        return self.root / "models" / self.dataset / f"{name}.vpc"
