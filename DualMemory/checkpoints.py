"""Dual-memory checkpoints: the model's weights (both memories are parameters) in one safe record file
(extra.checkpoints), and the official files: a state dict in the official parameter names, plain or under
``model_statedict`` as evaluate.py accepts it. The official train.py pickles the whole module, which
cannot be read without running its code; the error says how to turn it into a state dict.
"""
from dataclasses import dataclass, field
from pathlib import Path

import torch

from DualMemory.model import DualMemoryAE
from DualMemory.options import DEFAULTS
from extra.checkpoints import (
    RecordFormat, check_state, expected_shapes, file_kind, read_record_file, save_record_file, torch_load,
)
from extra.errors import FileKind, VPCError

FORM = RecordFormat("dual_memory", "dual-memory-checkpoint", 1, "a dual-memory checkpoint")
WEIGHT_PREFIX = "model."
KIND = FileKind("dual-memory checkpoint", "make it again with DualMemory/train.py, or pass a state dict of the "
                                          "official model (.pth)")
PICKLED_REMEDY = ("the official train.py saves {'model': model}; where the official code is installed, save "
                  "torch.load(path, weights_only=False)['model'].state_dict() with torch.save and pass that file")


@dataclass
class Checkpoint:
    """Weights in the official parameter names, the model's constructor arguments and the trainer's
    settings record."""

    state: dict
    config: dict
    settings: dict = field(default_factory=dict)

    def build(self):
        """The model with these weights (on the CPU; call ``.eval()`` before testing)."""
        model = DualMemoryAE(**self.config)
        model.load_state_dict(self.state, strict=True)
        return model


def save_checkpoint(path, model, settings=None):
    """Write ``model``'s weights and the JSON-ready ``settings`` to ``path`` atomically."""
    tensors = {WEIGHT_PREFIX + name: value for name, value in model.state_dict().items()}
    return save_record_file(path, tensors, FORM, {"model": model.config(), "settings": settings or {}})


def official_config(state, path):
    """The constructor arguments of an official state dict: channels, width and memory size from its
    parameters' shapes, each skip from its decoder block's input channels, the official shrinkage."""
    try:
        root = state["in_conv.conv.conv1.0.weight"].shape[0]
        skips = [("concat" if state[f"up_{level}.conv.conv1.0.weight"].shape[1] == 2 * root * 2 ** (level - 1)
                  else "none") for level in (1, 2, 3)]
        return {"num_in_ch": state["out_conv.conv.weight"].shape[0], "features_root": root,
                "mem_dim": state["mem3.memMatrix"].shape[0], "shrink_thres": DEFAULTS["shrink_thres"],
                "skip_ops": skips}
    except (KeyError, IndexError) as error:
        raise VPCError(f"{path} does not hold the dual-memory model's parameters (no {error}); {KIND.remedy}") from None


def official_state(obj, path):
    """The parameters out of a loaded official ``.pth``: a plain state dict or one under "model_statedict"."""
    if isinstance(obj, dict) and isinstance(obj.get("model_statedict"), dict):
        obj = obj["model_statedict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise VPCError(f"{path} is not a state dict of tensors; {KIND.remedy}")
    return {key[len("module."):] if key.startswith("module.") else key: value for key, value in obj.items()}


def load_checkpoint(path):
    """A Checkpoint from a checkpoint of this implementation or an official state dict; every parameter is
    checked against the model it builds."""
    path = Path(path)
    kind = file_kind(path, "dual-memory checkpoint")
    if kind == "safetensors":
        record, tensors = read_record_file(path, KIND, FORM)
        state = {key[len(WEIGHT_PREFIX):]: value for key, value in tensors.items() if key.startswith(WEIGHT_PREFIX)}
        config, settings = record.get("model"), record.get("settings", {})
        if not isinstance(config, dict) or not isinstance(settings, dict):
            raise VPCError(f"{path} is damaged (its settings record cannot be read); {KIND.remedy}")
    elif kind == "torch":
        state, settings = official_state(torch_load(path, KIND, PICKLED_REMEDY), path), {}
        config = official_config(state, path)
    else:
        raise VPCError(f"{path} is neither a dual-memory checkpoint nor a torch state dict (damaged or another kind "
                       f"of file); {KIND.remedy}")
    check_state(state, expected_shapes(lambda: DualMemoryAE(**config), path, KIND, "the dual-memory model"), path,
                KIND, "the dual-memory model")
    return Checkpoint(state, config, settings)
