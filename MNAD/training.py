"""MNAD's training as the official Train.py does it (MNAD/SPEC.md, section 6), repeatable and resumable.

Adam over the encoder's and decoder's parameters, the learning rate annealed by a cosine over the epochs
(stepped once per epoch), shuffled batches without the last incomplete one, the memory items carried from
batch to batch and updated by the model's forward. Unlike the official code everything is seeded
(``--seed``): the weights and items from the seed, each epoch's shuffling from (seed, epoch), so a run
resumed at an epoch shuffles as an uninterrupted one.

After each epoch the run's folder gets a resume file (safetensors: weights, items, Adam's moments;
its JSON metadata: the settings, the epoch, Adam's and the scheduler's other state). A rerun with
the same settings continues from it, and ends with the same weights and items to the bit as a run never
interrupted (on the same device and threads). The finished model is one checkpoint
(MNAD.checkpoints), and the resume file is removed.
"""
import json
import time

import numpy as np
import torch

from extra.datasets import scan_split, usable_videos
from extra.device import default_device, device_description
from extra.errors import VPCError
from extra.io import atomic_path
from extra.lock import work_lock
from extra.progress import progress
from MNAD import memory
from MNAD.checkpoints import load_checkpoint, save_checkpoint
from MNAD.data import Windows, hold_out_pieces
from MNAD.model import MNAD, optimizer_and_scheduler, train_step
from MNAD.options import MODEL_FILE, RESUME_FILE

RESUME_FORMAT, RESUME_VERSION, RESUME_KEY = "mnad-resume", 1, "mnad_resume"
WEIGHT_PREFIX, ITEMS_KEY, OPTIMIZER_PREFIX = "model.", "memory.items", "optimizer."
RESUME_REMEDY = "delete it, or pass --overwrite, to train from the start"


def lock(config):
    """The run lock of MNAD's files of a dataset (apart from VideoPatchCore's); sweeps what a killed run left."""
    return work_lock(config.work_dir, f"mnad-{config.dataset}", [config.mnad_dir])


