"""Provenance of every memory bank row (Memorization.banks.origins): which training video row each
bank row is, in both memorising orders and with the per-video coresets drawn apart (the Ray path); its
clip, object, key frame and box; kept in the model file (old files still load); and a clip explained
by its nearest bank rows (Memorization.explain)."""
import json
from dataclasses import replace

from pathlib import Path

import pytest
import torch

from extra.errors import VPCError, run_main
from extra.make_demo import make_demo
from Memorization.banks.coreset import Coreset, build_memory_bank
from Memorization.banks.origins import ORIGIN_COLUMNS, Provenance, VideoOrigin, bank_items, row_items
from Memorization.banks.specs import BankSpec
from Memorization.explain import explain_clip
from Memorization.model import VideoFeatures, VideoPatchCore, video_coresets
from Memorization.options import MethodConfig
from tests.helpers import normal_footage, small_random_checkpoint, synthetic_features

D = 3
C = 8
METHOD = MethodConfig("avenue", D, C, power_n=2, ratios={"spatial": 0.5, "temporal": 0.5, "highlevel": 0.5})


def synthetic_video(seed, n_clips=5):
    return synthetic_features(seed, n_clips, C, D)


def origin_of(number, n_clips=5):
    """A VideoOrigin by hand: key frame 1 + 3 c + 1; object k of clip c at (10 c + k, 20, 10 c + k + 8.9, 30.5)."""
    boxes = [[[10.0 * c + k, 20.0, 10.0 * c + k + 8.9, 30.5, 0.9, 0.0] for k in range(c % 3)] for c in range(n_clips)]
    return VideoOrigin(f"video {number}", f"/data/train/{number:02d}", [1 + D * c + 1 for c in range(n_clips)], boxes)


