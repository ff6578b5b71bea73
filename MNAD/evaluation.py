"""MNAD's test loop as the official Evaluate.py does it (MNAD/SPEC.md, section 7), evaluated by the harness
every method shares (extra.evaluation).

One window at a time, the test videos in order: the frame's PSNR and feature compactness distance, and the
memory items, cloned once from the trained ones, updated online whenever the frame's point score is
below ``--th``, carried from frame to frame and from video to video (``--reset_memory_per_video``
restarts each video). Per video the labels of the frames scored (a window scores its last frame), then
micro, macro and padded macro AUROC of the PSNR, the distance and the total in three columns: the
published protocol, alpha fixed in advance (the same alpha: MNAD's protocol tunes nothing on the test
labels), and label-free for a run trained with ``--hold_out``: alpha, normalisation and alarm threshold
from the training footage held out of its training (MNAD.calibration), no test statistic used.
"""
import hashlib
import time

from extra.device import default_device, device_description
from extra.errors import VPCError
from extra.evaluation.fusion import refuse_constant
from extra.evaluation.harness import evaluate
from extra.evaluation.results import SavedEvaluation, report
from extra.evaluation.scores import make_video_scores
from extra.progress import progress
from extra.windows import held_out_again, test_videos, whole
from MNAD.calibration import label_free_calibration
from MNAD.checkpoints import load_checkpoint
from MNAD.data import mnad_windows
from MNAD.model import score_sequence
from MNAD.options import MODEL_FILE
from MNAD.scoring import STREAMS, TITLES, MNADWeights, cut_labels, mnad_evaluation, mnad_streams
from MNAD.training import lock

LABEL_FREE_NOTE = ("label-free: none, this run trained on every training video; train with --hold_out K for a "
                   "label-free column (alpha, normalisation and threshold from K held-out videos)\n")
# The score figures' lines (extra.evaluation.curves): stream -> (colour, legend label).
STYLES = {"psnr": ("tab:blue", "1 - PSNR' (per video)"), "distance": ("tab:orange", "feature distance' (per video)"),
          "total": ("black", "total")}


def _digest(*paths):
    digest = hashlib.sha256()
    for path in paths:
        if path is not None:
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:10]


def model_of(config):
    """The checkpoint to evaluate (--model_dir and --m_items_dir, else the run's own model) and the folder
    its results go to."""
    if config.model_dir is None:
        path = config.run_dir / MODEL_FILE
        if not path.is_file():
            raise VPCError(f"MNAD checkpoint not found: {path}; train it first with MNAD/train.py and the same flags "
                           f"(or pass --model_dir)")
        return load_checkpoint(path), config.run_dir / config.results_name()
    checkpoint = load_checkpoint(config.model_dir, config.m_items_dir)
    if checkpoint.items is None:
        raise VPCError(f"{config.model_dir} holds no memory items: pass them with --m_items_dir (the official keys.pt)")
    found = {"method": checkpoint.config["method"], "t_length": checkpoint.config["t_length"]}
    if found != {"method": config.method, "t_length": config.t_length}:
        raise VPCError(f"{config.model_dir} holds an MNAD {found['method']} model of windows of {found['t_length']} "
                       f"frames: pass --method {found['method']} --t_length {found['t_length']}")
    folder = config.mnad_dir / f"given_{_digest(config.model_dir, config.m_items_dir)}"
    return checkpoint, folder / config.results_name(given_model=True)


def score_videos(model, items, videos, config, device):
    """Per test video, the PSNR and compactness distance of every window's scored frame, in order."""
    windows = mnad_windows(whole(videos), config)
    per_video, trained = {"psnr": [], "distance": []}, items
    for v in progress(range(len(videos)), "MNAD test videos"):
        first = windows.first_window(v)
        sequence = (windows[i] for i in range(first, first + windows.windows_of(v)))
        psnr, distance, items = score_sequence(model, sequence, trained.clone() if config.reset_memory_per_video
                                               else items, config, device)
        per_video["psnr"].append(psnr)
        per_video["distance"].append(distance)
    return per_video


def held_out_pieces(config, checkpoint):
    """The training footage the run's model was trained without; none for a model given with --model_dir."""
    if config.model_dir is not None:
        return []
    return held_out_again(config, checkpoint.settings.get("training", {}).get("held_out"), config.run_dir / MODEL_FILE)


def settings_of(config, checkpoint):
    """The settings a results file records: the run's training settings, or for a model given with
    --model_dir those the evaluation reads it with."""
    if config.model_dir is None:
        return config.training_record()
    return {"dataset": config.dataset, "method": config.method, "t_length": config.t_length,
            "msize": checkpoint.config["msize"], "h": config.h, "w": config.w, "update_norm": config.update_norm}


def evaluate_run(config):
    """Score the test videos, evaluate, save and print; returns the results (a dict)."""
    videos, labels = test_videos(config.settings, config.data_root, config.t_length)
    with lock(config):
        return _evaluate_run(config, videos, labels)


def _evaluate_run(config, videos, labels):
    checkpoint, out = model_of(config)
    device = default_device()
    model = checkpoint.build().to(device).eval()
    started = time.perf_counter()
    per_video = score_videos(model, checkpoint.items.to(device).clone(), videos, config, device)
    seconds = time.perf_counter() - started
    refuse_constant([video.name for video in videos], per_video)
    cut = [cut_labels(labels[video.name], config.t_length, video.first_frame) for video in videos]
    scores = make_video_scores(per_video, cut, STREAMS, [video.name for video in videos])
    weights = MNADWeights(config.alpha)
    method = mnad_evaluation(config.alpha)
    held_out = held_out_pieces(config, checkpoint)
    calibration = (label_free_calibration(model, checkpoint.items.to(device).clone(), held_out, config, device)
                   if held_out else None)
    results = evaluate(scores, method, weights, calibration)
    n_frames = int(sum(len(x) for x in per_video["psnr"]))
    metadata = {"model_family": "MNAD", **settings_of(config, checkpoint), **config.evaluation_record(),
                "model": str(config.model_dir or config.run_dir / MODEL_FILE),
                **({"m_items": str(config.m_items_dir)} if config.m_items_dir else {}),
                "device": device_description(device), "test_frames_per_second": round(n_frames / seconds, 2),
                "held_out": [piece.name for piece in held_out]}
    fused = {name: scores.split(x) for name, x in mnad_streams(scores, weights).items()}
    report(out, SavedEvaluation(scores, fused, results, metadata), method, TITLES, "" if held_out else LABEL_FREE_NOTE,
           (config.dataset, STYLES) if config.figures else None)
    return results
