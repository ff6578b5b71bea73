"""The dual-memory model's test loop as the official evaluate.py does it (DualMemory/SPEC.md, section 7),
evaluated by the harness every method shares (extra.evaluation).

Every 16-frame clip of a test video, in order, scores its 9th frame with the PSNR of its reconstruction
through the normal memory; per video the labels of the frames scored (frames 8 .. n - 8), then micro,
macro and padded macro AUROC of 1 - PSNR' in three columns: the published protocol and the fixed column
(the same: nothing is tuned), and label-free for a run trained with ``--hold_out``: the PSNR's scale
and an alarm threshold from the training footage held out of its training, with pseudo-anomalies
(extra.heldout), no test statistic used.
"""
import time

import numpy as np

from DualMemory.checkpoints import load_checkpoint
from DualMemory.data import dual_windows
from DualMemory.model import clip_psnr
from DualMemory.options import CLIP_LENGTH, MODEL_FILE
from DualMemory.scoring import STREAMS, TITLES, DualWeights, calibrate, cut_labels, dual_evaluation, dual_streams
from DualMemory.training import lock
from extra.device import default_device, device_description
from extra.errors import VPCError
from extra.evaluation.fusion import refuse_constant
from extra.evaluation.harness import evaluate
from extra.evaluation.results import SavedEvaluation, report
from extra.evaluation.scores import make_video_scores
from extra.heldout import heldout_calibration
from extra.progress import progress
from extra.windows import held_out_again, test_videos, whole

LABEL_FREE_NOTE = ("label-free: none, this run trained on every training video; train with --hold_out K for a "
                   "label-free column (normalisation and threshold from K held-out videos)\n")
STYLES = {"psnr": ("tab:blue", "1 - PSNR' (per video)"), "total": ("black", "total")}


def score_clips(model, clips, device):
    """The PSNR of each clip's scored frame, in order (``clips``: an iterable of (C, 16, h, w) tensors)."""
    return np.asarray([clip_psnr(model, clip[None].to(device)) for clip in clips])


def score_videos(model, videos, config, device):
    """Per test video, the PSNR of every clip's scored frame, in order."""
    windows = dual_windows(whole(videos), config)
    per_video = {"psnr": []}
    for v in progress(range(len(videos)), "dual-memory test videos"):
        first = windows.first_window(v)
        per_video["psnr"].append(score_clips(model, (windows[i] for i in range(first, first + windows.windows_of(v))),
                                             device))
    return per_video


def label_free_calibration(model, held_out, config, device):
    """The label-free calibration (DualMemory.scoring.calibrate) of a model trained without the ``held_out``
    pieces, at ``config.false_alarm_rate``."""
    def score(clips, state):
        return {"psnr": score_clips(model, clips, device)}, state

    return heldout_calibration(held_out, lambda pieces: dual_windows(pieces, config), score, None, STREAMS,
                               calibrate, config)


def model_of(config):
    """The checkpoint to evaluate (--model_dir, else the run's own model) and the folder its results go to."""
    if config.model_dir is None:
        path = config.run_dir / MODEL_FILE
        if not path.is_file():
            raise VPCError(f"dual-memory checkpoint not found: {path}; train it first with DualMemory/train.py and "
                           f"the same flags (or pass --model_dir)")
        return load_checkpoint(path), config.run_dir / config.results_name()
    return load_checkpoint(config.model_dir), config.method_dir / f"given_{config.model_dir.stem}" / config.results_name()


def held_out_pieces(config, checkpoint):
    """The training footage the run's model was trained without; none for a model given with --model_dir."""
    if config.model_dir is not None:
        return []
    return held_out_again(config, checkpoint.settings.get("training", {}).get("held_out"), config.run_dir / MODEL_FILE)


def evaluate_run(config):
    """Score the test videos, evaluate, save and print; returns the results (a dict)."""
    videos, labels = test_videos(config.settings, config.data_root, CLIP_LENGTH)
    with lock(config):
        return _evaluate_run(config, videos, labels)


def _evaluate_run(config, videos, labels):
    checkpoint, out = model_of(config)
    device = default_device()
    model = checkpoint.build().to(device).eval()
    started = time.perf_counter()
    per_video = score_videos(model, videos, config, device)
    seconds = time.perf_counter() - started
    refuse_constant([video.name for video in videos], per_video)
    cut = [cut_labels(labels[video.name], video.first_frame) for video in videos]
    scores = make_video_scores(per_video, cut, STREAMS, [video.name for video in videos])
    held_out = held_out_pieces(config, checkpoint)
    calibration = label_free_calibration(model, held_out, config, device) if held_out else None
    method = dual_evaluation()
    results = evaluate(scores, method, DualWeights(), calibration)
    n_frames = int(sum(len(x) for x in per_video["psnr"]))
    metadata = {"model_family": "dual-memory",
                **(checkpoint.settings.get("training") or {"dataset": config.dataset}),
                "false_alarm_rate": config.false_alarm_rate,
                "model": str(config.model_dir or config.run_dir / MODEL_FILE),
                "device": device_description(device), "test_frames_per_second": round(n_frames / seconds, 2),
                "held_out": [piece.name for piece in held_out]}
    metadata.pop("videos", None)
    fused = {name: scores.split(x) for name, x in dual_streams(scores).items()}
    report(out, SavedEvaluation(scores, fused, results, metadata), method, TITLES, "" if held_out else LABEL_FREE_NOTE,
           (config.dataset, STYLES) if config.figures else None)
    return results
