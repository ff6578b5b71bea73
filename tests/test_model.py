"""The method as one object: a bank added through its spec alone, a model file read back in a fresh
process, one video scored from Python without a dataset layout."""
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from extra.errors import VPCError
from extra.evaluation import curves
from extra.evaluation.fusion import FusionWeights, fused_per_video
from extra.evaluation.harness import evaluate
from extra.evaluation.protocol import VIDEOPATCHCORE
from extra.evaluation.results import format_results
from extra.evaluation.scores import make_video_scores
from extra.make_demo import make_demo
from Memorization.banks.specs import PUBLISHED, BankSpec
from Memorization.footage.clips import video_features
from Memorization.model import MODEL_VERSION, VideoPatchCore
from Memorization.options import MethodConfig
from Memorization.paper import plots
from tests.helpers import small_random_checkpoint, synthetic_features

REPO = Path(__file__).resolve().parent.parent
D = 3
C = 8
# A fourth bank, defined here and nowhere else: per object, the mean absolute frame difference of
# each channel (one row of c' values per object).
ENERGY = BankSpec("energy", "local",
                  patches=lambda lf, method, stage: (lf[:, :, 1:] - lf[:, :, :-1]).abs().mean(dim=(2, 3, 4)),
                  rows_per_item=lambda method, side: 1, title="motion energy", colour="tab:purple")
METHOD = MethodConfig("avenue", D, C, power_n=2,
                      ratios={"spatial": 0.5, "temporal": 1.0, "highlevel": 0.5, "energy": 1.0})


# A label-free calibration as Memorization.calibration writes one (values by hand).
CALIBRATION = {"weights": {"a1": 0.5, "a2": 0.5, "b1": 0.7, "b2": 0.3, "sigma": 1}, "false_alarm_rate": 0.01,
               "normalisation": {b: {"low": 0.0, "high": 2.0} for b in ("spatial", "temporal", "highlevel", "energy")},
               "threshold": 0.4}


def synthetic_video(seed, n_clips=4):
    return synthetic_features(seed, n_clips, C, D)


def test_a_fourth_bank_through_its_spec_alone():
    train = [synthetic_video(1), synthetic_video(2)]
    model = VideoPatchCore(METHOD, (*PUBLISHED, ENERGY)).fit(train, device="cpu")
    # ratio 1 keeps every row: 2 videos x (0 + 1 + 2 + 0) objects, one row each
    assert model.banks["energy"].shape == (6, C)
    seen = model.score_banks(train[0], device="cpu")
    # a training video lies in the energy bank: distance 0 wherever a clip has objects (and 0 without)
    assert seen["energy"].tolist() == [0.0] * (4 * D)
    tests = [synthetic_video(3), synthetic_video(4)]
    per_bank = {name: [] for name in ("spatial", "temporal", "highlevel", "energy")}
    for features in tests:
        for name, frames in model.score_banks(features, device="cpu").items():
            per_bank[name].append(frames)
    assert all(len(frames) == 4 * D for frames in per_bank["energy"])
    # the clip without objects scores 0, the others the max over their objects' distances, squared
    energy = per_bank["energy"][0].reshape(4, D)[:, 0]
    assert energy[0] == 0 and (energy[1:3] > 0).all()
    labels = [np.repeat([0, 1, 1, 0], D), np.repeat([0, 0, 1, 0], D)]
    scores = make_video_scores(per_bank, labels, model.streams, ["01", "02"])
    results = evaluate(scores, VIDEOPATCHCORE, FusionWeights.chosen(0.5, 0.5, 0))
    assert 0 <= results["protocol"]["energy_only"]["auroc"] <= 1
    assert set(results["fixed"]["streams"]) == {"spatial", "temporal", "local", "highlevel", "energy", "total"}
    report = format_results(results)
    assert "| energy alone |" in report
    assert "| energy |" in report
    # its line in the figure, in its spec's colour
    lines = curves.score_lines(scores, fused_per_video(scores, FusionWeights.chosen(0.5, 0.5, 0)), 0)
    drawn = curves.plot_video_scores("01", lines, labels[0], "avenue", {}, styles=plots.bank_styles(model.specs)).axes[0].get_lines()
    assert ("motion energy", "tab:purple") in [(line.get_label(), line.get_color()) for line in drawn]


