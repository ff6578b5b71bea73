"""Trained models' files, every training-based method's: a safetensors file of named tensors with one
JSON record as its only metadata entry (keys sorted, so the same model gives the same bytes), written
atomically and read without executing code; and the official files of the methods' authors, torch
state dicts read with ``weights_only=True``.

Every problem with a file is one VPCError line: which file, what is wrong, what to do (a ``FileKind``).
"""
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

from extra.errors import VPCError
from extra.io import atomic_path


@dataclass(frozen=True)
class RecordFormat:
    """How a family of files names itself: the metadata entry holding its record, and the format and
    version the record carries."""

    key: str            # the metadata entry, e.g. "mnad"
    name: str           # the format, e.g. "mnad-checkpoint"
    version: int
    title: str          # what it is, in words: "an MNAD checkpoint"


def one_line(error):
    return " ".join(str(error).split())[:160]


def save_record_file(path, tensors, form, record):
    """Write ``tensors`` (name -> tensor) and ``record`` (JSON-ready) to ``path`` atomically."""
    from safetensors.torch import save_file

    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in tensors.items()}
    document = {"format": form.name, "version": form.version, **record}
    with atomic_path(path, needed_bytes=sum(t.nbytes for t in tensors.values())) as tmp:
        save_file(tensors, str(tmp), metadata={form.key: json.dumps(document, sort_keys=True)})
    return Path(path)


def file_kind(path, what):
    """"safetensors", "torch" (zip archive or legacy pickle), or None for anything else, of the file at
    ``path``, which must exist (``what`` it should be names it otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise VPCError(f"{what} not found: {path}")
    with open(path, "rb") as file:
        head = file.read(9)
    # safetensors first: its 8-byte header length may begin with 0x80, a pickle's first byte
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    return None


def is_record_file(path, form):
    """Whether ``path`` is a safetensors file of ``form``'s family; False for anything else."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as opened:
            return form.key in (opened.metadata() or {})
    except Exception:       # not a safetensors file, or a damaged one: not recognisably of this family
        return False


def read_record_file(path, kind, form):
    """(record, tensors) of a file of ``form``'s family; ``kind`` (a FileKind) names it in errors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as opened:
            metadata = opened.metadata() or {}
            tensors = {key: opened.get_tensor(key) for key in opened.keys()}
    except Exception as error:      # every parse failure means a damaged or foreign file
        raise VPCError(f"{path} is not a readable {kind.what} (damaged, cut short, or another kind of file: "
                       f"{one_line(error)}); {kind.remedy}") from None
    try:
        record = json.loads(metadata[form.key])
    except (KeyError, ValueError):
        raise VPCError(f"{path} is a safetensors file but not {form.title}; {kind.remedy}") from None
    if not isinstance(record, dict) or record.get("format") != form.name or record.get("version") != form.version:
        found = record if not isinstance(record, dict) else f"{record.get('format')!r}, version {record.get('version')!r}"
        raise VPCError(f"{path} is not {form.title} this version reads (format {found}; this one reads "
                       f"{form.name!r} {form.version}); {kind.remedy}")
    return record, tensors


def torch_load(path, kind, pickled_remedy):
    """A torch file read without running code (weights_only); a whole pickled model is refused with
    ``pickled_remedy`` (how to turn it into a state dict)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" in str(error).lower():
            raise VPCError(f"{path} holds a whole pickled model, which cannot be read without running its code: "
                           f"{pickled_remedy}") from None
        raise VPCError(f"{path} is not a readable {kind.what} ({one_line(error)}); {kind.remedy}") from None
    except Exception as error:      # a cut-short archive, a bad pickle: the file is damaged
        raise VPCError(f"{path} is not a readable {kind.what} (damaged or cut short: {one_line(error)}); "
                       f"{kind.remedy}") from None


def check_state(state, expected, path, kind, model):
    """Refuse a state dict that does not fit the parameter shapes ``expected`` (name -> shape) of
    ``model`` (words): missing, unknown or misshapen parameters."""
    missing = [name for name in expected if name not in state]
    unknown = [name for name in state if name not in expected]
    misshapen = [name for name in expected if name in state and tuple(state[name].shape) != tuple(expected[name])]
    for problem, names in (("lacks", missing), ("has unknown parameters such as", unknown),
                           ("has parameters of the wrong shape such as", misshapen)):
        if names:
            raise VPCError(f"{path} {problem} {names[0]} ({len(names)} in all) for {model}; {kind.remedy}")


def expected_shapes(build, path, kind, model):
    """{name: shape} of the state dict of ``build()`` made on the meta device (nothing allocated); a
    model that cannot be made from the file's settings means a damaged file."""
    import torch

    try:
        with torch.device("meta"):
            return {name: tuple(value.shape) for name, value in build().state_dict().items()}
    except (TypeError, ValueError, VPCError) as error:     # settings the model does not take, or refuses
        raise VPCError(f"{path} is damaged (its model settings are not {model}'s: {one_line(error)}); "
                       f"{kind.remedy}") from None