@pytest.mark.parametrize("order", ["subsample_then_concat", "concat_then_subsample"])
@pytest.mark.parametrize("ratio", [0.5, 1.0, 3.0])
def test_bank_rows_say_which_video_row_they_are(order, ratio):
    generator = torch.Generator().manual_seed(0)
    videos = [torch.randn(6, 3, generator=generator), torch.zeros(0, 3), torch.randn(5, 3, generator=generator)]
    coreset = Coreset(ratio, order)
    bank, rows = build_memory_bank(videos, coreset, device="cpu", progress=False, with_rows=True)
    assert torch.equal(bank, build_memory_bank(videos, coreset, device="cpu", progress=False))   # the same bank
    assert rows.dtype == torch.long and rows.shape == (len(bank), 2)
    assert torch.equal(bank, torch.stack([videos[v][r] for v, r in rows.tolist()]))
    assert 1 not in rows[:, 0].tolist()                        # the video without patches gives none
    if ratio >= 1:
        assert rows.tolist() == [[0, r] for r in range(6)] + [[2, r] for r in range(5)]
    else:
        assert len(bank) == (6 // 2 + 5 // 2 if order == "subsample_then_concat" else 11 // 2)


def test_rows_become_clips_and_objects():
    # clips of 0, 2 and 1 objects, 3 rows each: rows 0-2 object 0 of clip 1, 3-5 its object 1, 6-8 clip 2's
    assert row_items([0, 4, 5, 8], 9, [0, 2, 1], whole_clip=False).tolist() == [[1, 0], [1, 1], [1, 1], [2, 0]]
    # a global stream: one item per clip, d = 3 rows each; the object is -1
    assert row_items([0, 2, 3, 7], 9, [1, 1, 1], whole_clip=True).tolist() == [[0, -1], [0, -1], [1, -1], [2, -1]]
    rows = torch.tensor([[2, 8], [0, 0], [2, 3]])
    sizes, counts = [3, 0, 9], [[1], [], [0, 2, 1]]
    assert bank_items(rows, sizes, counts, whole_clip=False).tolist() == [[2, 2, 0], [0, 0, 0], [2, 1, 1]]


def test_origins_give_key_frames_and_integer_boxes():
    items = {"spatial": torch.tensor([[1, 2, 1], [0, 1, 0]]), "highlevel": torch.tensor([[1, 3, -1]])}
    origins = [origin_of(0), replace(origin_of(1), boxes=[None] * 5)]       # video 1's batches kept no boxes
    provenance = Provenance.of(items, origins)
    assert provenance.rows["spatial"].dtype == torch.int32
    assert provenance.rows["spatial"].tolist() == [[1, 2, 1, 8, -1, -1, -1, -1], [0, 1, 0, 5, 10, 20, 18, 30]]
    assert provenance.origin("spatial", 1) == {"video": "video 0", "source": "/data/train/00", "frame": 5,
                                               "clip": 1, "object": 0, "box": [10, 20, 18, 30]}
    assert provenance.origin("spatial", 0)["box"] is None
    assert provenance.origin("highlevel", 0) == {"video": "video 1", "source": "/data/train/01", "frame": 11,
                                                 "clip": 3, "object": -1, "box": None}
    assert provenance.origin("temporal", 0) is None                 # a bank it does not cover
    assert provenance.videos == [{"name": "video 0", "source": "/data/train/00"},
                                 {"name": "video 1", "source": "/data/train/01"}]


def fitted(method=METHOD, n_videos=3):
    videos = [synthetic_video(seed) for seed in range(n_videos)]
    origins = [origin_of(number) for number in range(n_videos)]
    return VideoPatchCore(method).fit(videos, device="cpu", origins=origins), videos


@pytest.mark.parametrize("order", ["subsample_then_concat", "concat_then_subsample"])
def test_every_bank_row_is_a_row_of_the_item_it_names(order):
    model, videos = fitted(replace(METHOD, bank_order=order))
    for spec in model.specs:
        table = model.provenance.rows[spec.name]
        assert table.shape == (len(model.banks[spec.name]), len(ORIGIN_COLUMNS))
        for bank_row, (video, clip, obj, frame, *box) in zip(model.banks[spec.name], table.tolist()):
            lf_or_gf = videos[video].clips[spec.stream][clip]
            item = lf_or_gf if obj == -1 else lf_or_gf[obj:obj + 1]
            assert (spec.patches(item, METHOD, "train") == bank_row).all(dim=1).any()
            assert frame == 1 + D * clip + 1
            assert box == ([-1] * 4 if obj == -1 else [10 * clip + obj, 20, 10 * clip + obj + 8, 30])
            assert (obj == -1) == (spec.stream == "global")


def test_coresets_drawn_apart_give_the_same_provenance():
    model, videos = fitted()
    per_video = [video_coresets(features, model.specs, METHOD, device="cpu") for features in videos]
    apart = VideoPatchCore(METHOD).fit_coresets(per_video, [origin_of(number) for number in range(3)])
    for spec in model.specs:
        assert torch.equal(apart.banks[spec.name], model.banks[spec.name])
        assert torch.equal(apart.provenance.rows[spec.name], model.provenance.rows[spec.name])
    assert apart.provenance.videos == model.provenance.videos
    assert VideoPatchCore(METHOD).fit_coresets(per_video).provenance is None


def test_provenance_round_trips_through_the_model_file(tmp_path):
    model, _ = fitted()
    model.save(tmp_path / "m.vpc")
    loaded = VideoPatchCore.load(tmp_path / "m.vpc")
    assert loaded.provenance.videos == model.provenance.videos
    for spec in model.specs:
        assert torch.equal(loaded.provenance.rows[spec.name], model.provenance.rows[spec.name])
        assert loaded.provenance.origin(spec.name, 2) == model.provenance.origin(spec.name, 2)
    # a model without provenance (as every file before it) saves and loads without it
    bare = VideoPatchCore(METHOD).fit([synthetic_video(0)], device="cpu")
    assert bare.provenance is None
    bare.save(tmp_path / "bare.vpc")
    assert VideoPatchCore.load(tmp_path / "bare.vpc").provenance is None


def test_a_provenance_that_does_not_match_its_bank_is_refused(tmp_path):
    model, _ = fitted()
    model.provenance.rows["spatial"] = model.provenance.rows["spatial"][1:]
    model.save(tmp_path / "m.vpc")
    with pytest.raises(VPCError, match=r"m.vpc is damaged \(the provenance of its spatial memory bank does not"):
        VideoPatchCore.load(tmp_path / "m.vpc")


def test_the_model_file_says_what_the_columns_are(tmp_path):
    from safetensors import safe_open

    model, _ = fitted()
    model.save(tmp_path / "m.vpc")
    with safe_open(str(tmp_path / "m.vpc"), framework="pt") as opened:
        record = json.loads(opened.metadata()["provenance"])
        assert record["columns"] == ["video", "clip", "object", "frame", "x1", "y1", "x2", "y2"]
        assert opened.get_tensor("provenance.temporal").dtype == torch.int32


# Two banks whose nearest rows are known by construction: an object's one row is its mean feature,
# a clip's one row is its mean global feature.
MEAN = BankSpec("mean", "local", patches=lambda lf, method, stage: lf.mean(dim=(2, 3, 4)),
                rows_per_item=lambda method, side: 1)
CLIP_MEAN = BankSpec("clip_mean", "global", patches=lambda gf, method, stage: gf.mean(dim=2),
                     rows_per_item=lambda method, side: 1)


def test_a_clip_is_explained_by_its_nearest_bank_rows():
    method = MethodConfig("avenue", D, 2, power_n=2, banks=("mean", "clip_mean"))
    banks = {"mean": torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]),
             "clip_mean": torch.tensor([[0.0, 0.0], [3.0, 3.0]])}
    origins = {"mean": torch.tensor([[0, 0, 0, 2, 0, 0, 8, 8], [0, 1, 1, 5, 1, 2, 9, 9], [1, 4, 0, 14, 3, 4, 7, 8]]),
               "clip_mean": torch.tensor([[1, 2, -1, 8, -1, -1, -1, -1], [0, 0, -1, 2, -1, -1, -1, -1]])}
    videos = [{"name": "a", "source": "/a.mp4"}, {"name": "b", "source": "/frames/b"}]
    model = VideoPatchCore(method, (MEAN, CLIP_MEAN), banks, provenance=Provenance(videos, origins))
    # object 0 lies on row 1 (raw 0); object 1 at (5, 7) is 2 from row 2 (raw 4); the clip at (0, 1)
    # is 1 from row 0 (raw 1)
    lf = torch.ones(2, 2, D, 4, 4)
    lf[1, 0], lf[1, 1] = 5.0, 7.0
    clip = VideoFeatures({"local": [lf], "global": [torch.tensor([[0.0], [1.0]]).expand(1, 2, D)]})
    calibration = {"normalisation": {"mean": {"low": 0.0, "high": 4.0}, "clip_mean": {"low": 0.0, "high": 0.5}}}
    explained = explain_clip(model, clip, calibration, device="cpu")
    assert explained == [
        {"bank": "clip_mean", "item": 0, "score": 2.0, "raw": 1.0, "row": 0,
         "nearest": {"video": "b", "source": "/frames/b", "frame": 8, "clip": 2, "object": -1, "box": None}},
        {"bank": "mean", "item": 1, "score": 1.0, "raw": 4.0, "row": 2,
         "nearest": {"video": "b", "source": "/frames/b", "frame": 14, "clip": 4, "object": 0, "box": [3, 4, 7, 8]}}]
    # a clip without objects has nothing to say on an object bank; without provenance no origin
    empty = VideoFeatures({"local": [torch.zeros(1)], "global": [torch.full((1, 2, D), 3.0)]})
    model.provenance = None
    assert explain_clip(model, empty, calibration, device="cpu") == [
        {"bank": "clip_mean", "item": 0, "score": 0.0, "raw": 0.0, "row": 1, "nearest": None}]
    with pytest.raises(VPCError, match="one clip per stream, got 2 local, 1 global"):
        explain_clip(model, VideoFeatures({"local": [lf, lf], "global": [clip.clips["global"][0]]}), calibration, "cpu")
    with pytest.raises(VPCError, match="no normalisation of the clip_mean bank"):
        explain_clip(model, clip, {"normalisation": {"mean": {"low": 0.0, "high": 1.0}}}, "cpu")



