"""CLIP's modified ResNet image encoder cut after layer3: the feature taps of SPEC section 3.

Loading follows OpenAI's ``clip.load``: a model name resolves to CLIP's download cache
(``~/.cache/clip/<file>.pt``, downloaded by clip's own code when missing), a path to a local file
(OpenAI's TorchScript archive or a state dict); sizes are inferred from the weights; conv and
linear weights are rounded to fp16 (``clip.model.convert_weights``). On CUDA the encoder then runs
in fp16, on CPU in float32 with the rounded weights (SPEC section 10).

On the CPU the encoder runs by default in its inference form (``fold_batchnorm``): every
BatchNorm folded into the convolution before it, computed in float64 from the same fp16-rounded
weights, in channels-last memory. Its taps equal the published form's within about 1e-6 relative
(tested within 1e-4) and it runs about 1.3 times as fast; ``form="published"`` keeps the
published layer sequence. On CUDA the published fp16 form is the default, as the published code.

Random weights are built only when asked for (``random_weights=True``) and say so in
``.description``; a checkpoint saved from them keeps a marker, so it says so when loaded back.
"""
import hashlib
import os
import warnings
from pathlib import Path
from typing import Protocol

import torch
from clip import clip as clip_loader
from clip.model import ModifiedResNet, convert_weights
from torch import nn

from extra.device import default_device
from extra.errors import VPCError, warn
from extra.io import atomic_path
from Memorization.options import ARCHITECTURES

# Key added to checkpoints saved from random weights (OpenAI's files never hold it).
RANDOM_MARKER = "vpc_random_weights_seed"


# How the encoder computes: BatchNorm folded and channels-last (CPU default), or the published layers.
FORMS = ("auto", "folded", "published")


_KEPT_PREFIXES = ("conv1.", "bn1.", "conv2.", "bn2.", "conv3.", "bn3.", "layer1.", "layer2.", "layer3.")


class FeatureBackbone(Protocol):
    """What the features need of an image encoder; a new encoder is one class with these members.

    Calling it on a batch of images (B, 3, 224, 224) float32 returns its tapped maps, float32, the
    first at 28 x 28 and the second at 14 x 14 for CLIP's ResNets (the features pool each map to
    their grid and concatenate them along channels: 512 + 1024 = 1536 for RN101).
    """

    name: str                  # architecture, recorded with every feature file and bank
    description: str           # in words, printed and recorded (says RANDOM WEIGHTS when so)
    random_weights: bool

    @property
    def device(self) -> torch.device: ...

    def identity(self) -> dict: ...     # name, random_weights and a hash of the weights, for model files

    def __call__(self, images: torch.Tensor) -> tuple: ...


class ResNetTaps(nn.Module):
    """Stem and layer1..layer3 of CLIP's ``ModifiedResNet``; forward returns (layer2, layer3) in float32.

    Submodule names are CLIP's, so the state dict keys are OpenAI's ``visual.*`` keys without the
    prefix. ``layer4`` and the attention pool are dropped as soon as the ResNet is constructed:
    they are never loaded nor run.
    """

    def __init__(self, layers, width):
        super().__init__()
        # layer4 with a single block and a 1 x 1 attention pool: the smallest throw-away tail.
        resnet = ModifiedResNet(layers=(*layers, 1), output_dim=width * 32, heads=width * 32 // 64,
                                input_resolution=32, width=width)
        for name in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "relu3",
                     "avgpool", "layer1", "layer2", "layer3"):
            setattr(self, name, getattr(resnet, name))
        self.layers = tuple(layers)
        self.width = width
        self.name = _architecture_name(layers, width)
        self.random_weights = False
        self.description = f"CLIP {self.name}"
        self.folded = False
        self.eval()                      # inference only: BatchNorm uses its running statistics

    @property
    def device(self):
        return self.conv1.weight.device

    def identity(self):
        """Architecture, random or not, and the SHA-256 of the weights (as stored: fp16-rounded
        values in key order), so a model file knows which weights made its banks."""
        if getattr(self, "_weights_sha256", None) is None:
            digest = hashlib.sha256()
            for key, tensor in self.state_dict().items():
                digest.update(key.encode())
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._weights_sha256 = digest.hexdigest()
        return {"backbone": self.name, "random_weights": bool(self.random_weights),
                "weights_sha256": self._weights_sha256}

    def forward(self, x):
        # Same sequence as ModifiedResNet.forward up to layer3 (input cast to the weights' dtype).
        # A folded encoder's BatchNorms are identities and its memory channels-last; the taps are
        # returned in the default layout, so what pools them sums in the same order either way.
        x = x.type(self.conv1.weight.dtype)
        if self.folded:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer1(x)
        layer2 = self.layer2(x)
        layer3 = self.layer3(layer2)     # layer3's first block only reads its input (it has a downsample)
        return layer2.float().contiguous(), layer3.float().contiguous()


