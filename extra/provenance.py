"""Settings recorded with each saved artifact, so results made under other settings never mix.

HDF5 files keep the record as a JSON attribute; memory banks (plain tensors, the authors' format)
keep it in a JSON file beside them. Files without a record (the authors' published ones) are
accepted as they are.
"""
import json
from pathlib import Path

from extra.errors import VPCError, warn
from extra.io import atomic_path

H5_ATTRIBUTE = "vpc_settings"


def _canonical(record):
    """JSON round trip: tuples become lists, so a fresh record compares equal to a loaded one."""
    return json.loads(json.dumps(record, sort_keys=True))


def write_h5_record(h5_file, record):
    h5_file.attrs[H5_ATTRIBUTE] = json.dumps(record, sort_keys=True)


def read_h5_record(h5_file):
    text = h5_file.attrs.get(H5_ATTRIBUTE)
    return None if text is None else json.loads(text)


def sidecar_path(path):
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_sidecar_record(path, record):
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(record, sort_keys=True, indent=1))


def read_sidecar_record(path):
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        return json.loads(sidecar.read_text())
    except (ValueError, OSError):
        raise VPCError(f"{sidecar} is damaged (not a readable JSON settings record): delete it and {Path(path).name}, "
                       f"or pass --overwrite, and rerun") from None


def check_record(found, expected, path):
    """Refuse an artifact whose recorded settings differ from this run's (None: no record, accepted)."""
    if found is None:
        return
    expected = _canonical(expected)
    differing = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
    if differing:
        detail = "; ".join(f"{k}: file {found.get(k)!r}, this run {expected.get(k)!r}" for k in differing)
        raise VPCError(f"{path} was made with other settings ({detail}); delete it, pass --overwrite, "
                       f"or use another --work_num")


def write_json_record(path, record, content):
    """A JSON artifact with the settings it was made with: {"record": ..., "content": ...}, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"record": record, "content": content}, sort_keys=True, indent=1))


def read_json_record(path, record):
    """The content of a JSON artifact made with ``record``; None (to be made again) when it was made
    with other settings or cannot be read, with a warning for the latter."""
    try:
        saved = json.loads(Path(path).read_text())
        found, content = saved["record"], saved["content"]
    except (ValueError, KeyError, TypeError, OSError):
        warn(f"{path} is damaged (not a readable JSON artifact): making it again")
        return None
    return content if found == _canonical(record) else None