@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """fit.py on three normal .mp4 files (motion detector, tiny random encoder): the model and its work folder."""
    import fit

    root = tmp_path_factory.mktemp("provenance")
    _, normal = normal_footage(root, 24)
    weights = small_random_checkpoint(root / "small.pt")
    model = root / "camera.vpc"
    assert run_main(fit.main, [normal, "--out", model, "--detector", "motion", "--preset", "avenue",
                               f"--consecutive={FOOTAGE_D}", f"--clip_weights={weights}",
                               f"--work_dir={root / 'work'}"]) == 0
    return root, model


FOOTAGE_D = 4


def assert_origins_match_the_object_batches(model, work):
    """Every bank row's key frame is its clip's, and its box the one the object batches in ``work`` keep."""
    from ObjectDetection.boxes import key_frame_offset
    from ObjectDetection.objects import clip_boxes_of

    batches = {v["name"]: next(work.rglob(f"train/{v['name']}_object_batches.h5")) for v in model.provenance.videos}
    for spec in model.specs:
        for row in range(len(model.banks[spec.name])):
            origin = model.provenance.origin(spec.name, row)
            assert origin["frame"] == FOOTAGE_D * origin["clip"] + key_frame_offset(FOOTAGE_D)
            if spec.stream == "global":
                assert origin["object"] == -1 and origin["box"] is None
            else:
                boxes, = clip_boxes_of(batches[origin["video"]], [origin["clip"]])
                assert origin["box"] == [int(v) for v in boxes[origin["object"]][:4]]


