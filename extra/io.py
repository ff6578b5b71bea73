"""Atomic file output: a run that is interrupted, or whose disk fills, never leaves a half-written
file behind, and a write that fails ends in one line naming the folder.
"""
import contextlib
import errno
import os
import pickle
import shutil
from pathlib import Path

from extra.errors import VPCError

# Temporary names carry this mark; ``stale_partials`` finds what a killed run left.
PARTIAL_MARK = ".partial"
# Errors of the disk rather than of the data: they become a one-line message.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
# How libraries that do not keep errno (h5py, torch's zip writer) word a failed write.
_WRITE_FAILURE_TEXT = ("no space left", "errno = 28", "file write failed", "disk quota", "read-only file system",
                       "input/output error", "permission denied")


def partial_path(path):
    """The temporary name of ``path``: hidden, beside it, keeping its suffix (h5py and torch look at it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}{PARTIAL_MARK}{path.suffix}")


def stale_partials(folder):
    """Temporary files under ``folder`` (recursively): only a killed run leaves them."""
    folder = Path(folder)
    return sorted(folder.rglob(f".*{PARTIAL_MARK}*")) if folder.is_dir() else []


def make_folder(folder):
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VPCError(f"cannot create folder {folder}: {error.strerror or error}") from None


def _is_disk_failure(error):
    if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:
        return True
    text = str(error).lower()
    return isinstance(error, (OSError, RuntimeError)) and any(t in text for t in _WRITE_FAILURE_TEXT)


def _megabytes(n_bytes):
    return f"{n_bytes / 2 ** 20:.1f} MB"


def write_failure(path, error, needed_bytes=None):
    """The one-line VPCError for a failed write of ``path``: which folder, why, and for a full disk
    how much room the step needs next to what is free."""
    folder = Path(path).parent
    free = shutil.disk_usage(folder).free if folder.is_dir() else None
    text = str(error).lower()
    full = (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        "no space left" in text or "errno = 28" in text or "disk quota" in text or (free is not None and free < 2 ** 20)
    if full:
        need = f"; this step writes about {_megabytes(needed_bytes)}" if needed_bytes else ""
        left = f"{_megabytes(free)} free" if free is not None else "no space left"
        return VPCError(f"disk full while writing {path.name} in {folder} ({left}{need}): free some space and "
                        f"rerun the same command; finished files are kept and the run resumes")
    reason = (error.strerror if isinstance(error, OSError) and error.strerror else " ".join(str(error).split()))[:200]
    return VPCError(f"cannot write {path.name} in {folder} ({reason}): check that the folder is writable and the "
                    f"disk is healthy, then rerun; finished files are kept")


def _usual_file_mode():
    """0o666 less the process's umask: the mode a plain open() gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


USUAL_FILE_MODE = _usual_file_mode()


@contextlib.contextmanager
def atomic_path(path, needed_bytes=None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Usage: ``with atomic_path(out) as tmp: write_to(tmp)``. On any failure the temporary file is
    removed; a failure of the disk (full, read-only, I/O error) becomes a one-line VPCError that
    names the folder (``needed_bytes``, a number or a function giving one, is what the step needs).
    """
    path = Path(path)
    make_folder(path.parent)
    tmp = partial_path(path)
    try:
        yield tmp
        if tmp.is_file():       # some writers (safetensors) make their files private: the user's usual mode
            os.chmod(tmp, USUAL_FILE_MODE)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        if _is_disk_failure(error):
            needed = needed_bytes() if callable(needed_bytes) else needed_bytes
            raise write_failure(path, error, needed) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def save_pickle(obj, path):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f)


def load_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)
