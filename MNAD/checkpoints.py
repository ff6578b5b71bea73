"""MNAD checkpoints: the model's weights and its memory items in one safe file, and the official files.

A checkpoint is a safetensors file: the weights under ``model.<official parameter name>``, the memory
items under ``memory.items``, and one metadata entry holding a JSON record with sorted keys (format,
version, the model's constructor arguments, and the settings the trainer recorded). One entry only,
so the same checkpoint gives the same bytes (safetensors writes several in a random order). Written
under a temporary name and renamed when complete; loading it executes no code.

Loading also accepts the official files: a plain state dict in the official parameter names (a
``.pth`` / ``.pt`` file, read with ``torch.load(..., weights_only=True)``), with the memory items from
a separate tensor file like the official ``keys.pt``. The official Train.py pickles the whole model,
which cannot be read without running its code; the error says how to turn it into a state dict.

The file handling every method shares is extra.checkpoints; this module is MNAD's part of it.
"""
from dataclasses import dataclass, field
from pathlib import Path

import torch

from extra.checkpoints import (
    RecordFormat, check_state, expected_shapes, file_kind, is_record_file, read_record_file,
    save_record_file, torch_load,
)
from extra.errors import FileKind, VPCError
from MNAD.model import FEATURE_DIM, MNAD

FORM = RecordFormat("mnad", "mnad-checkpoint", 1, "an MNAD checkpoint")
METADATA_KEY = FORM.key
WEIGHT_PREFIX = "model."
ITEMS_KEY = "memory.items"
CHECKPOINT_KIND = FileKind("MNAD checkpoint", "make it again with MNAD/train.py, or pass a state dict of the "
                                              "official model (.pth) and its memory items (keys.pt)")
ITEMS_KIND = FileKind("memory items file", "pass the keys.pt the official Train.py saved, or an MNAD checkpoint")
PICKLED_REMEDY = ("the official Train.py saves one; where the official code is installed, save its state dict with "
                  "torch.save(torch.load(path).state_dict(), 'state.pth') and pass that file")
# The parameters that tell the variant and the input size of an official state dict.
FIRST_CONV = "encoder.moduleConv1.0.weight"
FIRST_UPSAMPLING = "decoder.moduleUpsample4.0.weight"
LAST_CONV = "decoder.moduleDeconv1.6.weight"


@dataclass
class Checkpoint:
    """Weights in the official parameter names, the memory items (None when none were given), the
    model's constructor arguments (``MNAD(**config)``) and the trainer's settings record."""

    state: dict
    items: object
    config: dict
    settings: dict = field(default_factory=dict)

    def build(self):
        """The model with these weights (on the CPU; call ``.eval()`` before testing)."""
        model = MNAD(**self.config)
        model.load_state_dict(self.state, strict=True)
        return model


def is_checkpoint(path):
    """Whether ``path`` is an MNAD checkpoint; False for anything else, which another loader then reads or
    refuses."""
    return is_record_file(path, FORM)


def save_checkpoint(path, model, items, settings=None):
    """Write ``model``'s weights, ``items`` and the JSON-ready ``settings`` to ``path`` atomically."""
    tensors = {WEIGHT_PREFIX + name: value for name, value in model.state_dict().items()}
    tensors[ITEMS_KEY] = items.float()
    return save_record_file(path, tensors, FORM, {"model": model.config(), "settings": settings or {}})


