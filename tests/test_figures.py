"""Memorization/plots.py (and its command, Memorization/figures.py): the pure helpers on hand
values, and every figure drawn from a tiny run.

The run's artifacts are made without a backbone: object batches with their boxes, test features
and memory banks are written by hand (random numbers of the stage's shapes and records, marked
random_weights), then Memorization/run.py scores them with --save_feature=False
--save_memory=False, which writes the results folder exactly as a real run does.
"""
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from extra.datasets import list_videos
from extra.errors import VPCError
from extra.evaluation import curves
from extra.evaluation.fusion import FusionWeights, fused_per_video
from extra.evaluation.scores import VideoScores
from extra.make_demo import avenue_mat_bytes, make_demo
from extra.store import empty_clip, open_clip_file, save_tensor, write_clip_file
from extra.workdir import WorkDir
from Memorization.banks.specs import HIGHLEVEL, PUBLISHED, SPATIAL, STREAMS, TEMPORAL, bank_path, bank_record
from Memorization.cli import build_parser, resolve_run
from Memorization.features import feature_record
from Memorization.paper import plots
from Memorization.run import main as run_stage
from ObjectDetection.objects import object_batches_writer

REPO = Path(__file__).resolve().parent.parent
D = 4
C = 32            # avenue's c'
RATIOS = ["--spatial_f_coreset=1", "--temporal_f_coreset=1", "--highlevel_f_coreset=0.5"]
RUN_NAME = "spatial1.0_temporal1.0_highlevel0.5"      # the results folder of RATIOS
BACKBONE_FIELDS = {"backbone": "RN101", "random_weights": True}


def box(k):
    return [16.0 * k, 8.0 * k, 16.0 * k + 32, 8.0 * k + 32, 0.9, 0.0]


def resolve(flags):
    return resolve_run(build_parser("figures test").parse_args(flags))


