"""Ablation switches (Tables 3, 4, 7 and the slides' variants): each changes exactly the
computation it names, and its files never meet the published method's."""
import math
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from extra.config import DATASETS
from extra.errors import VPCError
from extra.provenance import read_h5_record, read_sidecar_record
from extra.store import clip_key
from extra.workdir import WorkDir
from Memorization.banks.specs import (
    HIGHLEVEL, PUBLISHED, SPATIAL, STREAMS, TEMPORAL, bank_path, bank_record, stack_items, training_patches,
)
from Memorization.banks.scores import score_clips
from Memorization.cli import build_parser, resolve_run
from Memorization.features import (
    compress_channels, extract_split_features, extraction_time, local_feature_set, local_features,
    random_channels,
)
from Memorization.model import VideoPatchCore
from Memorization.options import MethodConfig, results_name
from Memorization.pipeline import training_features
from tests.helpers import make_run
from tests.test_features import FakeTaps, make_video, write_objects
from tests.test_patches import MEAN_BUMP, motion_clip

AVENUE = DATASETS["avenue"]


def avenue_options(*flags):
    return resolve_run(build_parser("test").parse_args(["--data_root=/d", "--work_dir=/w", *flags])).method


# --- channel compression (Table 3) ------------------------------------------------------------------

def test_compressions_on_a_ramp_of_channels():
    x = torch.arange(6.0).view(1, 6, 1, 1)                   # channel k holds k
    assert compress_channels(x, 3, "split").flatten().tolist() == [0.5, 2.5, 4.5]
    assert compress_channels(x, 3, "head").flatten().tolist() == [0, 1, 2]
    # torch.randperm(6) with seed 0 starts 2, 5, 3: kept in increasing order
    assert random_channels(6, 3, seed=0).tolist() == [2, 3, 5]
    assert compress_channels(x, 3, "random", seed=0).flatten().tolist() == [2, 3, 5]
    assert compress_channels(x, 3, "random", seed=1).flatten().tolist() == [1, 2, 5]
    # the same draw on every call: train and test keep the same channels
    assert torch.equal(random_channels(1536, 32, 0), random_channels(1536, 32, 0))
    with pytest.raises(VPCError, match="cannot keep 7 of 6"):
        compress_channels(x, 7, "head")
    with pytest.raises(VPCError, match="cannot keep 0 of 6"):
        compress_channels(x, 0, "random")
    with pytest.raises(VPCError, match="unknown compression 'tail'"):
        compress_channels(x, 3, "tail")


def test_local_features_compressions_in_one_encoder_pass():
    # FakeTaps: the 512 layer2 channels hold the crop's mean m, the 1024 layer3 channels 2 m.
    crops = torch.full((2, 3, 2, 8, 8), 0.5)
    crops[1] = -0.25
    fake = FakeTaps()
    features = local_feature_set(crops, fake, 32, ("split", "head", "random"), seed=0)
    assert len(fake.inputs) == 1                                  # one pass for the three
    head, split, rand = features["head"], features["split"], features["random"]
    assert head.shape == split.shape == rand.shape == (2, 32, 2, 28, 28)
    assert head[0, :, 1, 3, 3].tolist() == pytest.approx([0.5] * 32)        # channels 0..31: layer2 only
    assert split[0, :, 0, 0, 0].tolist() == pytest.approx([0.5] * 10 + [(32 * 0.5 + 16 * 1.0) / 48] + [1.0] * 21)
    drawn = random_channels(1536, 32, 0)
    assert int((drawn < 512).sum()) == 9                          # seed 0 draws 9 layer2 channels
    expected = [0.5 if c < 512 else 1.0 for c in drawn.tolist()]
    assert rand[0, :, 0, 0, 0].tolist() == pytest.approx(expected)
    assert rand[1, :, 1, 27, 27].tolist() == pytest.approx([-v / 2 for v in expected])
    assert torch.equal(local_features(crops, FakeTaps(), 32, "random", seed=0), rand)


@pytest.fixture
def clip_video(tmp_path):
    video = make_video(tmp_path / "data" / "01", n_frames=4)     # 2 clips of 2 frames
    work = WorkDir(tmp_path / "work", "avenue")
    crops = np.full((1, 3, 2, 8, 8), 0.5, np.float32)
    write_objects(work.object_batches("train", "01"), {"0000": crops, "0001": np.zeros(1, np.float32)})
    return video, work


