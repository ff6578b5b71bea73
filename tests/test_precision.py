"""The encoder's precision (--precision exact|bf16|fp16): its choices and refusals, its files kept apart
from the exact ones, the fast encoder's error, and the exact one unchanged to the bit.

bfloat16 is simulated where this CPU lacks it (``native_bfloat16`` patched): emulated, it computes the same
values, only slower. Tolerance of the fast features: 2e-2 relative (root mean square of the difference
over that of the exact features; RN101 at 224 x 224 gives about 0.5 % and 0.9 % on its two taps).
"""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import pytest
import torch
from safetensors import safe_open

import Memorization.knn.exact
from extra.errors import VPCError
from extra.make_demo import make_demo
from extra.provenance import read_h5_record
from extra.workdir import WorkDir
from Memorization.banks.specs import SPATIAL, STREAMS, bank_record
from Memorization.cli import build_parser
from Memorization.encoders.clip_resnet import fold_batchnorm, model_from_state_dict
from Memorization.encoders.contract import compute_dtype, place, read_checkpoint, save_checkpoint
from Memorization.encoders.loader import model_backbone
from Memorization.encoders.registry import load_backbone
from Memorization.features import feature_record, local_features
from Memorization.model import VideoPatchCore
from Memorization.options import MethodConfig, method_record, results_name
from Memorization.run import main
from tests.helpers import small_random_checkpoint, write_fixed_box_objects

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 2e-2
D = 4