def shuffling(seed, epoch):
    """The generator of an epoch's batch order: a function of (seed, epoch) alone."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def batches(n_windows, batch_size, generator):
    """Shuffled batches of window indices, the last incomplete one dropped (the official loader's drop_last)."""
    order = torch.randperm(n_windows, generator=generator).tolist()
    return [order[start:start + batch_size] for start in range(0, n_windows - batch_size + 1, batch_size)]


def training_videos(config):
    """The training videos long enough for a window (a shorter one is skipped with a warning)."""
    videos = usable_videos(scan_split(config.settings, config.data_root, "train"), config.t_length)
    if not videos:
        raise VPCError(f"no training video has the {config.t_length} frames one window needs (--t_length)")
    return videos


def run_record(config, videos, held_out):
    """The settings a model depends on, with the training videos (names and frames) of the split and the
    pieces of them held out of training (``held_out``: data.Piece)."""
    return {**config.training_record(), "videos": {video.name: video.n_frames for video in videos},
            "held_out": [piece.name for piece in held_out]}


# --- resume file ---------------------------------------------------------------------------------------

def write_resume(path, model, items, optimizer, scheduler, epoch, record, history):
    """The state after ``epoch`` epochs, atomically: tensors in safetensors, the rest as JSON metadata."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {WEIGHT_PREFIX + name: value.detach().cpu().contiguous().clone()
               for name, value in model.state_dict().items()}
    tensors[ITEMS_KEY] = items.detach().cpu().contiguous().clone()
    layout = {}
    for index, values in state["state"].items():
        layout[str(index)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIMIZER_PREFIX}{index}.{key}"] = value.detach().cpu().contiguous().clone()
                layout[str(index)][key] = None
            else:
                layout[str(index)][key] = value
    document = {"format": RESUME_FORMAT, "version": RESUME_VERSION, "settings": record, "epoch": epoch,
                "history": history, "optimizer_state": layout, "param_groups": state["param_groups"],
                "scheduler": scheduler.state_dict()}
    with atomic_path(path, needed_bytes=sum(t.nbytes for t in tensors.values())) as tmp:
        save_file(tensors, str(tmp), metadata={RESUME_KEY: json.dumps(document, sort_keys=True)})


def read_resume(path):
    """(document, tensors) of a resume file; a file that cannot be read is one line."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as opened:
            document = json.loads((opened.metadata() or {})[RESUME_KEY])
            tensors = {key: opened.get_tensor(key) for key in opened.keys()}
        if document["format"] != RESUME_FORMAT or document["version"] != RESUME_VERSION:
            raise ValueError(f"format {document['format']!r} {document['version']!r}")
        return document, tensors
    except Exception as error:      # every failure to parse means a damaged or foreign file
        detail = " ".join(str(error).split())[:120]
        raise VPCError(f"{path} is damaged (not a readable MNAD resume file: {detail}); {RESUME_REMEDY}") from None


def restore(document, tensors, model, optimizer, scheduler, path):
    """Load a resume file's state into the model, optimizer and scheduler; the items it holds."""
    try:
        model.load_state_dict({key[len(WEIGHT_PREFIX):]: value for key, value in tensors.items()
                               if key.startswith(WEIGHT_PREFIX)}, strict=True)
        state = {int(index): {key: tensors[f"{OPTIMIZER_PREFIX}{index}.{key}"] if value is None else value
                              for key, value in values.items()}
                 for index, values in document["optimizer_state"].items()}
        groups = [{**group, "betas": tuple(group["betas"])} for group in document["param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        scheduler.load_state_dict(document["scheduler"])
        return tensors[ITEMS_KEY]
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        detail = " ".join(str(error).split())[:120]
        raise VPCError(f"{path} is damaged (its state does not fit the model: {detail}); {RESUME_REMEDY}") from None


def _differences(found, expected):
    keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
    return "; ".join(f"{k}: file {found.get(k)!r}, this run {expected.get(k)!r}" for k in keys)[:300]


# --- training --------------------------------------------------------------------------------------------

def train(config):
    """Train the run ``config`` names (or finish it from its resume file); returns the checkpoint's path."""
    videos = training_videos(config)
    with lock(config):
        return train_on(config, videos)


def train_on(config, videos, run_dir=None):
    """Train on ``videos`` (less the pieces ``config.hold_out`` holds out) into ``run_dir`` (default the
    run's folder), or finish it from its resume file. Returns the checkpoint's path."""
    pieces, held_out = hold_out_pieces(videos, config.hold_out, config.t_length)
    run_dir = config.run_dir if run_dir is None else run_dir
    record = run_record(config, videos, held_out)
    model_path, resume_path = run_dir / MODEL_FILE, run_dir / RESUME_FILE
    if model_path.is_file() and not config.overwrite:
        found = load_checkpoint(model_path).settings.get("training", {})
        if found != json.loads(json.dumps(record)):
            raise VPCError(f"{model_path} was made with other settings ({_differences(found, record)}); delete it "
                           f"or pass --overwrite")
        print(f"already trained: {model_path} (--overwrite trains again)", flush=True)
        return model_path
    device = default_device()
    torch.manual_seed(config.seed)      # the weights' initialisation
    model = MNAD(config.method, t_length=config.t_length, msize=config.msize).to(device)
    optimizer, scheduler = optimizer_and_scheduler(model, lr=config.lr, epochs=config.epochs)
    items = memory.init_items(config.msize, model.config()["mdim"], seed=config.seed).to(device)
    start, history = 0, []
    if resume_path.is_file() and not config.overwrite:
        document, tensors = read_resume(resume_path)
        if document["settings"] != json.loads(json.dumps(record)):
            raise VPCError(f"{resume_path} was made with other settings ({_differences(document['settings'], record)}"
                           f"); {RESUME_REMEDY}")
        items = restore(document, tensors, model, optimizer, scheduler, resume_path).to(device)
        start, history = document["epoch"], document["history"]
        print(f"resuming {config.run_name} after epoch {start} of {config.epochs}: {resume_path}", flush=True)
    windows = Windows(pieces, config.t_length, config.h, config.w)
    n_batches = len(windows) // config.batch_size
    if n_batches == 0:
        raise VPCError(f"the training videos give {len(windows)} windows of {config.t_length} frames, fewer than one "
                       f"batch of {config.batch_size} (--batch_size)")
    if held_out:
        print(f"held out of training for the label-free calibration: {', '.join(p.name for p in held_out)}",
              flush=True)
    print(f"training MNAD {config.method} on {len(pieces)} videos, {len(windows)} windows, {n_batches} batches of "
          f"{config.batch_size} per epoch, {config.h} x {config.w}, on {device_description(device)}", flush=True)
    started = time.perf_counter()
    for epoch in progress(range(start, config.epochs), f"MNAD {config.run_name} epochs",
                          note=lambda epoch: _epoch_text(epoch, history[-1])):
        epoch_started = time.perf_counter()
        model.train()
        sums = np.zeros(3)
        for batch in batches(len(windows), config.batch_size, shuffling(config.seed, epoch)):
            window = torch.stack([windows[i] for i in batch]).to(device)
            items, losses = train_step(model, optimizer, window, items, config.loss_compact, config.loss_separate,
                                       config.swap, config.update_norm, config.loss_reduction)
            sums += (losses.pixel, losses.compactness, losses.separateness)
        scheduler.step()
        pixel, compactness, separateness = (sums / n_batches).tolist()
        history.append({"epoch": epoch + 1, "pixel": pixel, "compactness": compactness, "separateness": separateness,
                        "seconds": round(time.perf_counter() - epoch_started, 1)})
        write_resume(resume_path, model, items, optimizer, scheduler, epoch + 1, record, history)
    seconds = time.perf_counter() - started
    losses = [{key: value for key, value in entry.items() if key != "seconds"} for entry in history]
    save_checkpoint(model_path, model, items, {"training": record, "losses": losses})
    resume_path.unlink(missing_ok=True)
    done = config.epochs - start
    if done:
        print(f"trained {done} epoch(s) of {len(windows)} windows in {seconds:.1f} s "
              f"({done * n_batches * config.batch_size / seconds:.2f} training frames/s)", flush=True)
    print(f"model: {model_path}", flush=True)
    return model_path


def _epoch_text(epoch, entry):
    return (f"epoch {epoch + 1}: pixel {entry['pixel']:.6f}, compactness {entry['compactness']:.6f}, "
            f"separateness {entry['separateness']:.6f}, {entry['seconds']:.1f} s")