def test_compressed_features_have_their_own_folder_and_share_the_global_ones(clip_video):
    video, work = clip_video
    fake = FakeTaps()
    extract_split_features([video], "train", make_run(work.root, cnl_pool=32), fake, ("split", "head"))
    assert len(fake.inputs) == 1 + 2                              # one pass over the crops, one per frame clip
    split_path, head_path = (work.local_features(folder, "train", "01") for folder in ("32", "32_head"))
    global_path = work.global_features(32, "train", "01")
    with h5py.File(head_path, "r") as f:
        assert read_h5_record(f)["compression"] == "head"
        assert f["0000"][0, :, 0, 0, 0].tolist() == pytest.approx([0.5] * 32)
        assert f["0001"].shape == (1,)                            # the placeholder is kept
    with h5py.File(split_path, "r") as f:
        assert "compression" not in read_h5_record(f)            # the published record, unchanged
    stamps = {p: p.stat().st_mtime_ns for p in (split_path, head_path, global_path)}
    timing = extraction_time(head_path, STREAMS["local"].kind)
    assert timing["seconds"] >= 0 and timing["device"].startswith("CPU")

    fake = FakeTaps()
    extract_split_features([video], "train", make_run(work.root, cnl_pool=32, compression_seed=5), fake, ("random",))
    assert len(fake.inputs) == 1                                  # only the crops: global features are shared
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with h5py.File(work.local_features("32_random", "train", "01"), "r") as f:
        record = read_h5_record(f)
        assert (record["compression"], record["compression_seed"]) == ("random", 5)


def test_clip_normalisation_only_changes_the_global_features(clip_video):
    video, work = clip_video
    extract_split_features([video], "train", make_run(work.root, cnl_pool=32), FakeTaps())
    local_path = work.local_features(32, "train", "01")
    stamp = local_path.stat().st_mtime_ns
    fake = FakeTaps()
    extract_split_features([video], "train", make_run(work.root, cnl_pool=32, normalization="clip"), fake)
    assert len(fake.inputs) == 2 and local_path.stat().st_mtime_ns == stamp
    with h5py.File(work.global_features("32_clip", "train", "01"), "r") as f:
        assert read_h5_record(f)["normalization"] == "clip"
        # frames 0 and 1 are grey 0 and 10: layer2 taps give 2 x the mean of CLIP's normalised channels
        means = [np.mean([(v / 255 - m) / s for m, s in zip((0.48145466, 0.4578275, 0.40821073),
                                                             (0.26862954, 0.26130258, 0.27577711))])
                 for v in (0, 10)]
        assert f["0000"][0, 0].tolist() == pytest.approx([2 * m for m in means])


# --- options, paths and records -----------------------------------------------------------------------

def test_defaults_keep_the_authors_paths_and_records(tmp_path):
    options = avenue_options()
    assert (options.compression, options.temporal_pooling, options.absolute_difference, options.bank_order,
            options.normalization) == ("split", "mismatched", False, "subsample_then_concat", "published")
    work = WorkDir(Path("/w"), "avenue")
    assert [bank_path(work, spec, options) for spec in PUBLISHED] == [
        Path("/w/l_features/avenue/32/spatial_memory_bank_0.01.pt"),
        Path("/w/l_features/avenue/32/temporal_memory_bank_0.01.pt"),
        Path("/w/g_features/avenue/32/highlevel_memory_bank_0.01.pt")]
    assert results_name(options) == "spatial0.01_temporal0.01_highlevel0.01"
    assert "compression" not in bank_record(SPATIAL, options, {})


def test_ablation_variants_get_their_own_files():
    work = WorkDir(Path("/w"), "avenue")

    def paths(*flags):
        options = avenue_options(*flags)
        return [bank_path(work, spec, options).relative_to("/w").as_posix() for spec in PUBLISHED]

    assert paths("--compression=head") == ["l_features/avenue/32_head/spatial_memory_bank_0.01.pt",
                                           "l_features/avenue/32_head/temporal_memory_bank_0.01.pt",
                                           "g_features/avenue/32/highlevel_memory_bank_0.01.pt"]
    assert paths("--temporal_pooling=max", "--absolute_difference")[1] == \
        "l_features/avenue/32/temporal_memory_bank_0.01_maxpool_absdiff.pt"
    assert paths("--bank_order=concat_then_subsample")[0] == \
        "l_features/avenue/32/spatial_memory_bank_0.01_concatfirst.pt"
    assert paths("--normalization=clip")[2] == "g_features/avenue/32_clip/highlevel_memory_bank_0.01.pt"
    options = avenue_options("--compression=random", "--compression_seed=3", "--temporal_pooling=avg")
    assert results_name(options) == "spatial0.01_temporal0.01_highlevel0.01_random_avgpool"
    record = bank_record(TEMPORAL, options, {})
    assert (record["compression"], record["compression_seed"], record["temporal_pooling"]) == ("random", 3, "avg")
    assert "compression" not in bank_record(HIGHLEVEL, options, {})


# --- temporal pooling and differences through the pipeline (Table 4, slides) ------------------------------

def pipeline_options(**changes):
    return MethodConfig("avenue", 3, cnl_pool=2, pool_for_sm=4, power_n=1, **changes)


def stage_patches(spec, method, stage):
    """The rows of ``spec`` for motion_clip() at ``stage``, through the specs as the model cuts them."""
    if stage == "train":
        return training_patches(spec, [motion_clip()], method)
    return spec.patches(stack_items([motion_clip()])[0], method, "test")


