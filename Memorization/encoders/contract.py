"""What an image encoder provides to the features (``FeatureBackbone``, ``TapLayout``), and what the
CLIP encoders share: weights read from OpenAI's archives or state dicts, fp16 rounding, placement on
a device, the precision it computes in (``compute_dtype``, ``computing_in``), the weights hash of
``identity()``, random-weights marking and checkpoints.

A new encoder is one module (a family: ``build_random``, ``model_from_state_dict``, ``finish``, an
``Encoder`` subclass) and one line in ``Memorization.encoders.registry.FAMILIES``.
"""
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from clip import clip as clip_loader
from clip.model import convert_weights
from torch import nn

from extra.device import default_device
from extra.errors import VPCError
from extra.io import atomic_path

# Key added to checkpoints saved from random weights (OpenAI's files never hold it).
RANDOM_MARKER = "vpc_random_weights_seed"


@dataclass(frozen=True)
class TapLayout:
    """The shapes an encoder works at: what the features read instead of constants."""

    input_size: int      # side of the square images it takes (crops and frames are resized to it)
    taps: tuple          # (channels, side) of each map a call returns, in order
    local_grid: int      # side of the local features' maps (lf): the grid the spatial bank cuts
    global_grid: int     # side each map is pooled to before the global stream's average + max

    @property
    def channels(self):
        """Channels of the concatenated taps (1536 for RN101 and ViT-B/16)."""
        return sum(channels for channels, _ in self.taps)


class FeatureBackbone(Protocol):
    """What the features need of an image encoder.

    Calling it on images (B, 3, input_size, input_size) float32 returns its tapped maps, a tuple of
    (B, C_i, H_i, W_i) float32 with (C_i, H_i) = ``layout.taps[i]``; the features pool each map to
    their grid and concatenate them along channels.
    """

    name: str                  # architecture, recorded with every feature file and bank
    description: str           # in words, printed and recorded (says RANDOM WEIGHTS when so)
    random_weights: bool
    layout: TapLayout

    @property
    def device(self) -> torch.device: ...

    def identity(self) -> dict: ...     # name, random_weights and a hash of the weights, for model files

    def __call__(self, images: torch.Tensor) -> tuple: ...


class Encoder(nn.Module):
    """The members every CLIP encoder here shares; subclasses set ``name``, ``layout`` and the layers."""

    name = description = "encoder"
    random_weights = False
    random_seed = None
    folded = False       # computes in a rewritten form whose weights are no longer CLIP's (not savable)
    precision = "exact"  # or "bf16" / "fp16": weights cast to that type (not savable either)

    @property
    def device(self):
        return next(self.parameters()).device

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

    def mark_random(self, seed, source=""):
        self.random_weights, self.random_seed = True, seed
        self.description = f"CLIP {self.name} with RANDOM WEIGHTS (not pretrained, seed {seed}{source})"
        return self


def seeded(build, seed):
    """``build()`` under ``torch.manual_seed(seed)``, leaving the caller's generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def fp16_rounded(model):
    """CLIP's loader semantics: conv, linear and attention weights rounded to fp16 (``convert_weights``)."""
    convert_weights(model)
    return model


def place(model, device=None):
    """fp16 compute on CUDA, float32 (with the fp16-rounded values) on the CPU, as ``clip.load``; eval mode."""
    device = torch.device(device or default_device())
    if device.type == "cpu":
        model.float()
    return model.to(device).eval()


# What each precision computes in; "exact" is the published code's (``place``).
PRECISION_DTYPES = {"exact": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_WORDS = {"bf16": "bfloat16", "fp16": "float16"}


def compute_dtype(precision, device=None):
    """The dtype an encoder computes in at ``precision`` on ``device`` (None: the published code's), or one
    line saying why that device would not gain from it: bfloat16 needs CUDA or a CPU that multiplies it in
    hardware (``Memorization.knn.exact.native_bfloat16``), float16 needs CUDA."""
    from Memorization.knn import exact      # the one detection of bfloat16 hardware (the search uses it too)

    if precision not in PRECISION_DTYPES:
        raise VPCError(f"unknown precision {precision!r}: use one of {', '.join(PRECISION_DTYPES)}")
    kind = torch.device(device or default_device()).type
    if precision == "fp16" and kind != "cuda":
        raise VPCError("--precision fp16 runs on CUDA only: a CPU has no fast float16 convolutions (PyTorch "
                       "emulates them, slower than float32); use --precision bf16 on a CPU with AVX512-BF16 or "
                       "AMX, else exact")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise VPCError(f"--precision bf16 would be slower than exact here: {torch.cuda.get_device_name()} has no "
                       f"bfloat16 tensor cores (before Ampere); use --precision fp16")
    if precision == "bf16" and kind == "cpu" and not exact.native_bfloat16():
        raise VPCError("--precision bf16 would be slower than exact on this CPU: it has no bfloat16 "
                       "instructions (AVX512-BF16 or AMX), so PyTorch emulates bfloat16 in float32; use "
                       "--precision exact")
    return PRECISION_DTYPES[precision]


def computing_in(model, precision, dtype):
    """``model`` computing in ``dtype`` (``compute_dtype(precision)``), in place: the weights CLIP's loader
    keeps in fp16 on CUDA (``fp16_keys``: convolutions, linear and attention layers) cast to it, the rest
    (BatchNorm, LayerNorm, embeddings) left as ``place`` made them, as CLIP's fp16 on CUDA. The weights hash
    (``identity``) stays that of the published weights, taken first."""
    if dtype is None:
        return model
    model.identity()
    held = fp16_keys(model)
    for key, parameter in model.named_parameters():
        if key in held:
            parameter.data = parameter.data.to(dtype)
    model.precision = precision
    model.description += f", computing in {PRECISION_WORDS[precision]}"
    return model


def one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]


