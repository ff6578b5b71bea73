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

import numpy as np
import torch

from extra.checkpoints import RecordFormat
from extra.device import default_device
from extra.lock import work_lock
from extra.training import TrainingRun, batches, shuffling, train_windows
from extra.windows import hold_out_pieces, run_record, training_videos
from MNAD import memory
from MNAD.checkpoints import load_checkpoint, save_checkpoint
from MNAD.data import mnad_windows
from MNAD.model import MNAD, optimizer_and_scheduler, train_step
from MNAD.options import MODEL_FILE, RESUME_FILE

RESUME_FORM = RecordFormat("mnad_resume", "mnad-resume", 1, "an MNAD resume file")
ITEMS_KEY = "memory.items"


def lock(config):
    """The run lock of MNAD's files of a dataset (apart from VideoPatchCore's); sweeps what a killed run left."""
    return work_lock(config.work_dir, f"mnad-{config.dataset}", [config.mnad_dir])


# --- training --------------------------------------------------------------------------------------------

def train(config):
    """Train the run ``config`` names (or finish it from its resume file); returns the checkpoint's path."""
    videos = training_videos(config.settings, config.data_root, config.t_length)
    with lock(config):
        return train_on(config, videos)


def train_on(config, videos, run_dir=None):
    """Train on ``videos`` (less the pieces ``config.hold_out`` holds out) into ``run_dir`` (default the
    run's folder), or finish it from its resume file. Returns the checkpoint's path."""
    pieces, held_out = hold_out_pieces(videos, config.hold_out, config.t_length)
    run_dir = config.run_dir if run_dir is None else run_dir
    record = run_record(config, videos, held_out)
    device = default_device()
    torch.manual_seed(config.seed)      # the weights' initialisation
    model = MNAD(config.method, t_length=config.t_length, msize=config.msize).to(device)
    optimizer, scheduler = optimizer_and_scheduler(model, lr=config.lr, epochs=config.epochs)
    items = memory.init_items(config.msize, model.config()["mdim"], seed=config.seed).to(device)
    windows = mnad_windows(pieces, config)
    n_batches = len(windows) // config.batch_size

    def run_epoch(epoch, state):
        items, sums = state[ITEMS_KEY], np.zeros(3)
        for batch in batches(len(windows), config.batch_size, shuffling(config.seed, epoch)):
            window = torch.stack([windows[i] for i in batch]).to(device)
            items, losses = train_step(model, optimizer, window, items, config.loss_compact, config.loss_separate,
                                       config.swap, config.update_norm, config.loss_reduction)
            sums += (losses.pixel, losses.compactness, losses.separateness)
        return dict(zip(("pixel", "compactness", "separateness"), (sums / n_batches).tolist())), {ITEMS_KEY: items}

    def save(path, losses, state):
        save_checkpoint(path, model, state[ITEMS_KEY], {"training": record, "losses": losses})

    run = TrainingRun("MNAD", config, record, run_dir / MODEL_FILE, run_dir / RESUME_FILE, RESUME_FORM, model,
                      optimizer, scheduler, {ITEMS_KEY: items}, run_epoch, save,
                      lambda path: load_checkpoint(path).settings.get("training", {}))
    return train_windows(run, device, pieces, held_out, windows, f"MNAD {config.method}")
