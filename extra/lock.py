"""One run at a time on a dataset's files in a working directory.

A run holds an exclusive ``flock`` on ``<work_dir>/.lock-<dataset>`` for as long as it writes; the
operating system drops the lock when the process ends, however it ends (SIGKILL and the OOM killer
included), so a lock never outlives its run. A second run on the same files stops at once with a
message naming the first. Holding the lock also proves that the temporary files found under the
dataset's folders were left by a run that no longer exists: they are removed.
"""
import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path

from extra.errors import VPCError, warn
from extra.io import make_folder, stale_partials, write_failure


def lock_path(work_dir, dataset):
    return Path(work_dir) / f".lock-{dataset}"


@contextlib.contextmanager
def work_lock(work_dir, dataset, folders=()):
    """Hold the lock of ``dataset`` in ``work_dir``; remove stale temporary files under ``folders``."""
    make_folder(work_dir)
    path = lock_path(work_dir, dataset)
    try:
        handle = open(path, "a+")
    except OSError as error:        # a read-only working directory, typically
        raise write_failure(path, error) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise VPCError(f"another run is using the {dataset} files of {work_dir} ({holder}); wait for it to "
                           f"finish, or use another --work_dir or --work_num") from None
        command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200]
        try:        # unbuffered: a write that fails (a full disk) fails here, not again when the file closes
            os.ftruncate(handle.fileno(), 0)
            os.write(handle.fileno(), f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                                      f"{command}\n".encode())
        except OSError as error:
            raise write_failure(path, error) from None
        removed = [stale for folder in folders for stale in stale_partials(folder)]
        for stale in removed:
            stale.unlink(missing_ok=True)
        if removed:
            warn(f"removed {len(removed)} unfinished file(s) of an interrupted run (first: {removed[0]})")
        yield
    finally:
        handle.close()
