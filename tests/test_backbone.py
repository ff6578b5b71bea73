
import pytest
import torch
from clip.model import ModifiedResNet, convert_weights
from torch import nn

from extra.errors import VPCError
from Memorization.encoders.clip_resnet import build_random, fold_batchnorm, model_from_state_dict
from Memorization.encoders.contract import RANDOM_MARKER, save_checkpoint
from Memorization.encoders.registry import load_backbone

TINY = dict(layers=(1, 2, 1, 1), output_dim=16, heads=2, input_resolution=32, width=8)


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    return ModifiedResNet(**TINY).eval()


def conv_weights(model):
    return {n: p for n, p in model.named_parameters() if p.dim() == 4}


def is_fp16_rounded(tensor):
    return torch.equal(tensor.half().float(), tensor.float())


@pytest.fixture(scope="module")
def rn101_checkpoint(tmp_path_factory):
    model = load_backbone("RN101", device="cpu", random_weights=True, form="published")
    path = save_checkpoint(model, tmp_path_factory.mktemp("weights") / "rn101_random.pt")
    return model, path


def test_rn101_random_checkpoint_loads_back_through_the_user_path(rn101_checkpoint, capsys):
    random_model, path = rn101_checkpoint
    assert random_model.random_weights and "RANDOM WEIGHTS (not pretrained" in random_model.description
    loaded = load_backbone(str(path), device="cpu", form="published")
    assert "RANDOM WEIGHTS (not pretrained" in capsys.readouterr().err     # said again when loaded back
    assert loaded.random_weights and loaded.name == "RN101"
    assert loaded.layers == (3, 4, 23) and loaded.width == 64
    assert not hasattr(loaded, "layer4") and not hasattr(loaded, "attnpool")
    saved = torch.load(path, weights_only=True)
    assert saved["visual.layer3.22.conv3.weight"].dtype == torch.float16       # OpenAI's storage
    assert saved["visual.layer3.22.bn3.weight"].dtype == torch.float32
    assert int(saved[RANDOM_MARKER]) == 0
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        layer2, layer3 = loaded(x)
        expected2, expected3 = random_model(x)
    assert layer2.shape == (2, 512, 28, 28) and layer3.shape == (2, 1024, 14, 14)
    assert layer2.dtype == layer3.dtype == torch.float32
    assert torch.equal(layer2, expected2) and torch.equal(layer3, expected3)
    weights = conv_weights(loaded)
    assert len(weights) == 96 and all(p.dtype == torch.float32 for p in weights.values())   # CPU: float32
    assert all(is_fp16_rounded(p) for p in weights.values())


