"""The encoder registry and CLIP ViT-B/16 (random weights, saved and loaded back as a user's file is)."""
import json
import subprocess
import sys
import urllib.error
from pathlib import Path

import h5py
import pytest
import torch
from clip.model import VisionTransformer

from extra.errors import VPCError
from extra.make_demo import make_demo
from extra.provenance import read_h5_record
from extra.workdir import WorkDir
from Memorization.encoders.contract import RANDOM_MARKER, save_checkpoint
from Memorization.encoders.registry import ENCODER_NAMES, FAMILIES, load_backbone
from Memorization.run import main
from tests.helpers import small_random_checkpoint, write_fixed_box_objects

REPO = Path(__file__).resolve().parent.parent


def test_the_registry_lists_both_families_without_importing_torch():
    assert {"RN101", "ViT-B/16"} <= set(ENCODER_NAMES) and set(FAMILIES) == {"clip_resnet", "clip_vit"}
    code = ("import sys; import Memorization.cli, Memorization.encoders.registry as r; "
            "print(r.ENCODER_NAMES, 'torch' in sys.modules, 'clip' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("False False") and "'ViT-B/16'" in result.stdout


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    model = load_backbone("ViT-B/16", device="cpu", random_weights=True)
    return model, save_checkpoint(model, tmp_path_factory.mktemp("weights") / "vit_b16_random.pt")


def test_vit_random_weights_give_taps_of_the_declared_shapes(vit_checkpoint):
    model, _ = vit_checkpoint
    layout = model.layout
    assert model.name == "ViT-B/16" and model.random_weights and "RANDOM WEIGHTS (not pretrained" in model.description
    assert layout.input_size == 224 and layout.local_grid == layout.global_grid == 14
    assert layout.taps == ((768, 14), (768, 14)) and layout.channels == 1536
    assert len(model.transformer.resblocks) == 9 and not hasattr(model, "proj")     # blocks 10..12 never built
    with torch.no_grad():
        taps = model(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    assert [tuple(tap.shape[1:]) for tap in taps] == [(c, s, s) for c, s in layout.taps]
    assert all(tap.dtype == torch.float32 and torch.isfinite(tap).all() for tap in taps)
    assert not torch.equal(taps[0], taps[1])


def test_vit_checkpoint_loads_back_through_the_user_path(vit_checkpoint, capsys):
    model, path = vit_checkpoint
    loaded = load_backbone(str(path), device="cpu")
    assert "RANDOM WEIGHTS (not pretrained" in capsys.readouterr().err and f"from {path}" in loaded.description
    assert type(loaded).__name__ == "ViTTaps" and loaded.name == "ViT-B/16" and loaded.random_weights
    assert loaded.identity() == model.identity() and len(model.identity()["weights_sha256"]) == 64
    saved = torch.load(path, weights_only=True)
    assert saved["visual.transformer.resblocks.8.attn.in_proj_weight"].dtype == torch.float16    # as OpenAI stores
    assert saved["visual.ln_pre.weight"].dtype == torch.float32 and int(saved[RANDOM_MARKER]) == 0
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for tap, expected in zip(loaded(x), model(x)):
            assert torch.equal(tap, expected)


def tiny_clip_vit(seed=0):
    """CLIP's VisionTransformer with 12 blocks at a small size (grid 4 x 4)."""
    torch.manual_seed(seed)
    return VisionTransformer(input_resolution=64, patch_size=16, width=64, layers=12, heads=1, output_dim=8).eval()


def test_vit_taps_are_the_patch_tokens_of_blocks_6_and_9(tmp_path):
    vit = tiny_clip_vit()
    torch.save({f"visual.{k}": v for k, v in vit.state_dict().items()} | {"text_projection": torch.zeros(2, 2)},
               tmp_path / "tiny_vit.pt")
    taps = load_backbone(str(tmp_path / "tiny_vit.pt"), device="cpu")         # dispatched by its keys
    assert taps.layout.taps == ((64, 4), (64, 4)) and taps.name == "ViT(patch=16, width=64, input=64)"
    vit.load_state_dict(taps.state_dict(), strict=False)                       # the fp16-rounded weights
    seen = {}
    for block in (6, 9):
        vit.transformer.resblocks[block - 1].register_forward_hook(lambda m, i, o, b=block: seen.__setitem__(b, o))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        vit(x)
        mine = taps(x)
    for tap, block in zip(mine, (6, 9)):     # tokens (1 + 16, B, width): class token first, patches row-major
        assert torch.equal(tap, seen[block][1:].permute(1, 2, 0).reshape(2, 64, 4, 4))


@pytest.mark.parametrize("name, file", [("RN101", "RN101.pt"), ("ViT-B/16", "ViT-B-16.pt")])
def test_missing_weights_say_where_to_put_the_file(name, file, tmp_path, monkeypatch):
    def offline(url, root):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("clip.clip._download", offline)
    with pytest.raises(VPCError) as error:
        load_backbone(name, download_root=tmp_path)
    message = str(error.value)
    assert "\n" not in message and f"CLIP {name} weights are missing" in message and "no network" in message
    assert f"at {tmp_path / file}" in message and "--clip_weights PATH" in message


def test_unknown_weights_and_forms_are_refused(tmp_path):
    torch.save({"visual.encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(VPCError, match="holds no CLIP image encoder .*'visual.class_embedding'"):
        load_backbone(str(tmp_path / "other.pt"))
    with pytest.raises(VPCError, match="vision transformer without an encoder here"):
        load_backbone("ViT-L/14")
    with pytest.raises(VPCError, match="unknown encoder form 'folded' for a vision transformer"):
        load_backbone("ViT-B/16", device="cpu", random_weights=True, form="folded")


D = 3


def test_vit_through_the_memorization_stage(tmp_path, capsys):
    # one training and one test video: ViT-B/16 takes about 0.3 s an image on two CPU cores
    make_demo(tmp_path / "data", "avenue", seed=1, n_train=1, n_test=1, n_frames=8, width=96, height=64)
    write_fixed_box_objects(tmp_path / "data", tmp_path / "work", D)
    args = [f"--data_root={tmp_path / 'data'}", f"--work_dir={tmp_path / 'work'}", "--dataset=avenue",
            f"--consecutive={D}", "--spatial_f_coreset=1", "--temporal_f_coreset=1", "--highlevel_f_coreset=0.5",
            "--label_free=False"]         # the calibration would run the encoder over the training videos again
    assert main(args + ["--backbone=ViT-B/16", "--random_weights", "--pool_for_sm=2"]) == 0
    output = capsys.readouterr()
    assert "backbone: CLIP ViT-B/16 with RANDOM WEIGHTS" in output.out and "RANDOM WEIGHTS" in output.err
    work = WorkDir(tmp_path / "work", "avenue")
    # 8 frames, clips of 3: 2 clips per video; clip c holds c % 3 objects -> 0 + 1
    with h5py.File(work.local_features(32, "train", "01"), "r") as f:
        assert f["0000"].shape == (1,) and f["0001"].shape == (1, 32, D, 14, 14)      # the tokens' own grid
        assert read_h5_record(f)["backbone"] == "ViT-B/16"
    with h5py.File(work.global_features(32, "test", "01"), "r") as f:
        assert f["0001"].shape == (1, 1536, D)
    spatial = torch.load(work.local_dir(32) / "spatial_memory_bank_1.0.pt")
    assert spatial.shape == (7 * 7, 32)       # one object, p = 2 on 14 x 14: RN101's 7 x 7 layout
    results = json.loads((work.results(32) / "spatial1.0_temporal1.0_highlevel0.5" / "results.json").read_text())
    assert results["metadata"]["random_weights"] is True
    # a ResNet on the same files: the records differ, so the features of two encoders never mix
    weights = small_random_checkpoint(tmp_path / "resnet.pt")
    with pytest.raises(VPCError, match="made with other settings .*backbone: file 'ViT-B/16', this run 'ResNet"):
        main(args + [f"--backbone={weights}", "--pool_for_sm=2"])
