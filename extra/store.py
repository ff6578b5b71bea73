"""The one place that writes and reads the stages' per-video clip files and tensor files.

**Clip files** (object batches, local and global features; WORK_README.md): one HDF5 file per
video, one dataset per clip named ``clip_key(i)``, a clip without objects holding the one-element
placeholder ``empty_clip()``. The file carries its settings record (extra.provenance) and, written
last, a completeness mark: the number of clips and a CRC-32 of every clip's bytes. A file is
written under a temporary name and renamed when complete, so an existing file is a finished one;
the mark catches what happens to it afterwards (cut short, overwritten, altered). Every clip read
for use is checked against its CRC (its bytes are in memory by then, so this is cheap); checking
the clips of a file that is only being reused costs a full read and is done on request (verify).
Files without a mark (the authors' published ones) are accepted as their format allows.

**Tensor files** (memory banks): a 2-D torch tensor (the authors' format) with a JSON sidecar
holding the settings record and, under ``CONTENT_KEY``, its shape and CRC-32. The sidecar is
written first, so a bank replaced or cut short after it no longer matches and is refused.

Damage is reported as one VPCError line: which file, what is wrong, what to do.
"""
import contextlib
import json
import zlib
from pathlib import Path

import h5py
import numpy as np
import torch

from extra.errors import FileKind, VPCError  # noqa: F401 (FileKind is also imported from here)
from extra.io import atomic_path
from extra.provenance import check_record, read_h5_record, read_sidecar_record, write_h5_record, write_sidecar_record

COMPLETE_ATTRIBUTE = "vpc_complete"     # {"clips": n, "crc32": [one per clip]}
CONTENT_KEY = "_content"                # in a tensor's sidecar: {"shape": [...], "dtype": "...", "crc32": n}


def clip_key(clip_index):
    """HDF5 dataset name of a clip: its index zero-padded to four digits."""
    return f"{clip_index:04d}"


def empty_clip():
    """The placeholder stored for a clip without objects: a one-element zero array."""
    return np.zeros(1, dtype=np.float32)


def is_empty_clip(array):
    """The placeholder is the only one-dimensional clip array."""
    return array.ndim == 1


def crc32(array):
    return zlib.crc32(np.ascontiguousarray(array).data) & 0xFFFFFFFF


def damaged(path, kind, problem):
    return VPCError(f"{path} is damaged ({problem}): delete it or pass --overwrite, then {kind.remedy}")


# --- clip files: writing ---------------------------------------------------------------------------

class ClipFileWriter:
    """Clips added in order; ``close`` writes the completeness mark. Use through ``write_clip_file``."""

    def __init__(self, h5_file, n_clips):
        self.file, self.n_clips, self.checksums, self.bytes = h5_file, n_clips, [], 0

    @property
    def attrs(self):
        """The file's attributes, for what a writer records beside the clips (a timing, say)."""
        return self.file.attrs

    def add(self, clip_index, array, **attributes):
        """Store one clip's array (``attributes`` go on its dataset, e.g. the boxes of object batches)."""
        if clip_index != len(self.checksums):
            raise RuntimeError(f"clip {clip_index} added after {len(self.checksums)} clips")   # a bug, not bad input
        array = np.ascontiguousarray(array)
        dataset = self.file.create_dataset(clip_key(clip_index), data=array)
        for name, value in attributes.items():
            dataset.attrs[name] = value
        self.checksums.append(crc32(array))
        self.bytes += array.nbytes

    def needed_bytes(self):
        """The file's expected size, from the clips written so far."""
        return self.bytes * self.n_clips // max(len(self.checksums), 1)

    def finish(self):
        if len(self.checksums) != self.n_clips:
            raise RuntimeError(f"{len(self.checksums)} of {self.n_clips} clips written")   # a bug, not bad input
        self.file.attrs[COMPLETE_ATTRIBUTE] = json.dumps({"clips": self.n_clips, "crc32": self.checksums})


@contextlib.contextmanager
def write_clip_file(path, record, n_clips):
    """Yield a ClipFileWriter; the file appears at ``path`` only once its ``n_clips`` clips are in."""
    writer = None
    with atomic_path(path, needed_bytes=lambda: writer and writer.needed_bytes()) as tmp:
        with h5py.File(tmp, "w") as file:
            write_h5_record(file, record)
            writer = ClipFileWriter(file, n_clips)
            yield writer
            writer.finish()


# --- clip files: reading ---------------------------------------------------------------------------