def test_fit_py_records_where_every_bank_row_came_from(footage):
    root, path = footage
    model = VideoPatchCore.load(path)
    names = [f"cam {number:02d}" for number in (1, 2, 3)]
    assert model.provenance.videos == [{"name": name, "source": str(root / "normal" / f"{name}.mp4")}
                                       for name in names]
    assert_origins_match_the_object_batches(model, root / "work")


def test_a_scored_clip_is_explained(footage):
    from extra.sources import ClipReader
    from Memorization.footage.live import FootageScorer

    root, path = footage
    scorer = FootageScorer.from_file(path, raw=True)
    results = list(scorer.score(ClipReader(root / "normal" / "cam 02.mp4", FOOTAGE_D)))
    assert all(result.features is not None for result in results)
    result = max(results, key=lambda r: len(r.boxes))            # a clip with objects: every bank explains it
    explained = scorer.explain(result)
    assert [entry["score"] for entry in explained] == sorted((entry["score"] for entry in explained), reverse=True)
    assert {entry["bank"] for entry in explained} == {"spatial", "temporal", "highlevel"}
    for entry in explained:
        # the item explained is the clip's worst: its raw score is the clip's
        assert entry["raw"] == pytest.approx(float(result.banks[entry["bank"]][0]), rel=1e-6)
        assert entry["nearest"] == scorer.model.provenance.origin(entry["bank"], entry["row"])
        assert entry["nearest"]["video"] in {"cam 01", "cam 02", "cam 03"}