def official_state(obj, path):
    """The official parameters out of a loaded ``.pth``: a plain state dict (or one under "state_dict"),
    a DataParallel "module." prefix removed."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, torch.Tensor):
        raise VPCError(f"{path} holds one tensor (memory items, like keys.pt), not the model's weights: pass it "
                       f"as the memory items and the state dict as the model")
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise VPCError(f"{path} is not a state dict of tensors; {CHECKPOINT_KIND.remedy}")
    state = {key[len("module."):] if key.startswith("module.") else key: value for key, value in obj.items()}
    if FIRST_CONV not in state:
        raise VPCError(f"{path} does not hold MNAD's parameters (no {FIRST_CONV}); {CHECKPOINT_KIND.remedy}")
    return state


def official_config(state, msize, path):
    """The constructor arguments of an official state dict: the variant from its first upsampling (half
    the channels with skips: prediction), the frame channels from its last convolution, the window
    length from its first convolution's input channels."""
    try:
        n_channel = state[LAST_CONV].shape[0]
        method = "pred" if state[FIRST_UPSAMPLING].shape[1] * 2 == state[FIRST_UPSAMPLING].shape[0] else "recon"
        in_channels = state[FIRST_CONV].shape[1]
    except (KeyError, IndexError) as error:
        raise VPCError(f"{path} lacks MNAD's parameter {error}; {CHECKPOINT_KIND.remedy}") from None
    if in_channels % n_channel or (method == "recon" and in_channels != n_channel):
        raise VPCError(f"{path}: its first convolution reads {in_channels} channels, no window of "
                       f"{n_channel}-channel frames; {CHECKPOINT_KIND.remedy}")
    t_length = in_channels // n_channel + 1 if method == "pred" else 1
    return {"method": method, "n_channel": n_channel, "t_length": t_length, "msize": msize,
            "fdim": FEATURE_DIM, "mdim": FEATURE_DIM}


def check_mnad_state(state, config, path):
    """Refuse a state dict that does not fit ``MNAD(**config)``: missing, unknown or misshapen parameters."""
    model = f"an MNAD {config.get('method')} model"
    check_state(state, expected_shapes(lambda: MNAD(**config), path, CHECKPOINT_KIND, "MNAD"), path,
                CHECKPOINT_KIND, model)


def check_items(items, path, kind=ITEMS_KIND):
    """Memory items as the model reads them: a 2-D float tensor of 512 columns -> float32, on the CPU."""
    if not isinstance(items, torch.Tensor) or items.ndim != 2 or items.shape[1] != FEATURE_DIM \
            or not items.is_floating_point() or items.shape[0] < 2:
        shape = tuple(items.shape) if isinstance(items, torch.Tensor) else type(items).__name__
        raise VPCError(f"{path} does not hold memory items (a (M, {FEATURE_DIM}) float tensor with M >= 2, got "
                       f"{shape}); {kind.remedy}")
    return items.detach().cpu().float().contiguous()


def load_items(path):
    """Memory items from a tensor file like the official keys.pt, or from an MNAD checkpoint."""
    path = Path(path)
    kind = file_kind(path, "memory items file")
    if kind == "safetensors":
        _, tensors = read_record_file(path, ITEMS_KIND, FORM)
        return check_items(tensors.get(ITEMS_KEY), path)
    if kind == "torch":
        return check_items(torch_load(path, ITEMS_KIND, PICKLED_REMEDY), path)
    raise VPCError(f"{path} is neither a torch tensor file nor an MNAD checkpoint (damaged or another kind of "
                   f"file); {ITEMS_KIND.remedy}")


def load_checkpoint(path, items_path=None):
    """A Checkpoint from an MNAD checkpoint or an official state dict; ``items_path`` (a keys.pt-like
    file) gives or replaces the memory items. Every parameter is checked against the model it builds."""
    path = Path(path)
    kind = file_kind(path, "MNAD checkpoint")
    if kind == "safetensors":
        record, tensors = read_record_file(path, CHECKPOINT_KIND, FORM)
        state = {key[len(WEIGHT_PREFIX):]: value for key, value in tensors.items() if key.startswith(WEIGHT_PREFIX)}
        items = check_items(tensors[ITEMS_KEY], path, CHECKPOINT_KIND) if ITEMS_KEY in tensors else None
        config, settings = record.get("model"), record.get("settings", {})
        if not isinstance(config, dict) or not isinstance(settings, dict):
            raise VPCError(f"{path} is damaged (its settings record cannot be read); {CHECKPOINT_KIND.remedy}")
    elif kind == "torch":
        state, items, settings = official_state(torch_load(path, CHECKPOINT_KIND, PICKLED_REMEDY), path), None, {}
        config = None
    else:
        raise VPCError(f"{path} is neither an MNAD checkpoint nor a torch state dict (damaged or another kind of "
                       f"file); {CHECKPOINT_KIND.remedy}")
    if items_path is not None:
        items = load_items(items_path)
    if config is None:
        config = official_config(state, 10 if items is None else items.shape[0], path)
    elif items is not None:
        config = {**config, "msize": items.shape[0]}
    check_mnad_state(state, config, path)
    return Checkpoint(state, items, config, settings)
