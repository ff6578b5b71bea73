"""The image encoders: one line per family, and the one way to load any of them (``load_backbone``).

Cheap to import (no torch, no CLIP): the command lines read ``ENCODER_NAMES`` from here. A family's
module is imported only when one of its encoders is loaded; it provides ``build_random(name, seed)``,
``model_from_state_dict(state_dict, source)`` and ``finish(model, device, form)`` (see
``Memorization.encoders.contract``). A weights file goes to the family whose key its state dict holds.
"""
import importlib
from pathlib import Path
from typing import NamedTuple

from extra.errors import VPCError, warn


class Family(NamedTuple):
    module: str          # the module that builds and loads it
    names: tuple         # model names it answers to (CLIP's names: weights from CLIP's cache)
    key: str             # a key of the image encoder's state dict (no "visual.") only this family holds


FAMILIES = {
    "clip_resnet": Family("Memorization.encoders.clip_resnet", ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64"),
                          "layer1.0.conv1.weight"),
    "clip_vit": Family("Memorization.encoders.clip_vit", ("ViT-B/16",), "class_embedding"),
}
ENCODER_NAMES = tuple(name for family in FAMILIES.values() for name in family.names)
DEFAULT_ENCODER = "RN101"      # the paper's


def family_named(name):
    """The family of a registered encoder name, None for anything else."""
    return next((family for family in FAMILIES.values() if name in family.names), None)


def load_backbone(name_or_path=DEFAULT_ENCODER, device=None, random_weights=False, download_root=None, seed=0,
                  form="auto", precision="exact"):
    """An encoder (``contract.FeatureBackbone``) ready for inference on ``device`` (default: CUDA when available).

    ``name_or_path``: a name of ``ENCODER_NAMES`` (weights from CLIP's cache, ``download_root`` or
    ``~/.cache/clip``), or a local weights file (OpenAI's archive or a state dict) of any registered
    family, told by its contents. ``random_weights=True``: the named architecture with random
    weights drawn with ``seed``, no file needed (announced on stderr). The result has ``.description``
    (print and record it) and ``.random_weights``. ``form``: how the family computes ("auto", or
    e.g. the ResNets' "folded" / "published"); ``precision``: "exact" (the published code's arithmetic),
    "bf16" or "fp16" (``contract.compute_dtype`` refuses it, in one line, where the device would not gain).
    """
    from Memorization.encoders import contract  # torch and CLIP: only when an encoder is loaded

    name = str(name_or_path)
    family = family_named(name)
    if random_weights:
        if family is None:
            raise VPCError(f"random weights take an architecture name ({', '.join(ENCODER_NAMES)}), not {name!r}")
        module = importlib.import_module(family.module)
        model = module.build_random(name, seed)
        warn(model.description)
        return module.finish(model, device, form, precision)
    path = contract.clip_weights_file(name, download_root) if family else _weights_path(name)
    state_dict = contract.read_checkpoint(path)
    module = importlib.import_module(_family_of(contract.visual_weights(state_dict), path).module)
    model = module.model_from_state_dict(state_dict, source=path)
    if model.random_weights:
        warn(model.description)
    return module.finish(model, device, form, precision)


def _weights_path(name):
    from clip import clip as clip_loader

    if name in clip_loader._MODELS and name.startswith("ViT"):
        raise VPCError(f"{name} is a vision transformer without an encoder here: use one of "
                       f"{', '.join(ENCODER_NAMES)} (a new one: Memorization/encoders/registry.py)")
    path = Path(name).expanduser()
    if not path.is_file():
        raise VPCError(f"CLIP weights {name!r} are neither a model name ({', '.join(ENCODER_NAMES)}) "
                       f"nor an existing file")
    return path


def _family_of(visual, source):
    """The family whose key the image encoder's weights hold."""
    for family in FAMILIES.values():
        if family.key in visual:
            return family
    keys = " nor ".join(f"'visual.{family.key}'" for family in FAMILIES.values())
    raise VPCError(f"{source} holds no CLIP image encoder of {', '.join(FAMILIES)} (no {keys} key)")
