"""Videos spread over Ray workers (``--ray``): one task per video, the results back in video order.

Without ``--ray`` nothing here imports Ray and ``map_videos`` runs the videos in this process, one
after another, as the stages always did. With it, each video is a Ray task (one GPU each when the
cluster has GPUs). A task makes its model (detector, encoder) through a ``WorkerModel``: once per
worker process, kept for the worker's next videos. Tasks write the same per-video files as one
process, through the same functions (atomic, skipped when finished), so a task whose worker died
(killed, out of memory, its machine lost) is simply run again by Ray, and a rerun of the command
skips the videos already done. Every machine must see the repository at the same path and the
working directory on a shared file system.
"""
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Callable

from extra.errors import VPCError
from extra.progress import progress

REPOSITORY = Path(__file__).resolve().parent.parent
RAY_INSTALL = "pip install -r requirements-ray.txt"
# Runs of a video after the first when its worker process dies. An error the video itself raises
# is not retried: it would only happen again.
WORKER_RETRIES = 3


@dataclass(frozen=True)
class RayCluster:
    """Where ``--ray`` runs the videos: "local" (a Ray started by this process, with ``cpus`` CPUs,
    default this machine's), "auto" (the cluster this machine joined with ``ray start``) or the
    address of a cluster's head."""

    address: str
    cpus: int = None


def ray_cluster(address, cpus=None):
    """The RayCluster of the --ray and --ray_cpus flags; None without --ray (one process, no Ray)."""
    if address is None:
        if cpus is not None:
            raise VPCError("--ray_cpus needs --ray local")
        return None
    if cpus is not None and (address != "local" or cpus < 1):
        raise VPCError(f"--ray_cpus takes a positive number of CPUs and goes with --ray local, got {cpus} "
                       f"with --ray {address}")
    if importlib.util.find_spec("ray") is None:
        raise VPCError(f"--ray needs Ray, which is not installed: {RAY_INSTALL}")
    return RayCluster(address, cpus)


def connect(cluster):
    """This process's Ray, started or joined on first use (a Ray already running here is used as it is)."""
    import ray   # seconds to import: only when --ray is given

    if not ray.is_initialized():
        if not sys.stdout.isatty():     # workers' lines come prefixed with their pid; no colour codes in a log
            os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        where = (dict(num_cpus=cluster.cpus, include_dashboard=False) if cluster.address == "local"
                 else dict(address=cluster.address))
        # Workers import the project's modules by name, from the same path on every machine.
        paths = [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
        try:
            ray.init(**where, runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
                     logging_level="warning")
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise VPCError(f"cannot reach the Ray cluster at {cluster.address} ({' '.join(str(error).split())[:160]}):"
                           f" start one with `ray start --head`, or use --ray local") from None
    return ray


def _run_on_worker(task, video, threads):
    """One video's task on a Ray worker, computing with the driver's number of torch threads: float
    sums on a CPU depend on how they are split over threads, and the results must be bit-identical
    to one process's."""
    import torch

    torch.set_num_threads(threads)
    return task(video)


def map_videos(task, videos, label, cluster=None):
    """``task(video)`` for each video, the results in video order, a progress line per video done.

    Without ``cluster``: in this process, one after another. With one: each video a Ray task, the
    task (its settings, shared data) shipped once; a video whose worker dies is run again, up to
    WORKER_RETRIES times; an error a video raises stops the map as it would in one process.
    """
    videos = list(videos)
    if cluster is None:
        return [task(video) for video in progress(videos, label)]
    ray = connect(cluster)
    import torch

    gpus = 1 if ray.cluster_resources().get("GPU", 0) else 0
    remote = ray.remote(_run_on_worker).options(max_retries=WORKER_RETRIES, num_gpus=gpus)
    shared = ray.put(task)
    results = [remote.remote(shared, video, torch.get_num_threads()) for video in videos]
    video_of = dict(zip(results, videos))
    pending, finished = list(results), {}
    try:
        for _ in progress(videos, label):
            done, pending = ray.wait(pending, num_returns=1)
            finished[done[0]] = _result(ray, done[0], video_of[done[0]])
    except BaseException:
        for ref in pending:      # a failed map leaves nothing running on the cluster
            ray.cancel(ref)
        raise
    return [finished[ref] for ref in results]


def _result(ray, ref, video):
    """A finished task's result; its error as this process would have raised it."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, (VPCError, OSError)):      # bad input or a disk: one line, as without Ray
            raise error.cause from None
        raise
    except ray.exceptions.RayError as error:                  # the worker died every time, or its machine
        raise VPCError(f"video {getattr(video, 'name', video)}: its Ray worker died {WORKER_RETRIES + 1} times "
                       f"({' '.join(str(error).split())[:160]}); finished videos are kept, a rerun "
                       f"resumes") from None


# The model of this process's WorkerModel: [(recipe, model)], at most one, so a worker never holds two.
_worker_model = []


@dataclass(frozen=True)
class WorkerModel:
    """A model that per-video tasks make where they run: ``make(*args)``, once per process, kept for
    the next tasks that ask for an equal recipe. Picklable: a Ray task carries the recipe, not the model."""

    make: Callable
    args: tuple = ()

    def __call__(self):
        if not _worker_model or _worker_model[0][0] != self:
            _worker_model.clear()       # the last recipe's model goes before the next one loads
            _worker_model.append((self, self.make(*self.args)))
        return _worker_model[0][1]


def model_getter(cluster, make, *args):
    """What per-video tasks call for their model (a detector, an encoder): ``make(*args)`` on first
    use, once per run in this process without a cluster, once per worker process with one."""
    if cluster is None:
        return cache(partial(make, *args))
    return WorkerModel(make, args)