class ClipFile:
    """A finished clip file opened for reading, its structure checked. Use through ``open_clip_file``."""

    def __init__(self, path, kind, file):
        self.path, self.kind, self.file = Path(path), kind, file
        try:        # attributes altered or overwritten: the same damage as a clip's
            self.record = read_h5_record(file)
            mark = file.attrs.get(COMPLETE_ATTRIBUTE)
            mark = None if mark is None else json.loads(mark)
            if mark is not None:
                mark = {"clips": int(mark["clips"]), "crc32": [int(c) for c in mark["crc32"]]}
            if not isinstance(self.record, (dict, type(None))) or (mark and len(mark["crc32"]) != mark["clips"]):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise damaged(path, kind, "its settings record or completeness mark cannot be read") from None
        keys = sorted(file.keys())
        self.n_clips = len(keys)
        if keys != [clip_key(i) for i in range(self.n_clips)]:
            raise damaged(path, kind, f"its datasets are not clips 0000..{self.n_clips - 1:04d}")
        self.checksums = None
        if mark is not None:
            if mark["clips"] != self.n_clips:
                raise damaged(path, kind, f"{self.n_clips} of its {mark['clips']} clips are there")
            self.checksums = mark["crc32"]

    def shape(self, clip_index):
        return self.file[clip_key(clip_index)].shape

    def shapes(self):
        return [self.shape(i) for i in range(self.n_clips)]

    def file_attribute(self, name):
        """An attribute of the file, None when it has none."""
        return self.file.attrs.get(name)

    def attribute(self, clip_index, name):
        """An attribute of one clip's dataset, None when it has none."""
        return self.file[clip_key(clip_index)].attrs.get(name)

    def clip(self, clip_index):
        """One clip's array, checked against the file's CRC when it has one."""
        try:
            array = self.file[clip_key(clip_index)][()]
        except (OSError, KeyError) as error:
            raise damaged(self.path, self.kind, f"clip {clip_key(clip_index)} cannot be read: "
                                                f"{' '.join(str(error).split())[:120]}") from None
        if self.checksums is not None and crc32(array) != self.checksums[clip_index]:
            raise damaged(self.path, self.kind, f"clip {clip_key(clip_index)} does not match its checksum")
        return array

    def clips(self, clip_indices=None):
        indices = range(self.n_clips) if clip_indices is None else clip_indices
        return [self.clip(i) for i in indices]

    def verify(self):
        """Read every clip once and check it (what --verify asks of reused files)."""
        for i in range(self.n_clips):
            self.clip(i)


@contextlib.contextmanager
def open_clip_file(path, kind, record=None, n_clips=None, ignore=(), verify=False):
    """Open a finished clip file after checking it: present, readable, its record equal to
    ``record`` (but for the keys in ``ignore``; no check when either is None), complete, and
    with ``n_clips`` clips when given. ``verify`` also reads and checks every clip."""
    path = Path(path)
    if not path.is_file():
        raise VPCError(f"{kind.what} not found: {path}; {kind.remedy}")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        problem = "cut short" if "truncated" in str(error) else "not a readable HDF5 file"
        raise damaged(path, kind, problem) from None
    with file:
        opened = ClipFile(path, kind, file)
        if record is not None:
            found = opened.record
            if found is not None:
                found = {key: value for key, value in found.items() if key not in ignore}
            check_record(found, {key: value for key, value in record.items() if key not in ignore}, path)
        if n_clips is not None and opened.n_clips != n_clips:
            made_with = (opened.record or {}).get("consecutive")
            made_with = "" if made_with is None else f", made with --consecutive {made_with}"
            raise VPCError(f"{path} holds {opened.n_clips} clips{made_with}, the video gives {n_clips}: "
                           f"delete it or pass --overwrite, then {kind.remedy}")
        if verify:
            opened.verify()
        yield opened


def read_clip_file(path, kind, record=None, n_clips=None):
    """Every clip of a file (checked as ``open_clip_file`` does), and the file's record."""
    with open_clip_file(path, kind, record, n_clips) as opened:
        return opened.clips(), opened.record


def is_finished(path, kind, record, n_clips, overwrite=False, verify=False):
    """Whether a run may keep the file at ``path``: it exists, made with ``record``, whole. A file
    made with other settings, or damaged, stops the run (one line); ``overwrite`` redoes it."""
    if overwrite or not Path(path).is_file():
        return False
    with open_clip_file(path, kind, record, n_clips, verify=verify):
        return True


# --- tensor files ------------------------------------------------------------------------------------

def tensor_content(tensor):
    """What a tensor's sidecar records of its content: shape, dtype and CRC-32 of its bytes."""
    array = tensor.detach().cpu().contiguous().numpy()
    return {"shape": list(array.shape), "dtype": str(array.dtype), "crc32": crc32(array)}


def save_tensor(tensor, path, record):
    """Write ``tensor`` (torch.save, the authors' format) with its record and content in the sidecar."""
    write_sidecar_record(path, {**record, CONTENT_KEY: tensor_content(tensor)})
    with atomic_path(path, needed_bytes=tensor.nbytes) as tmp:
        torch.save(tensor.detach().cpu(), tmp)


def load_tensor(path, kind, record, ndim=2):
    """A saved tensor after checking its record, that it is a tensor of ``ndim`` dimensions, and that
    it matches the content its sidecar recorded (files without a sidecar: the authors' own)."""
    path = Path(path)
    if not path.is_file():
        raise VPCError(f"{kind.what} not found: {path}; {kind.remedy}")
    sidecar = read_sidecar_record(path)
    content = None if sidecar is None else sidecar.pop(CONTENT_KEY, None)
    check_record(sidecar, record, path)
    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:       # every unpickling or zip failure means the same to the user
        raise damaged(path, kind, "not a saved torch tensor: cut short or overwritten") from None
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != ndim:
        found = f"a {tensor.ndim}-D tensor" if isinstance(tensor, torch.Tensor) else f"a {type(tensor).__name__}"
        raise damaged(path, kind, f"expected a {ndim}-D tensor, found {found}")
    if content is not None and tensor_content(tensor) != content:
        raise damaged(path, kind, "its content differs from what was recorded when it was written")
    return tensor