def write_test_artifacts(run):
    """Clip c of test video i holds (c + i + 1) % 3 objects at box(0), box(1); their features are
    seeded noise shifted by c, so later clips lie farther from the N(0, 1) memory banks."""
    rng = np.random.default_rng(0)
    method = run.method
    work = WorkDir(run.context.work_dir, "avenue")
    local, glob = STREAMS["local"], STREAMS["global"]
    for video in list_videos(run.context.settings, run.context.data_root, "test", D):
        n_clips = video.n_clips(D)
        with object_batches_writer(work.object_batches("test", video.name), {"dataset": "avenue", "consecutive": D},
                                   n_clips) as add_objects, \
                write_clip_file(local.path(work, method, "test", video.name),
                                feature_record(local, method, BACKBONE_FIELDS), n_clips) as local_file, \
                write_clip_file(glob.path(work, method, "test", video.name),
                                feature_record(glob, method, BACKBONE_FIELDS), n_clips) as global_file:
            for clip in range(n_clips):
                n = (clip + video.index + 1) % 3
                add_objects(clip, np.zeros((n, 3, D, 64, 64), np.float32) if n else empty_clip(),
                            np.array([box(k) for k in range(n)]).reshape(n, 6))
                lf = rng.normal(size=(n, C, D, 28, 28)).astype(np.float32) + clip
                local_file.add(clip, lf if n else empty_clip())
                global_file.add(clip, rng.normal(size=(1, 1536, D)).astype(np.float32))
    sizes = {"spatial": (50, C), "temporal": (20, C), "highlevel": (12, 1536)}
    for spec in PUBLISHED:
        bank = torch.from_numpy(rng.normal(size=sizes[spec.name]).astype(np.float32))
        save_tensor(bank, bank_path(work, spec, method), bank_record(spec, method, BACKBONE_FIELDS))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The tiny run: its root folder, its flags and its MemorizationRun."""
    root = tmp_path_factory.mktemp("figures")
    make_demo(root / "data", "avenue", seed=2, n_train=1, n_test=2, n_frames=13, width=96, height=64)
    # labels of our own, so the clips' classes below do not follow the generator's planning:
    # video 01 anomalous from frame 5 (1-based) on, video 02 throughout
    (root / "data" / "avenue" / "avenue.mat").write_bytes(avenue_mat_bytes([np.array([[5], [13]]),
                                                                            np.array([[1], [13]])]))
    args = [f"--data_root={root / 'data'}", f"--work_dir={root / 'work'}", "--dataset=avenue",
            f"--consecutive={D}", *RATIOS]
    run = resolve(args)
    write_test_artifacts(run)
    assert run_stage(args + ["--save_feature=False", "--save_memory=False"]) == 0
    return root, args, run


def assert_png(path, width, height):
    image = cv2.imread(str(path))
    assert image is not None, path
    assert image.shape == (height, width, 3)
    assert image.var() > 0 and len(np.unique(image.reshape(-1, 3), axis=0)) > 10


# --- pure helpers ---------------------------------------------------------------------------------

def test_shaded_spans_cover_the_anomalous_frames():
    assert curves.shaded_spans(np.array([0, 1, 1, 0, 0, 1])) == [(0.5, 2.5), (4.5, 5.5)]
    assert curves.shaded_spans(np.array([1, 0])) == [(-0.5, 0.5)]
    assert curves.shaded_spans(np.zeros(4)) == []


def test_clip_values_average_each_clip():
    np.testing.assert_array_equal(plots.clip_values([1, 3, 2, 2, 0, 6], 2), [2, 2, 3])


def test_choose_clips_top_then_normal_spread():
    scores = [0.9, 0.1, 0.5, 0.7, 0.3, 0.2]
    has_objects = [1, 1, 0, 1, 1, 1]          # clip 2 has none: never drawn
    normal = np.array([0, 1, 1, 1, 1, 1], bool)
    # ranked with objects: 0, 3, 4, 5, 1; the normal rest ascending: 1 (0.1), 5 (0.2), 4 (0.3)
    assert plots.choose_clips(scores, has_objects, normal, 2, 2) == [0, 3, 1, 4]
    assert plots.choose_clips(scores, has_objects, normal, 2, 3) == [0, 3, 1, 5, 4]
    assert plots.choose_clips(scores, has_objects, normal, 2, 0) == [0, 3]
    assert plots.choose_clips(scores, has_objects, normal, 0, 1) == [1]
    assert plots.choose_clips(scores, has_objects, normal, 9, 2) == [0, 3, 4, 5, 1]


def test_pick_clips_fills_the_row_budget():
    rng = np.random.default_rng(0)
    rows = np.array([0, 5, 5, 5])
    for limit, count in ((5, 1), (8, 2), (10, 2), (11, 3), (100, 3), (0, 0)):
        picked = plots.pick_clips(rows, limit, rng)
        assert len(picked) == count and 0 not in picked and list(picked) == sorted(picked)


def test_sample_test_clips_gives_anomalous_clips_half_the_budget():
    rng = np.random.default_rng(0)
    rows, anomalous = [10, 10, 10, 10], [True, False, False, False]
    picked = plots.sample_test_clips(rows, anomalous, 20, rng)
    assert len(picked) == 2 and picked[0] == 0
    # the anomalous clip has only 10 rows: normal clips fill the other 30
    np.testing.assert_array_equal(plots.sample_test_clips(rows, anomalous, 40, rng), [0, 1, 2, 3])


def test_subsample_and_perplexity():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(plots.subsample(5, 10, rng), np.arange(5))
    kept = plots.subsample(10, 3, rng)
    assert len(set(kept)) == 3 and list(kept) == sorted(kept) and kept.max() < 10
    assert (plots.tsne_perplexity(1000), plots.tsne_perplexity(10), plots.tsne_perplexity(2)) == (30.0, 3.0, 1.0)


def test_random_weights_note_in_the_title():
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    streams = {spec.name: np.linspace(0, 1, 8) for spec in PUBLISHED}
    streams["total"] = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.1, 0.0, 0.1])
    marked = curves.plot_video_scores("01", streams, labels, "avenue", {"random_weights": True})
    assert curves.RANDOM_NOTE in marked._suptitle.get_text()
    plain = curves.plot_video_scores("01", streams, labels, "avenue", {"random_weights": False})
    assert curves.RANDOM_NOTE not in plain._suptitle.get_text()
    assert "AUROC of the total score 100.0%" in plain._suptitle.get_text()
    # a rising line: each anomalous frame beats 2 of the 6 normal ones
    streams["total"] = np.linspace(0, 1, 8)
    rising = curves.plot_video_scores("01", streams, labels, "avenue", {})
    assert rising._suptitle.get_text() == "avenue, test video 01: AUROC of the total score 33.3%"


def test_a_fourth_bank_gets_its_own_score_line():
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    rng = np.random.default_rng(0)
    streams = {"spatial": "local", "temporal": "local", "highlevel": "global", "flow": "local"}
    scores = VideoScores(["01"], {bank: [rng.random(8)] for bank in streams}, streams, [labels])
    fused = fused_per_video(scores, FusionWeights.chosen(0.5, 0.5, 0))
    flow = replace(SPATIAL, name="flow", title="optical flow", colour="tab:purple")
    lines = curves.score_lines(scores, fused, 0)
    drawn = curves.plot_video_scores("01", lines, labels, "avenue", {}, styles=plots.bank_styles((*PUBLISHED, flow))).axes[0].get_lines()
    assert [line.get_label() for line in drawn] == ["spatial", "temporal", "global (high-level)", "optical flow",
                                                    "total (local+global)"]
    assert [line.get_color() for line in drawn] == ["tab:blue", "tab:orange", "tab:green", "tab:purple", "black"]
    np.testing.assert_array_equal(drawn[3].get_ydata(), fused["flow"][0])
    # a bank no spec describes still gets its line, named after it, in the fallback colour
    unnamed = curves.plot_video_scores("01", lines, labels, "avenue", {}).axes[0].get_lines()
    assert (unnamed[3].get_label(), unnamed[3].get_color()) == ("flow", curves.FALLBACK_COLOUR)


# --- figures from a run ---------------------------------------------------------------------------

def test_score_figures(made):
    root, _, run = made
    written = plots.make_figures(run, which=("scores",))
    folder = root / "work" / "figures" / "avenue" / str(C) / RUN_NAME / "scores"
    assert written == [folder / "01.png", folder / "02.png"]
    for path in written:
        assert_png(path, 1000, 360)


def test_object_figures_and_their_scores(made):
    root, _, run = made
    folder = root / "work" / "figures" / "avenue" / str(C) / RUN_NAME / "objects"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "07_01_clip0009.png").write_bytes(b"from an earlier selection")
    written = plots.make_figures(run, which=("objects",), n_top=2, n_normal=1)
    assert sorted(folder.iterdir()) == sorted(written)
    # clips with objects: 01/0 (normal, the lowest shift), 01/1, 02/0, 02/2 (all anomalous); the
    # top two by local score are the clip 2 and a clip 1, then the one normal clip
    assert len(written) == 3 and written[0] == folder / "01_02_clip0002.png"
    assert written[1] == folder / "02_01_clip0001.png" and written[2] == folder / "03_01_clip0000.png"
    for path in written:
        assert_png(path, 1100, 440)
    # per-object scores are the stage's: their max is the saved clip score
    work = WorkDir(root / "work", "avenue")
    saved = plots.load_run(work, run.method)
    banks = plots.load_banks(work, run.method, saved.metadata)
    with open_clip_file(STREAMS["local"].path(work, run.method, "test", "01"), STREAMS["local"].kind) as opened:
        lf = torch.from_numpy(opened.clip(1))
    per_bank = plots.object_scores(lf, banks, run.method, (SPATIAL, TEMPORAL))
    spatial, temporal = per_bank["spatial"], per_bank["temporal"]
    assert spatial.shape == temporal.shape == (2,)
    assert spatial.max() == pytest.approx(saved.scores.banks["spatial"][0][1 * D], rel=1e-5)
    assert temporal.max() == pytest.approx(saved.scores.banks["temporal"][0][1 * D], rel=1e-5)
    assert spatial.min() < spatial.max()


def test_tsne_figures(made):
    _, _, run = made
    written = plots.make_figures(run, which=("tsne",), tsne_points=60)
    assert [p.name for p in written] == ["tsne_spatial.png", "tsne_temporal.png", "tsne_highlevel.png"]
    for path in written:
        assert_png(path, 700, 640)


def test_tsne_points_mix_bank_items_with_normal_and_anomalous_patches(made):
    root, _, run = made
    work, method = WorkDir(root / "work", "avenue"), run.method
    saved = plots.load_run(work, method)
    banks = plots.load_banks(work, method, saved.metadata)
    clip_anomalous = np.concatenate([plots.clip_values(y, D) > 0 for y in saved.scores.labels])
    np.testing.assert_array_equal(clip_anomalous, [False, True, True, True, True, True])
    paths = [STREAMS["local"].path(work, method, "test", name) for name in saved.scores.names]
    data = plots.tsne_input(TEMPORAL, banks["temporal"], paths, clip_anomalous, method, 30)
    # 15 of the 20 bank items; test rows: 3 per object. Anomalous clips (6, 6 and 3 rows) are drawn
    # until they reach half the 15-row budget (9 or 12 rows), the one normal clip 01/0 gives its 3
    assert data.n_bank == 15 and data.bank_size == 20 and len(data.points) in (15 + 12, 15 + 15)
    assert not data.anomalous[:15].any() and (~data.anomalous[15:]).sum() == 3
    bank_rows = banks["temporal"].numpy()
    assert all((bank_rows == row).all(axis=1).any() for row in data.points[:15])
    global_paths = [STREAMS["global"].path(work, method, "test", name) for name in saved.scores.names]
    highlevel = plots.tsne_input(HIGHLEVEL, banks["highlevel"], global_paths, clip_anomalous, method, 1000)
    # every item (12) and every test row (6 clips x d frames), the normal clip's d rows unflagged
    assert (highlevel.n_bank, len(highlevel.points), (~highlevel.anomalous[12:]).sum()) == (12, 12 + 6 * D, D)


def test_missing_artifacts_name_the_command_that_makes_them(made, tmp_path):
    root, _, _ = made
    empty = resolve([f"--data_root={root / 'data'}", f"--work_dir={tmp_path}", f"--consecutive={D}", *RATIOS])
    with pytest.raises(VPCError, match=r"no saved scores: .*results.json not found|no saved scores: .*scores.npz "
                                       r"not found; run python Memorization/run.py --dataset=avenue"):
        plots.make_figures(empty, which=("scores",))
    shutil.copytree(root / "work" / "results", tmp_path / "results")
    with pytest.raises(VPCError, match=r"local features not found: .*test/01_video_features.h5; "
                                       r"run Memorization/run.py with the same flags"):
        plots.make_figures(empty, which=("objects",))
    shutil.copytree(root / "work" / "l_features" / "avenue" / "32" / "visual",
                    tmp_path / "l_features" / "avenue" / "32" / "visual")
    with pytest.raises(VPCError, match=r"spatial memory bank not found: .*spatial_memory_bank_1.0.pt; run "
                                       r"Memorization/run.py with the same flags"):
        plots.make_figures(empty, which=("tsne",))
    other_d = resolve([f"--work_dir={root / 'work'}", "--consecutive=5", *RATIOS])
    with pytest.raises(VPCError, match="made with --consecutive 4: pass --consecutive=4"):
        plots.make_figures(other_d, which=("scores",))


def test_command_lines(made, tmp_path):
    root, args, _ = made
    drawn = subprocess.run([sys.executable, "figures.py", *args, "--figures", "scores"], cwd=REPO / "Memorization",
                           capture_output=True, text=True)
    assert drawn.returncode == 0, drawn.stderr
    assert f"2 figures in {root / 'work' / 'figures' / 'avenue'}" in drawn.stdout
    missing = subprocess.run([sys.executable, "Memorization/figures.py", "--dataset=avenue", f"--work_dir={tmp_path}",
                              "--figures", "scores"], cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no saved scores: ") and "Traceback" not in missing.stderr