def relative_difference(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_folded_rn101_loaded_by_default_on_cpu_keeps_the_taps_and_the_identity(rn101_checkpoint):
    published, path = rn101_checkpoint
    folded = load_backbone(str(path), device="cpu")
    assert folded.folded and not published.folded
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded.identity() == published.identity()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for tap, expected in zip(folded(x), published(x)):
            assert tap.is_contiguous() and relative_difference(tap, expected) < 1e-4


def random_batchnorm_statistics(model, seed=3):
    """Statistics far from the initial identity, so a wrong fold shows in the taps."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 3 + 0.2)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.5)


def test_fold_batchnorm_equals_the_published_layers_within_1e_4():
    resnet = tiny_resnet()
    random_batchnorm_statistics(resnet)
    convert_weights(resnet)
    state = {f"visual.{k}": v for k, v in resnet.state_dict().items()}
    published = model_from_state_dict(state).float()
    folded = fold_batchnorm(model_from_state_dict(state).float())
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        taps, expected = folded(x), published(x)
        unfolded_batchnorm = published.bn1
        published.bn1 = nn.Identity()               # one BatchNorm left out: far off, so the check can fail
        wrong = published(x)
    for tap, reference, off in zip(taps, expected, wrong):
        assert relative_difference(tap, reference) < 1e-4
        assert relative_difference(off, reference) > 1e-3
    assert unfolded_batchnorm.running_var.max() > 2     # the statistics were not the identity
    assert folded.conv1.bias is not None and isinstance(folded.bn1, nn.Identity)
    assert isinstance(folded.layer1[0].downsample[2], nn.Identity)


def test_folded_encoder_cannot_be_saved_and_forms_are_checked(tmp_path):
    with pytest.raises(VPCError, match="folded encoder cannot be saved"):
        save_checkpoint(load_backbone("RN50", device="cpu", random_weights=True), tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()
    with pytest.raises(VPCError, match="unknown encoder form 'fast'"):
        load_backbone("RN50", device="cpu", random_weights=True, form="fast")


def test_taps_equal_clip_resnet_layer2_and_layer3():
    resnet = tiny_resnet()
    convert_weights(resnet)                        # what clip.load does, then .float() on CPU
    resnet.float()
    taps = model_from_state_dict({f"visual.{k}": v for k, v in resnet.state_dict().items()})
    seen = {}
    resnet.layer2.register_forward_hook(lambda m, i, o: seen.__setitem__("layer2", o.clone()))
    resnet.layer3.register_forward_hook(lambda m, i, o: seen.__setitem__("layer3", o.clone()))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    resnet.attnpool = nn.Identity()                # sized for 32 x 32 inputs; not part of the taps
    with torch.no_grad():
        resnet(x)
        layer2, layer3 = taps.float()(x)
    assert taps.layers == (1, 2, 1) and taps.width == 8
    assert torch.equal(layer2, seen["layer2"]) and torch.equal(layer3, seen["layer3"])


def test_weights_are_rounded_to_fp16_but_batchnorm_is_not(tmp_path):
    state = tiny_resnet().state_dict()
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], 0.1)      # 0.1 is not a half value
    state["bn1.weight"] = torch.full_like(state["bn1.weight"], 1 / 3)
    model = model_from_state_dict(state)                                     # visual-only, no prefix
    assert model.conv1.weight.dtype == torch.float16
    assert torch.all(model.conv1.weight == torch.tensor(0.1).half())
    assert torch.all(model.bn1.weight == torch.tensor(1 / 3))                # float32 value kept
    torch.save(state, tmp_path / "float32.pt")
    cpu = load_backbone(str(tmp_path / "float32.pt"), device="cpu", form="published")
    assert cpu.conv1.weight.dtype == torch.float32
    assert torch.all(cpu.conv1.weight == torch.tensor(0.1).half().float())
    assert not torch.all(cpu.conv1.weight == torch.tensor(0.1))


def test_full_clip_dict_prefixed_and_unprefixed_visual_dicts_give_the_same_weights():
    visual = tiny_resnet().state_dict()
    full = {**{f"visual.{k}": v for k, v in visual.items()},
            "text_projection": torch.zeros(4, 4), "token_embedding.weight": torch.zeros(3, 4)}
    models = [model_from_state_dict(full), model_from_state_dict({f"visual.{k}": v for k, v in visual.items()}),
              model_from_state_dict(visual)]
    for other in models[1:]:
        for (name, a), b in zip(models[0].state_dict().items(), other.state_dict().values()):
            assert torch.equal(a, b), name
    assert not models[0].random_weights and "pretrained" in models[0].description


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_archive_is_read_like_clip_load(tmp_path):
    class Clip(nn.Module):                         # same key layout as OpenAI's archives: visual.*
        def __init__(self):
            super().__init__()
            self.visual = tiny_resnet(seed=3)

        def forward(self, image):
            return self.visual(image)

    original = Clip().eval()
    archive = torch.jit.trace(original, torch.zeros(1, 3, 32, 32))
    torch.jit.save(archive, str(tmp_path / "tiny_jit.pt"))
    loaded = load_backbone(str(tmp_path / "tiny_jit.pt"), device="cpu", form="published")
    reference = original.visual.state_dict()
    for name, tensor in loaded.state_dict().items():
        expected = reference[name]
        if name.endswith(".weight") and tensor.dim() == 4:
            expected = expected.half().float()
        assert torch.equal(tensor, expected), name


def test_model_name_resolves_to_clips_cache_through_clips_downloader(tmp_path, monkeypatch):
    checkpoint = tmp_path / "tiny.pt"
    torch.save({f"visual.{k}": v for k, v in tiny_resnet().state_dict().items()}, checkpoint)
    calls = []

    def fake_download(url, root):
        calls.append((url, root))
        return str(checkpoint)

    monkeypatch.setattr("clip.clip._download", fake_download)
    model = load_backbone("RN50", device="cpu", download_root=tmp_path / "cache")
    assert calls[0][0].endswith("/RN50.pt") and calls[0][1] == str(tmp_path / "cache")
    assert model.width == 8 and not model.random_weights


@pytest.mark.parametrize("state, match", [
    ({"visual.proj": torch.zeros(2, 2), "visual.class_embedding": torch.zeros(2)}, "vision transformer"),
    ({"encoder.weight": torch.zeros(2)}, "not a CLIP ResNet state dict"),
])
def test_unsuitable_state_dicts_are_refused(state, match):
    with pytest.raises(VPCError, match=match):
        model_from_state_dict(state)


def test_incomplete_checkpoint_names_the_missing_weight():
    state = tiny_resnet().state_dict()
    del state["layer3.0.conv2.weight"]
    with pytest.raises(VPCError, match=r"lacks 1 weights .*first: visual\.layer3\.0\.conv2\.weight"):
        model_from_state_dict(state)


def test_bad_names_and_files_are_refused(tmp_path):
    with pytest.raises(VPCError, match="ViT-B/32 is a vision transformer"):
        load_backbone("ViT-B/32")
    with pytest.raises(VPCError, match="neither a model name"):
        load_backbone(str(tmp_path / "absent.pt"))
    with pytest.raises(VPCError, match="random weights take an architecture name"):
        load_backbone(str(tmp_path / "absent.pt"), random_weights=True)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VPCError, match="cannot read .*garbage.pt as a CLIP checkpoint"):
        load_backbone(str(tmp_path / "garbage.pt"))
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(VPCError, match="holds a Tensor, not a state dict"):
        load_backbone(str(tmp_path / "tensor.pt"))


def test_random_weights_are_seeded_and_leave_the_callers_generator_alone():
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    a = build_random("RN50", seed=1)
    assert torch.equal(torch.rand(3), expected_next)
    b, c = build_random("RN50", seed=1), build_random("RN50", seed=2)
    assert torch.equal(a.layer1[0].conv1.weight, b.layer1[0].conv1.weight)
    assert not torch.equal(a.layer1[0].conv1.weight, c.layer1[0].conv1.weight)
    assert a.layers == (3, 4, 6) and "seed 1" in a.description
    assert all(is_fp16_rounded(p) for p in conv_weights(a).values())


def test_a_models_weights_are_found_in_clips_cache_by_their_hash(tmp_path, monkeypatch):
    """The file the model was fitted with is gone and no --clip_weights is given: CLIP's cache for the
    recorded architecture holds weights of the recorded hash, and those are loaded."""
    from Memorization.encoders.loader import model_backbone
    from Memorization.model import VideoPatchCore
    from Memorization.options import MethodConfig
    from tests.helpers import small_random_checkpoint

    cached = small_random_checkpoint(tmp_path / "cache" / "RN101.pt")
    sha = load_backbone(str(cached), device="cpu").identity()["weights_sha256"]
    method = MethodConfig("avenue", 4, 8, backbone=str(tmp_path / "gone.pt"))
    model = VideoPatchCore(method, backbone={"backbone": "RN101", "weights_sha256": sha})
    asked = []
    monkeypatch.setattr("clip.clip._download", lambda url, root: asked.append(url) or str(cached))
    assert model_backbone(model, "cpu").identity()["weights_sha256"] == sha
    assert asked[0].endswith("/RN101.pt")
    # other weights in the cache are refused, naming what is needed
    model.backbone["weights_sha256"] = "0" * 64
    with pytest.raises(VPCError, match=r"RN101 weights of SHA-256 0{16}\.\.\.; none found: .*RN101 \(other weights\)"):
        model_backbone(model, "cpu")
