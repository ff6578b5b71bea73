from pathlib import Path

from extra.store import clip_key
from extra.workdir import WorkDir
from Memorization.banks.specs import HIGHLEVEL, SPATIAL, TEMPORAL, bank_path
from Memorization.options import MethodConfig


def test_layout_matches_the_published_working_directory():
    work = WorkDir(Path("/w"), "avenue")
    assert clip_key(7) == "0007" and clip_key(1234) == "1234"
    assert work.boxes_pickle("train") == Path("/w/objects/avenue/avenue_train.pickle")
    assert work.object_batches("test", "01") == Path("/w/objects/avenue/test/01_object_batches.h5")
    assert work.local_features(32, "train", "01") == \
        Path("/w/l_features/avenue/32/visual/train/01_video_features.h5")
    assert work.global_features(32, "test", "01") == \
        Path("/w/g_features/avenue/32/visual/test/01_video_features.h5")

    def method(cnl_pool, ratio):
        return MethodConfig("avenue", 10, cnl_pool, ratios=dict.fromkeys(("spatial", "temporal", "highlevel"), ratio))

    assert bank_path(work, SPATIAL, method(32, 0.01)) == Path("/w/l_features/avenue/32/spatial_memory_bank_0.01.pt")
    assert bank_path(work, TEMPORAL, method(64, 0.25)) == Path("/w/l_features/avenue/64/temporal_memory_bank_0.25.pt")
    assert bank_path(work, HIGHLEVEL, method(64, 0.1)) == Path("/w/g_features/avenue/64/highlevel_memory_bank_0.1.pt")
    assert bank_path(work, SPATIAL, method(32, 1)).name == "spatial_memory_bank_1.0.pt"