def run_stages(root, weights, work, *flags):
    """Both dataset stages on the demo data (motion detector, tiny random encoder), as tests/test_sharding.py."""
    from Memorization.run import main as memorization_main
    from ObjectDetection.run import main as detection_main

    common = ["--dataset=avenue", f"--data_root={root / 'data'}", f"--work_dir={work}", f"--consecutive={FOOTAGE_D}",
              *flags]
    assert run_main(detection_main, [*common, "--detector=motion"]) == 0
    assert run_main(memorization_main, [*common, f"--clip_weights={weights}", "--cnl_pool=32", "--label_free=False",
                                        "--spatial_f_coreset=0.5", "--temporal_f_coreset=0.5",
                                        "--highlevel_f_coreset=0.5"]) == 0
    model, = (work / "models" / "avenue").glob("*.vpc")
    return model


def test_dataset_runs_record_the_same_provenance_on_ray_and_keep_it_beside_the_bank_files(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    from extra.sharding import RayCluster, connect

    make_demo(tmp_path / "data", "avenue", seed=0, n_train=3, n_test=1, n_frames=24, width=192, height=108)
    weights = small_random_checkpoint(tmp_path / "tiny.pt")
    single = VideoPatchCore.load(run_stages(tmp_path, weights, tmp_path / "single"))
    frames = tmp_path / "data" / "avenue" / "training" / "frames"
    assert single.provenance.videos == [{"name": name, "source": str(frames / name)} for name in ("01", "02", "03")]
    assert_origins_match_the_object_batches(single, tmp_path / "single")
    connect(RayCluster("local", cpus=2))
    try:
        sharded = VideoPatchCore.load(run_stages(tmp_path, weights, tmp_path / "sharded", "--ray=local"))
    finally:
        ray.shutdown()
    assert sharded.provenance.videos == single.provenance.videos
    for spec in single.specs:
        assert torch.equal(sharded.banks[spec.name], single.banks[spec.name])
        assert torch.equal(sharded.provenance.rows[spec.name], single.provenance.rows[spec.name])
    # banks reused from their files: the provenance kept beside them, the same as when they were built
    model_file = next((tmp_path / "single" / "models").rglob("*.vpc"))
    model_file.unlink()
    reused = VideoPatchCore.load(run_stages(tmp_path, weights, tmp_path / "single"))
    assert reused.provenance.videos == single.provenance.videos
    for spec in single.specs:
        assert torch.equal(reused.provenance.rows[spec.name], single.provenance.rows[spec.name])
    # one bank's provenance copied over another's (it belongs to another bank: said, left out); the authors'
    # bank files keep none (the others removed): the model has none, and loads
    origins = {path.name.split("_")[0]: path for path in (tmp_path / "single").rglob("*.origins")}
    assert sorted(origins) == ["highlevel", "spatial", "temporal"]
    for suffix in ("", ".json"):
        Path(f"{origins['temporal']}{suffix}").replace(f"{origins['spatial']}{suffix}")
        Path(f"{origins['highlevel']}{suffix}").unlink()
    capsys.readouterr()
    model_file.unlink()
    assert VideoPatchCore.load(run_stages(tmp_path, weights, tmp_path / "single")).provenance is None
    assert (f"warning: {origins['spatial']} does not fit the spatial memory bank beside it: the bank's rows go "
            f"without provenance") in capsys.readouterr().err


def test_joined_provenance_keeps_the_banks_of_the_first_parts_videos():
    videos, others = [{"name": "01", "source": "/a"}], [{"name": "09", "source": "/b"}]
    spatial = torch.zeros(2, len(ORIGIN_COLUMNS), dtype=torch.int32)
    temporal = torch.ones(1, len(ORIGIN_COLUMNS), dtype=torch.int32)
    assert Provenance.joined([None, None]) is None
    parts = [None, Provenance(videos, {"spatial": spatial}), Provenance(videos, {"temporal": temporal}),
             Provenance(others, {"highlevel": temporal})]
    joined = Provenance.joined(parts)
    assert joined.videos == videos and sorted(joined.rows) == ["spatial", "temporal"]
    assert joined.rows["temporal"] is temporal