@pytest.fixture
def bfloat16_hardware(monkeypatch):
    monkeypatch.setattr(Memorization.knn.exact, "native_bfloat16", lambda: True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return small_random_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt")


def relative_rms(a, b):
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


def test_the_flag_offers_three_precisions_exact_by_default():
    parser = build_parser("test")
    assert parser.parse_args([]).precision == "exact"
    assert parser.parse_args(["--precision", "bf16"]).precision == "bf16"
    with pytest.raises(VPCError, match="--precision: invalid choice: 'fp8'"):
        parser.parse_args(["--precision", "fp8"])
    assert MethodConfig("avenue", 10, 32).precision == "exact"


def test_fp16_is_refused_on_a_cpu_in_one_line(checkpoint):
    with pytest.raises(VPCError, match="fp16 runs on CUDA only") as error:
        load_backbone(str(checkpoint), device="cpu", precision="fp16")
    assert "\n" not in str(error.value)
    with pytest.raises(VPCError, match="unknown precision 'fp8'"):
        compute_dtype("fp8", "cpu")


def test_bf16_is_refused_where_the_cpu_would_emulate_it(checkpoint, monkeypatch):
    monkeypatch.setattr(Memorization.knn.exact, "native_bfloat16", lambda: False)
    with pytest.raises(VPCError, match="bf16 would be slower than exact on this CPU: .*AVX512-BF16 or AMX"):
        load_backbone(str(checkpoint), device="cpu", precision="bf16")
    monkeypatch.setattr(Memorization.knn.exact, "native_bfloat16", lambda: True)
    assert compute_dtype("bf16", "cpu") == torch.bfloat16 and compute_dtype("exact", "cpu") is None


def test_the_command_refuses_fp16_on_a_cpu_with_exit_2(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is offered on CUDA")
    make_demo(tmp_path / "data", "avenue", seed=0, n_train=1, n_test=1, n_frames=8, width=64, height=48)
    result = subprocess.run([sys.executable, "Memorization/run.py", "--dataset=avenue",
                             f"--data_root={tmp_path / 'data'}", f"--work_dir={tmp_path / 'work'}", "--random_weights",
                             "--precision=fp16"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: --precision fp16 runs on CUDA only")


def test_exact_keeps_every_record_and_name_and_fast_gets_its_own():
    exact = MethodConfig("avenue", 10, 32, ratios=dict.fromkeys(("spatial", "temporal", "highlevel"), 0.01))
    fast = replace(exact, precision="bf16")
    fields = {"backbone": "RN101", "random_weights": True}
    assert "precision" not in method_record(exact) and method_record(fast)["precision"] == "bf16"
    assert (exact.local_folder, exact.global_folder) == ("32", "32")
    assert (fast.local_folder, fast.global_folder) == ("32_bf16", "32_bf16")
    assert replace(fast, compression="head", normalization="clip").local_folder == "32_head_bf16"
    assert replace(fast, normalization="clip").global_folder == "32_clip_bf16"
    assert results_name(exact) == "spatial0.01_temporal0.01_highlevel0.01"
    assert results_name(fast) == "spatial0.01_temporal0.01_highlevel0.01_bf16"
    assert feature_record(STREAMS["local"], exact, fields) == {"dataset": "avenue", "consecutive": 10,
                                                              "backbone": "RN101", "random_weights": True,
                                                              "cnl_pool": 32}
    assert feature_record(STREAMS["local"], fast, fields)["precision"] == "bf16"
    assert "precision" not in bank_record(SPATIAL, exact, fields)
    assert bank_record(SPATIAL, fast, fields)["precision"] == "bf16"


def test_exact_is_the_float32_folded_path_to_the_bit(checkpoint):
    default = load_backbone(str(checkpoint), device="cpu")
    again = fold_batchnorm(place(model_from_state_dict(read_checkpoint(checkpoint), source=checkpoint), "cpu"))
    assert default.precision == "exact" and default.conv1.weight.dtype == torch.float32
    crops = torch.rand(2, 3, D, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(local_features(crops, default, 32), local_features(crops, again, 32))


def test_a_bf16_encoder_stays_within_tolerance_of_the_exact_one(checkpoint, bfloat16_hardware):
    exact = load_backbone(str(checkpoint), device="cpu")
    fast = load_backbone(str(checkpoint), device="cpu", precision="bf16")
    assert fast.conv1.weight.dtype == torch.bfloat16 and fast.folded and "computing in bfloat16" in fast.description
    assert fast.identity() == exact.identity()            # the same weights: a model file's check passes
    images = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        for tap, reference in zip(fast(images), exact(images)):
            assert tap.dtype == torch.float32 and 0 < relative_rms(tap, reference) < TOLERANCE
    published = load_backbone(str(checkpoint), device="cpu", form="published", precision="bf16")
    assert not published.folded and published.bn1.weight.dtype == torch.float32    # BatchNorm kept, as CLIP's fp16
    with pytest.raises(VPCError, match="computing in bf16 cannot be saved"):
        save_checkpoint(published, Path("unused.pt"))


def test_the_vit_takes_the_same_switch(bfloat16_hardware):
    exact = load_backbone("ViT-B/16", device="cpu", random_weights=True)
    fast = load_backbone("ViT-B/16", device="cpu", random_weights=True, precision="bf16")
    assert fast.conv1.weight.dtype == torch.bfloat16 and fast.ln_pre.weight.dtype == torch.float32
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        for tap, reference in zip(fast(image), exact(image)):
            assert tap.dtype == torch.float32 and relative_rms(tap, reference) < TOLERANCE


def recorded_method(path):
    """The method a model file records (its metadata, as written)."""
    with safe_open(str(path), framework="pt") as opened:
        return json.loads(opened.metadata()["method"])


def test_a_model_file_keeps_its_precision_and_loads_its_encoder_so(checkpoint, bfloat16_hardware, tmp_path):
    method = MethodConfig("avenue", D, 32, backbone=str(checkpoint), precision="bf16")
    banks = {name: torch.rand(3, 32 if name != "highlevel" else 192) for name in ("spatial", "temporal", "highlevel")}
    identity = load_backbone(str(checkpoint), device="cpu").identity()
    VideoPatchCore(method, banks=banks, backbone=identity).save(tmp_path / "fast.vpc")
    VideoPatchCore(replace(method, precision="exact"), banks=banks, backbone=identity).save(tmp_path / "exact.vpc")
    fast = VideoPatchCore.load(tmp_path / "fast.vpc")
    assert fast.method.precision == "bf16" and model_backbone(fast, "cpu").precision == "bf16"
    assert model_backbone(fast, "cpu", precision="exact").precision == "exact"
    assert "precision" not in recorded_method(tmp_path / "exact.vpc")
    assert recorded_method(tmp_path / "fast.vpc")["precision"] == "bf16"
    assert VideoPatchCore.load(tmp_path / "exact.vpc").method.precision == "exact"


@pytest.fixture(scope="module")
def stage(tmp_path_factory, checkpoint):
    root = tmp_path_factory.mktemp("precision")
    make_demo(root / "data", "avenue", seed=1, n_train=2, n_test=1, n_frames=9, width=96, height=64)
    write_fixed_box_objects(root / "data", root / "work", D)
    args = [f"--data_root={root / 'data'}", f"--work_dir={root / 'work'}", "--dataset=avenue", f"--consecutive={D}",
            f"--clip_weights={checkpoint}", "--label_free=False", "--spatial_f_coreset=0.5",
            "--temporal_f_coreset=0.5", "--highlevel_f_coreset=0.5"]
    return WorkDir(root / "work", "avenue"), args


def feature_files(work, folder):
    return sorted(p for p in (work.root / "l_features" / "avenue" / folder).rglob("*.h5")) + \
        sorted(p for p in (work.root / "g_features" / "avenue" / folder).rglob("*.h5"))


def stamps(paths):
    return {path: path.stat().st_mtime_ns for path in paths}


def test_exact_and_fast_runs_in_one_work_dir_never_share_files(stage, bfloat16_hardware, capsys):
    work, args = stage
    assert main(args) == 0
    exact_files = feature_files(work, "32")
    exact_stamps = stamps(exact_files)
    assert main(args + ["--precision=bf16"]) == 0          # after an exact run: its own features, banks, model
    fast_files = feature_files(work, "32_bf16")
    assert [p.name for p in fast_files] == [p.name for p in exact_files] and stamps(exact_files) == exact_stamps
    with h5py.File(fast_files[0], "r") as fast, h5py.File(exact_files[0], "r") as exact:
        assert read_h5_record(fast)["precision"] == "bf16" and "precision" not in read_h5_record(exact)
        assert not (fast["0001"][()] == exact["0001"][()]).all()      # clip 0 has no object
    assert (work.root / "l_features/avenue/32_bf16/spatial_memory_bank_0.5.pt").is_file()
    assert VideoPatchCore.load(work.model("spatial0.5_temporal0.5_highlevel0.5_bf16")).method.precision == "bf16"
    assert "precision" not in recorded_method(work.model("spatial0.5_temporal0.5_highlevel0.5"))
    assert (work.results(32) / "spatial0.5_temporal0.5_highlevel0.5_bf16" / "results.json").is_file()
    fast_stamps = stamps(fast_files)
    capsys.readouterr()
    assert main(args + ["--verify"]) == 0                  # and back: each run reuses its own files, untouched
    assert main(args + ["--precision=bf16", "--verify"]) == 0
    assert capsys.readouterr().out.count("memory banks: reusing") == 2
    assert stamps(exact_files) == exact_stamps and stamps(fast_files) == fast_stamps
    # An exact file where a fast one belongs is refused, not reused: the record names the precision.
    exact_files[0].replace(fast_files[0])
    with pytest.raises(VPCError, match="other settings .*precision"):
        main(args + ["--precision=bf16", "--save_memory=False"])
