"""What every training-based method's training shares: seeded batch orders that depend on (seed, epoch)
alone, and the resume file written after each epoch, so that a run killed and rerun ends with the same
weights to the bit as one never interrupted (on the same device and threads).

``train_epochs`` is the epoch loop every such method runs (a ``TrainingRun`` says what is its own). A
resume file is a record file (extra.checkpoints): the model's weights under ``model.``, the method's
other tensors (memory items, ...) under their own names, Adam's moments under ``optimizer.``; its record
holds the run's settings, the epochs done, the loss history, and the optimizer's and scheduler's other
state.
"""
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from extra.checkpoints import read_record_file, save_record_file
from extra.errors import FileKind, VPCError
from extra.progress import progress

RESUME_REMEDY = "delete it, or pass --overwrite, to train from the start"
WEIGHT_PREFIX, OPTIMIZER_PREFIX = "model.", "optimizer."


def shuffling(seed, epoch):
    """The generator of an epoch's batch order: a function of (seed, epoch) alone."""
    import torch

    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def batches(n_windows, batch_size, generator=None):
    """Batches of window indices, the last incomplete one dropped (the official loaders' drop_last);
    shuffled by ``generator``, in order without one."""
    import torch

    order = torch.randperm(n_windows, generator=generator).tolist() if generator is not None else list(range(n_windows))
    return [order[start:start + batch_size] for start in range(0, n_windows - batch_size + 1, batch_size)]


def write_resume(path, form, model, optimizer, scheduler, tensors, document):
    """The state after an epoch, atomically: the model's weights, ``tensors`` (name -> tensor), Adam's
    moments; ``document`` (settings, epoch, history: JSON-ready) with the optimizer's and scheduler's
    other state (``scheduler`` may be None)."""
    state = optimizer.state_dict()
    saved = {WEIGHT_PREFIX + name: value for name, value in model.state_dict().items()}
    saved.update(tensors)
    layout = {}
    for index, values in state["state"].items():
        layout[str(index)] = {}
        for key, value in values.items():
            if hasattr(value, "shape"):
                saved[f"{OPTIMIZER_PREFIX}{index}.{key}"] = value
                layout[str(index)][key] = None
            else:
                layout[str(index)][key] = value
    save_record_file(path, saved, form, {**document, "optimizer_state": layout, "param_groups": state["param_groups"],
                                         "scheduler": None if scheduler is None else scheduler.state_dict()})


def read_resume(path, form):
    """(document, tensors) of a resume file; one line when unreadable."""
    what = form.title.split(" ", 1)[1]      # "an MNAD resume file" -> "MNAD resume file"
    return read_record_file(path, FileKind(what, RESUME_REMEDY), form)