# motion_clip's temporal rows (obj 0 t0, obj 0 t1, obj 1 t0, obj 1 t1), see tests/test_patches.py
AVG_ROWS = [[MEAN_BUMP, 1], [-MEAN_BUMP, 1], [-MEAN_BUMP, -1], [MEAN_BUMP, -1]]
MAX_ROWS = [[10, 1], [-1, 1], [-1, -1], [10, -1]]


@pytest.mark.parametrize("mode, train_rows, test_rows", [("mismatched", AVG_ROWS, MAX_ROWS),
                                                         ("avg", AVG_ROWS, AVG_ROWS),
                                                         ("max", MAX_ROWS, MAX_ROWS)])
def test_temporal_pooling_at_memorising_and_at_inference(mode, train_rows, test_rows):
    options = pipeline_options(temporal_pooling=mode)
    for stage, rows in (("train", train_rows), ("test", test_rows)):
        torch.testing.assert_close(stage_patches(TEMPORAL, options, stage), torch.tensor(rows, dtype=torch.float32))
    # scoring uses the inference pooling: distance to a zero bank, max over the rows
    temporal_scores = score_clips(TEMPORAL, [motion_clip()], torch.zeros(1, 2), options, "cpu")
    expected = math.hypot(10, 1) if test_rows is MAX_ROWS else math.hypot(MEAN_BUMP, 1)
    assert temporal_scores.tolist() == pytest.approx([expected] * 3)


def test_signed_or_absolute_differences():
    signed = stage_patches(TEMPORAL, pipeline_options(temporal_pooling="avg"), "train")
    absolute = stage_patches(TEMPORAL, pipeline_options(temporal_pooling="avg", absolute_difference=True), "train")
    torch.testing.assert_close(signed, torch.tensor(AVG_ROWS))
    torch.testing.assert_close(absolute, torch.tensor([[MEAN_BUMP, 1.0]] * 4))
    bank = torch.tensor([[MEAN_BUMP, 1.0]])
    for absolute_difference, expected in ((False, 2 * math.hypot(MEAN_BUMP, 1)), (True, 0.0)):
        options = pipeline_options(temporal_pooling="avg", absolute_difference=absolute_difference)
        scores = score_clips(TEMPORAL, [motion_clip()], bank, options, "cpu")
        assert scores.tolist() == pytest.approx([expected] * 3, abs=1e-6)
    # spatial patches do not depend on either switch
    rows = [stage_patches(SPATIAL, pipeline_options(temporal_pooling=m, absolute_difference=a), stage)
            for m in ("avg", "max") for a in (False, True) for stage in ("train", "test")]
    assert all(torch.equal(r, rows[0]) for r in rows)


# --- memorising order (Table 7) through the pipeline's bank building --------------------------------

def write_training_features(work, name, cell_values):
    """One clip of one object, c' = 1, 3 frames, 2 x 2 blocks of 14 x 14 constant in time."""
    blocks = torch.tensor(cell_values, dtype=torch.float32).view(2, 2)
    lf = blocks.repeat_interleave(14, 0).repeat_interleave(14, 1).expand(1, 1, 3, 28, 28).numpy()
    write_objects(work.local_features(1, "train", name), {clip_key(0): lf})
    write_objects(work.global_features(1, "train", name), {clip_key(0): np.ones((1, 4, 3), np.float32)})


@pytest.mark.parametrize("order, expected", [("subsample_then_concat", [0, 10, 3, 100]),
                                             ("concat_then_subsample", [0, 100, 10, 4])])
def test_memorising_order(tmp_path, order, expected):
    # spatial rows (p = 14: a 2 x 2 grid; time mean + max = 2 x the value): video A 0 10 4 6, video B 3 -1 8 100.
    # Per video, 2 of 4: A from 0 -> 10; B from 3 -> 100. All 8 together, 4: 0 -> 100 -> 10 -> 4
    # (4 and 6 both lie 4 from the chosen set; the lower index wins).
    work = WorkDir(tmp_path, "avenue")
    write_training_features(work, "A", [0, 5, 2, 3])
    write_training_features(work, "B", [1.5, -0.5, 4, 50])
    run = make_run(tmp_path, consecutive=3, cnl_pool=1, pool_for_sm=14, bank_order=order,
                   ratios=dict.fromkeys(("spatial", "temporal", "highlevel"), 0.5))
    options = run.method
    videos = [SimpleNamespace(name="A"), SimpleNamespace(name="B")]
    model = VideoPatchCore(options).fit(training_features(run, videos, {}))
    model.save_bank_files(work, {})
    assert model.banks["spatial"][:, 0].tolist() == expected
    saved = bank_path(work, SPATIAL, options)
    assert saved.name == ("spatial_memory_bank_0.5.pt" if order == "subsample_then_concat"
                          else "spatial_memory_bank_0.5_concatfirst.pt")
    assert torch.load(saved)[:, 0].tolist() == expected
    assert read_sidecar_record(saved)["bank_order"] == order