def test_model_file_round_trip_and_fresh_process(tmp_path):
    model = VideoPatchCore(METHOD, (*PUBLISHED, ENERGY), backbone={"backbone": "toy", "random_weights": True},
                           calibration=CALIBRATION)
    model.fit([synthetic_video(1), synthetic_video(2)], device="cpu")
    path = model.save(tmp_path / "toy.vpc")
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(VPCError, match="holds a memory bank 'energy' that no bank definition describes"):
        VideoPatchCore.load(path)
    loaded = VideoPatchCore.load(path, specs=(*PUBLISHED, ENERGY))
    assert loaded.method == METHOD and loaded.backbone == model.backbone and loaded.calibration == model.calibration
    assert all(torch.equal(loaded.banks[name], model.banks[name]) for name in model.banks)

    test = synthetic_video(3)
    torch.save(test.clips, tmp_path / "features.pt")
    expected = model.score(test, device="cpu")
    script = f"""
import sys, numpy as np, torch
sys.path.insert(0, {str(REPO)!r})
from Memorization.banks.specs import PUBLISHED
from Memorization.model import VideoFeatures, VideoPatchCore
from tests.test_model import ENERGY
model = VideoPatchCore.load({str(path)!r}, specs=(*PUBLISHED, ENERGY))
score = model.score(VideoFeatures(torch.load({str(tmp_path / 'features.pt')!r})), device="cpu")
np.savez({str(tmp_path / 'scores.npz')!r}, **{{f"bank_{{k}}": v for k, v in score.banks.items()}},
         **{{f"fused_{{k}}": v for k, v in score.fused.items()}}, alarms=score.alarms)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "scores.npz") as again:
        for name, frames in expected.banks.items():
            assert np.array_equal(again[f"bank_{name}"], frames)
        for name, frames in expected.fused.items():
            assert np.array_equal(again[f"fused_{name}"], frames)
        assert np.array_equal(again["alarms"], expected.alarms)
    assert set(expected.fused) == {"spatial", "temporal", "local", "highlevel", "energy", "total"}
    # calibrated: the total is 0.7 x the smoothed local plus 0.3 x the smoothed global, no min-max
    np.testing.assert_array_equal(expected.alarms, expected.fused["total"] > 0.4)
    assert expected.fused["total"].max() != 1.0


def test_damaged_or_foreign_model_files_are_refused_in_one_line(tmp_path):
    from safetensors.torch import save_file

    path = VideoPatchCore(METHOD).fit([synthetic_video(1)], device="cpu").save(tmp_path / "m.vpc")
    cut = tmp_path / "cut.vpc"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    other = tmp_path / "other.vpc"
    save_file({"bank.spatial": torch.zeros(2, 2)}, str(other), metadata={"format": "videopatchcore", "version": "0"})
    foreign = tmp_path / "foreign.vpc"
    save_file({"x": torch.zeros(1)}, str(foreign))
    cases = {cut: "is not a readable model file", tmp_path / "absent.vpc": "model file not found",
             other: f"another version of VideoPatchCore \\(model format 0, this one reads {MODEL_VERSION}\\)",
             foreign: "is not a VideoPatchCore model file"}
    for bad, message in cases.items():
        with pytest.raises(VPCError, match=message) as error:
            VideoPatchCore.load(bad)
        assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """A generated dataset in the Avenue layout, as video files, and a small random encoder."""
    root = tmp_path_factory.mktemp("footage")
    data = make_demo(root / "data", "avenue", seed=2, n_train=2, n_test=1, n_frames=12, width=160, height=96,
                     as_video_files=True)
    return data, small_random_checkpoint(root / "small.pt")


def test_one_video_scored_from_python_without_a_dataset(footage, tmp_path):
    data, weights = footage
    method = MethodConfig("avenue", D, 32, power_n=4, ratios=dict.fromkeys(("spatial", "temporal", "highlevel"), 1.0),
                          backbone=str(weights))
    fitting = VideoPatchCore(method)
    train = [video_features(path, fitting, detector="motion", device="cpu")
             for path in sorted((data / "training" / "frames").iterdir())]
    from Memorization.encoders.loader import model_backbone

    fitting.backbone = model_backbone(fitting, "cpu").identity()
    fitting.fit(train, device="cpu").save(tmp_path / "avenue.vpc")

    # what README shows: a model file, a video file, per-frame scores
    model = VideoPatchCore.load(tmp_path / "avenue.vpc")
    video = sorted((data / "testing" / "frames").iterdir())[0]
    score = model.score(video_features(video, model, detector="motion", device="cpu"), device="cpu")
    assert set(score.banks) == {"spatial", "temporal", "highlevel"}
    assert all(frames.shape == (12,) for frames in score.banks.values())      # 4 clips of 3 frames
    assert score.fused["total"].shape == (12,) and 0 <= score.fused["total"].min() <= score.fused["total"].max() <= 1

    other = small_random_checkpoint(tmp_path / "other.pt")
    with torch.no_grad():
        state = torch.load(other)
        state["visual.conv1.weight"] += 1
        torch.save(state, other)
    model.method = replace(model.method, backbone=str(other))
    with pytest.raises(VPCError, match=r"the model's memory banks were made with .* none found: .*other\.pt \(other "
                                       r"weights\).*pass that weights file with --clip_weights$"):
        video_features(video, model, detector="motion", device="cpu")
    with pytest.raises(VPCError, match="video not found"):
        video_features(tmp_path / "absent.mp4", model, detector="motion")


def test_the_python_route_scores_as_the_two_stages_do(footage, tmp_path):
    """Detection, features and scores of one video in memory equal the stages' files, to the bit."""
    from Memorization.run import main as memorization_main
    from ObjectDetection.run import main as detection_main

    data, weights = footage
    common = [f"--data_root={data.parent}", f"--work_dir={tmp_path}", "--dataset=avenue", f"--consecutive={D}"]
    assert detection_main(common + ["--detector=motion"]) == 0
    assert memorization_main(common + [f"--clip_weights={weights}", "--spatial_f_coreset=0.5"]) == 0
    (model_file,) = (tmp_path / "models" / "avenue").glob("*.vpc")
    model = VideoPatchCore.load(model_file)
    assert model.backbone["weights_sha256"] and model.method.ratios["spatial"] == 0.5
    video = sorted((data / "testing" / "frames").iterdir())[0]
    score = model.score(video_features(video, model, detector="motion", device="cpu"), device="cpu")
    (results,) = (tmp_path / "results" / "avenue").glob("*/*/scores.npz")
    with np.load(results) as saved:
        first = saved["lengths"][0]
        for bank, frames in score.banks.items():
            assert np.array_equal(saved[bank][:first], frames)