def _folded_convolution(conv, batchnorm):
    """One convolution computing ``batchnorm(conv(x))`` (inference statistics), weights folded in float64."""
    scale = batchnorm.weight.double() / torch.sqrt(batchnorm.running_var.double() + batchnorm.eps)
    shift = batchnorm.bias.double() - batchnorm.running_mean.double() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=True, device=conv.weight.device)
    dtype = conv.weight.dtype
    folded.weight.data = (conv.weight.double() * scale[:, None, None, None]).to(dtype)
    folded.bias.data = shift.to(dtype)
    return folded


def fold_batchnorm(model):
    """``model`` (ResNetTaps) in its inference form, in place: each BatchNorm folded into its convolution.

    CLIP's ResNet applies every BatchNorm right after one convolution: ``bnK`` after ``convK`` in the
    stem and the bottlenecks, and ``downsample``'s "2" after its "1". The weights hash
    (``identity``) stays that of the published weights, taken before folding.
    """
    if model.folded:
        return model
    model.identity()
    for module in list(model.modules()):
        children = dict(module.named_children())
        for name, child in children.items():
            if isinstance(child, nn.BatchNorm2d):
                conv_name = "conv" + name[2:] if name.startswith("bn") else str(int(name) - 1)
                setattr(module, conv_name, _folded_convolution(children[conv_name], child))
                setattr(module, name, nn.Identity())
    model.folded = True
    return model.to(memory_format=torch.channels_last)


def _architecture_name(layers, width):
    for name, architecture in ARCHITECTURES.items():
        if architecture == (tuple(layers), width):
            return name
    return f"ResNet(layers={tuple(layers)}, width={width})"


def _finish(model, device, form):
    """CLIP's loader semantics: fp16 conv weights; fp16 compute on CUDA, float32 (rounded values) on CPU;
    then folded when ``form`` says so ("auto": folded on the CPU, published on CUDA)."""
    if form not in FORMS:
        raise VPCError(f"unknown encoder form {form!r}: use one of {', '.join(FORMS)}")
    device = torch.device(device or default_device())
    if device.type == "cpu":
        model.float()
    model = model.to(device).eval()
    if form == "folded" or (form == "auto" and device.type == "cpu"):
        fold_batchnorm(model)
    return model


def _fp16_rounded(model):
    convert_weights(model)
    return model


def build_random(name="RN101", seed=0):
    """The named architecture with PyTorch's default initialisation (seeded), fp16-rounded, on CPU."""
    if name not in ARCHITECTURES:
        raise VPCError(f"random weights take an architecture name ({', '.join(ARCHITECTURES)}), not {name!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNetTaps(*ARCHITECTURES[name])
    _fp16_rounded(model)
    _mark_random(model, seed, "")
    return model


def _mark_random(model, seed, source):
    model.random_weights = True
    model.random_seed = seed
    model.description = f"CLIP {model.name} with RANDOM WEIGHTS (not pretrained, seed {seed}{source})"


def load_backbone(name_or_path="RN101", device=None, random_weights=False, download_root=None, seed=0,
                  form="auto"):
    """CLIP ResNet feature taps, ready for inference on ``device`` (default: CUDA when available).

    ``name_or_path``: RN50 | RN101 | RN50x4 | RN50x16 | RN50x64 (CLIP's cache, ``download_root`` or
    ``~/.cache/clip``), or a local checkpoint file. ``random_weights=True``: the named architecture
    with random weights drawn with ``seed``, no file needed (announced on stderr). The result has ``.description`` (print and record it)
    and ``.random_weights``. ``form``: "auto" (folded on the CPU, published on CUDA), "folded" or
    "published" (see the module's docstring).
    """
    if random_weights:
        model = build_random(str(name_or_path), seed)
        warn(model.description)
        return _finish(model, device, form)
    path = resolve_weights(name_or_path, download_root)
    model = model_from_state_dict(read_checkpoint(path), source=path)
    if model.random_weights:
        warn(model.description)
    return _finish(model, device, form)


def resolve_weights(name_or_path, download_root=None):
    """A CLIP model name -> its file in CLIP's cache (downloaded by clip when missing); a path -> itself."""
    name = str(name_or_path)
    if name in clip_loader._MODELS and name not in ARCHITECTURES:
        raise VPCError(f"{name} is a vision transformer; the features tap layer2/layer3 of a CLIP ResNet: "
                       f"use one of {', '.join(ARCHITECTURES)}")
    if name in ARCHITECTURES:
        url = clip_loader._MODELS[name]
        root = Path(download_root or os.path.expanduser("~/.cache/clip"))
        target = root / os.path.basename(url)
        existed = target.is_file()
        try:
            return Path(clip_loader._download(url, str(root)))
        except Exception as error:   # no network, checksum mismatch, unwritable cache: all say the same
            problem = "do not match CLIP's checksum" if existed else "are missing"
            raise VPCError(f"CLIP {name} weights {problem} and the download failed ({_one_line(error)}): "
                           f"put {target.name} ({url}) at {target}, or pass --clip_weights PATH") from None
    path = Path(name).expanduser()
    if not path.is_file():
        raise VPCError(f"CLIP weights {name!r} are neither a model name ({', '.join(ARCHITECTURES)}) "
                       f"nor an existing file")
    return path


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]