def restore(document, tensors, model, optimizer, scheduler, path):
    """Load a resume file's weights and optimizer and scheduler state; the damage it may hide is one line."""
    try:
        model.load_state_dict({key[len(WEIGHT_PREFIX):]: value for key, value in tensors.items()
                               if key.startswith(WEIGHT_PREFIX)}, strict=True)
        state = {int(index): {key: tensors[f"{OPTIMIZER_PREFIX}{index}.{key}"] if value is None else value
                              for key, value in values.items()}
                 for index, values in document["optimizer_state"].items()}
        groups = [{**group, "betas": tuple(group["betas"])} for group in document["param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        if scheduler is not None:
            scheduler.load_state_dict(document["scheduler"])
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        detail = " ".join(str(error).split())[:120]
        raise VPCError(f"{path} is damaged (its state does not fit the model: {detail}); {RESUME_REMEDY}") from None


def differences(found, expected):
    """The settings two records disagree on, in words (for refusing a file made otherwise)."""
    found, expected = json.loads(json.dumps(found)), json.loads(json.dumps(expected))
    keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
    return "; ".join(f"{k}: file {found.get(k)!r}, this run {expected.get(k)!r}" for k in keys)[:300]


@dataclass
class TrainingRun:
    """One run of a training-based method, as the shared epoch loop (``train_epochs``) needs it.

    ``state``: tensors the method carries from epoch to epoch besides the model's weights (MNAD's memory
    items), saved in the resume file; ``run_epoch(epoch, state)`` trains one epoch and returns (its mean
    losses: a dict, the state after it); ``save(model_path, losses, state)`` writes the finished model;
    ``finished_record(model_path)`` reads the training record of a finished model."""

    title: str                  # e.g. "MNAD pred", for the log
    config: object              # run_name, epochs, overwrite
    record: dict                # the settings the model depends on
    model_path: Path
    resume_path: Path
    form: object                # the resume file's RecordFormat
    model: object
    optimizer: object
    scheduler: object           # None without one
    state: dict
    run_epoch: Callable
    save: Callable
    finished_record: Callable


def epoch_text(epoch, entry):
    """One epoch's line in the log: its mean losses and seconds."""
    values = ", ".join(f"{key} {value:.6f}" if isinstance(value, float) else f"{key} {value}"
                       for key, value in entry.items() if key not in ("epoch", "seconds"))
    return f"epoch {epoch + 1}: {values}, {entry['seconds']:.1f} s"


def already_trained(run):
    """Whether ``run``'s model is finished (and made with the same settings: else one line)."""
    if not run.model_path.is_file() or run.config.overwrite:
        return False
    found = run.finished_record(run.model_path)
    if differences(found, run.record):
        raise VPCError(f"{run.model_path} was made with other settings ({differences(found, run.record)}); delete it "
                       f"or pass --overwrite")
    print(f"already trained: {run.model_path} (--overwrite trains again)", flush=True)
    return True


def train_epochs(run, device):
    """Train ``run`` from its resume file when there is one (made with the same settings), epoch by
    epoch, a resume file after each, then save the model and remove the resume file. Returns (epochs
    trained now, their seconds)."""
    start, history, state = 0, [], run.state
    if run.resume_path.is_file() and not run.config.overwrite:
        document, tensors = read_resume(run.resume_path, run.form)
        if differences(document["settings"], run.record):
            raise VPCError(f"{run.resume_path} was made with other settings "
                           f"({differences(document['settings'], run.record)}); {RESUME_REMEDY}")
        restore(document, tensors, run.model, run.optimizer, run.scheduler, run.resume_path)
        missing = [name for name in state if name not in tensors]
        if missing:
            raise VPCError(f"{run.resume_path} is damaged (no {missing[0]}); {RESUME_REMEDY}")
        state = {name: tensors[name].to(device) for name in state}
        start, history = document["epoch"], document["history"]
        print(f"resuming {run.config.run_name} after epoch {start} of {run.config.epochs}: {run.resume_path}",
              flush=True)
    started = time.perf_counter()
    for epoch in progress(range(start, run.config.epochs), f"{run.title} {run.config.run_name} epochs",
                          note=lambda epoch: epoch_text(epoch, history[-1])):
        epoch_started = time.perf_counter()
        run.model.train()
        losses, state = run.run_epoch(epoch, state)
        if run.scheduler is not None:
            run.scheduler.step()
        history.append({"epoch": epoch + 1, **losses, "seconds": round(time.perf_counter() - epoch_started, 1)})
        write_resume(run.resume_path, run.form, run.model, run.optimizer, run.scheduler, state,
                     {"settings": run.record, "epoch": epoch + 1, "history": history})
    seconds = time.perf_counter() - started
    run.save(run.model_path, [{key: value for key, value in entry.items() if key != "seconds"} for entry in history],
             state)
    run.resume_path.unlink(missing_ok=True)
    return run.config.epochs - start, seconds


def train_windows(run, device, pieces, held_out, windows, what):
    """A training-based method's training, said as it goes: ``run`` unless it is finished, on the
    ``windows`` (extra.windows.Windows) of ``pieces``, ``held_out`` named; ``what`` names the model in the
    log. Returns the model's path."""
    config = run.config
    if already_trained(run):
        return run.model_path
    n_batches = len(windows) // config.batch_size
    if n_batches == 0:
        raise VPCError(f"the training videos give {len(windows)} windows of {windows.t_length} frames, fewer than one "
                       f"batch of {config.batch_size} (--batch_size)")
    if held_out:
        print(f"held out of training for the label-free calibration: {', '.join(p.name for p in held_out)}",
              flush=True)
    from extra.device import device_description

    print(f"training {what} on {len(pieces)} videos, {len(windows)} windows of {windows.t_length} frames, {n_batches} "
          f"batches of {config.batch_size} per epoch, {config.h} x {config.w}, on {device_description(device)}",
          flush=True)
    done, seconds = train_epochs(run, device)
    if done:
        print(f"trained {done} epoch(s) of {len(windows)} windows in {seconds:.1f} s "
              f"({done * n_batches * config.batch_size / seconds:.2f} training windows/s)", flush=True)
    print(f"model: {run.model_path}", flush=True)
    return run.model_path
