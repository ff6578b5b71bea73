"""The dual-memory model's training as the official train.py does it (DualMemory/SPEC.md, section 6),
repeatable and resumable.

Adam over every parameter at a constant learning rate; the training clips in order (``--shuffle``
shuffles them per epoch), batches without the last incomplete one. Each sample of a batch becomes a
skip-frame pseudo-anomaly with probability ``--pseudo_anomaly_jump`` (its stride drawn from ``--jump``),
then one official training step (DualMemory.model.train_step). Unlike the official code everything is
seeded (``--seed``): the weights from the seed, each epoch's pseudo-anomalies and order from (seed,
epoch), so a run resumed at an epoch goes on as an uninterrupted one.

After each epoch the run's folder gets a resume file (extra.training); a rerun with the same settings
continues from it and ends with the same weights to the bit as a run never interrupted (on the same
device and threads). The finished model is one checkpoint (DualMemory.checkpoints).
"""

import numpy as np
import torch

from DualMemory.checkpoints import load_checkpoint, save_checkpoint
from DualMemory.data import dual_windows, pseudo_input, skip_clip
from DualMemory.model import DualMemoryAE, official_optimizer, train_step
from DualMemory.options import CLIP_LENGTH, MODEL_FILE, RESUME_FILE
from extra.checkpoints import RecordFormat
from extra.device import default_device
from extra.lock import work_lock
from extra.training import TrainingRun, batches, shuffling, train_windows
from extra.windows import hold_out_pieces, run_record, training_videos

RESUME_FORM = RecordFormat("dual_memory_resume", "dual-memory-resume", 1, "a dual-memory resume file")
LOSSES = ("total", "mse", "entropy", "entropy_ano", "memory")


def lock(config):
    """The run lock of the model's files of a dataset (apart from the other methods'); sweeps what a killed
    run left."""
    return work_lock(config.work_dir, f"dual_memory-{config.dataset}", [config.method_dir])


def batch_of(windows, indices, config, rng):
    """The clips of a batch, each made a pseudo-anomaly with probability ``config.pseudo_anomaly_jump``
    (``rng`` draws it and the stride); returns (batch (B, C, 16, h, w), pseudo flags)."""
    clips, pseudo = [], []
    for index in indices:
        clip = windows[index]
        anomalous = bool(rng.random() < config.pseudo_anomaly_jump)
        if anomalous:
            skip = skip_clip(windows, index, int(rng.choice(config.jump)), rng, config.skip_end)
            clip = pseudo_input(clip, skip, config.pseudo_channels)
        clips.append(clip)
        pseudo.append(anomalous)
    return torch.stack(clips), pseudo


def train(config):
    """Train the run ``config`` names (or finish it from its resume file); returns the checkpoint's path."""
    videos = training_videos(config.settings, config.data_root, CLIP_LENGTH)
    with lock(config):
        return train_on(config, videos)


def train_on(config, videos, run_dir=None):
    """Train on ``videos`` (less the pieces ``config.hold_out`` holds out) into ``run_dir`` (default the
    run's folder), or finish it from its resume file. Returns the checkpoint's path."""
    pieces, held_out = hold_out_pieces(videos, config.hold_out, CLIP_LENGTH)
    run_dir = config.run_dir if run_dir is None else run_dir
    record = run_record(config, videos, held_out)
    device = default_device()
    torch.manual_seed(config.seed)      # the weights' initialisation
    model = DualMemoryAE(num_in_ch=3, mem_dim=config.mem_dim, shrink_thres=config.shrink_thres).to(device)
    optimizer = official_optimizer(model, config.lr)
    windows = dual_windows(pieces, config)
    n_batches = len(windows) // config.batch_size

    def run_epoch(epoch, state):
        rng = np.random.default_rng([config.seed, epoch])
        sums, pseudo_count = np.zeros(len(LOSSES)), 0
        order = batches(len(windows), config.batch_size, shuffling(config.seed, epoch) if config.shuffle else None)
        for indices in order:
            batch, pseudo = batch_of(windows, indices, config, rng)
            losses = train_step(model, optimizer, batch.to(device), pseudo, config.loss_m_weight,
                                reduction=config.loss_reduction, mem_loss=config.mem_loss,
                                memory_routing=config.memory_routing)
            sums += [getattr(losses, name) for name in LOSSES]
            pseudo_count += sum(pseudo)
        return {**dict(zip(LOSSES, (sums / n_batches).tolist())), "pseudo_anomalies": pseudo_count}, state

    def save(path, losses, state):
        save_checkpoint(path, model, {"training": record, "losses": losses})

    run = TrainingRun("dual-memory", config, record, run_dir / MODEL_FILE, run_dir / RESUME_FILE, RESUME_FORM, model,
                      optimizer, None, {}, run_epoch, save,
                      lambda path: load_checkpoint(path).settings.get("training", {}))
    return train_windows(run, device, pieces, held_out, windows, "the dual-memory model")