def read_checkpoint(path):
    """State dict of OpenAI's TorchScript archive, or of a file saved with ``torch.save(state_dict)``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # torch.jit's deprecation notices
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:
        pass                                          # not a TorchScript archive: as clip.load, try a state dict
    try:
        state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise VPCError(f"cannot read {path} as a CLIP checkpoint (TorchScript archive or state dict): "
                       f"{_one_line(error)}") from None
    if not isinstance(state_dict, dict):
        raise VPCError(f"{path} holds a {type(state_dict).__name__}, not a state dict of CLIP weights")
    return state_dict


def visual_state_dict(state_dict, source="checkpoint"):
    """The image encoder's weights without the ``visual.`` prefix (full CLIP or visual-only dicts)."""
    if any(k.startswith("visual.") for k in state_dict):
        visual = {k[len("visual."):]: v for k, v in state_dict.items() if k.startswith("visual.")}
    else:
        visual = dict(state_dict)
    if "proj" in visual or "class_embedding" in visual:
        raise VPCError(f"{source} holds a CLIP vision transformer; the features need a CLIP ResNet "
                       f"({', '.join(ARCHITECTURES)})")
    if "layer1.0.conv1.weight" not in visual:
        raise VPCError(f"{source} is not a CLIP ResNet state dict (no 'visual.layer1.0.conv1.weight' "
                       f"nor 'layer1.0.conv1.weight' key)")
    return visual


def infer_architecture(visual):
    """(blocks of layer1..layer3, width) as clip.model.build_model infers them from the keys."""
    layers = tuple(len({k.split(".")[1] for k in visual if k.startswith(f"layer{b}.")}) for b in (1, 2, 3))
    return layers, visual["layer1.0.conv1.weight"].shape[0]


def model_from_state_dict(state_dict, source="checkpoint"):
    """Build the taps from a CLIP state dict: sizes inferred, fp16-rounded, on CPU in the stored dtypes."""
    visual = visual_state_dict(state_dict, source)
    model = _fp16_rounded(ResNetTaps(*infer_architecture(visual)))
    kept = {k: v for k, v in visual.items() if k.startswith(_KEPT_PREFIXES)}
    try:
        result = model.load_state_dict(kept, strict=False)
    except RuntimeError as error:
        raise VPCError(f"{source} does not fit a CLIP {model.name} encoder: {_one_line(error)}") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise VPCError(f"{source} lacks {len(missing)} weights of the encoder up to layer3 "
                       f"(first: visual.{missing[0]})")
    model.description = f"CLIP {model.name} (pretrained weights from {source})"
    if RANDOM_MARKER in state_dict:
        _mark_random(model, int(state_dict[RANDOM_MARKER]), f", from {source}")
    return model


def save_checkpoint(model, path):
    """Write ``model``'s weights as OpenAI's state dict keys (``visual.*``, fp16 conv weights).

    The file loads back through ``load_backbone(path)``; weights of a random model carry
    ``RANDOM_MARKER`` so they keep saying so. A folded encoder has no CLIP weights left to save.
    """
    if model.folded:
        raise VPCError("a folded encoder cannot be saved as CLIP weights: save the one loaded with form='published'")
    fp16_keys = {f"{name}.{key}" for name, module in model.named_modules()
                 if isinstance(module, (nn.Conv2d, nn.Linear)) for key, _ in module.named_parameters()}
    # Conv weights in half precision as OpenAI stores them (their values are already fp16-rounded).
    state = {f"visual.{key}": (tensor.half() if key in fp16_keys else tensor).detach().cpu().clone()
             for key, tensor in model.state_dict().items()}
    if model.random_weights:
        state[RANDOM_MARKER] = torch.tensor(model.random_seed)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)