def clip_weights_file(name, download_root=None):
    """A CLIP model name -> its file in CLIP's cache (downloaded by clip when missing), or one line
    saying where to put it."""
    url = clip_loader._MODELS[name]
    root = Path(download_root or os.path.expanduser("~/.cache/clip"))
    target = root / os.path.basename(url)
    existed = target.is_file()
    try:
        return Path(clip_loader._download(url, str(root)))
    except Exception as error:   # no network, checksum mismatch, unwritable cache: all say the same
        problem = "do not match CLIP's checksum" if existed else "are missing"
        raise VPCError(f"CLIP {name} weights {problem} and the download failed ({one_line(error)}): "
                       f"put {target.name} ({url}) at {target}, or pass --clip_weights PATH") from None


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
                       f"{one_line(error)}") from None
    if not isinstance(state_dict, dict):
        raise VPCError(f"{path} holds a {type(state_dict).__name__}, not a state dict of CLIP weights")
    return state_dict


def visual_weights(state_dict):
    """The image encoder's weights without the ``visual.`` prefix (full CLIP or visual-only dicts)."""
    if any(k.startswith("visual.") for k in state_dict):
        return {k[len("visual."):]: v for k, v in state_dict.items() if k.startswith("visual.")}
    return dict(state_dict)


def load_weights(model, visual, state_dict, source):
    """``model`` (fp16-rounded, on the CPU) given the weights it holds from ``visual``; the rest of the
    file (later layers, heads, the text tower) is never loaded. Described as loaded from ``source``,
    and as random when the file carries ``RANDOM_MARKER``."""
    own = model.state_dict()
    try:
        result = model.load_state_dict({k: v for k, v in visual.items() if k in own}, strict=False)
    except RuntimeError as error:
        raise VPCError(f"{source} does not fit a CLIP {model.name} encoder: {one_line(error)}") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise VPCError(f"{source} lacks {len(missing)} weights of the {model.name} encoder's taps "
                       f"(first: visual.{missing[0]})")
    model.description = f"CLIP {model.name} (pretrained weights from {source})"
    if RANDOM_MARKER in state_dict:
        model.mark_random(int(state_dict[RANDOM_MARKER]), f", from {source}")
    return model


def fp16_keys(model):
    """The state dict keys ``clip.model.convert_weights`` stores in half precision."""
    keys = set()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        held = []
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            held = ["weight", "bias"]
        if isinstance(module, nn.MultiheadAttention):
            held = ["in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                    "bias_k", "bias_v"]
        held += ["text_projection", "proj"]
        keys |= {prefix + key for key in held if getattr(module, key, None) is not None}
    return keys


def save_checkpoint(model, path):
    """Write ``model``'s weights as OpenAI's state dict keys (``visual.*``, fp16 where CLIP stores fp16).

    The file loads back through ``registry.load_backbone(path)``; weights of a random model carry
    ``RANDOM_MARKER`` so they keep saying so. A folded encoder has no CLIP weights left to save.
    """
    if model.folded:
        raise VPCError("a folded encoder cannot be saved as CLIP weights: save the one loaded with form='published'")
    if model.precision != "exact":
        raise VPCError(f"an encoder computing in {model.precision} cannot be saved as CLIP weights: save the one "
                       f"loaded with precision='exact'")
    half = fp16_keys(model)
    # fp16 weights in half precision as OpenAI stores them (their values are already fp16-rounded).
    state = {f"visual.{key}": (tensor.half() if key in half else tensor).detach().cpu().clone()
             for key, tensor in model.state_dict().items()}
    if model.random_weights:
        state[RANDOM_MARKER] = torch.tensor(model.random_seed)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)
