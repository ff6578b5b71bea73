"""MNAD's label-free calibration: the training footage held out of training (extra.windows.hold_out_pieces)
scored as the test loop scores, with pseudo-anomalous stretches (extra.heldout); then alpha,
normalisation and threshold (MNAD.scoring.calibrate). Each sequence starts from the trained memory items
and updates them online as the test loop does.
"""
from extra.errors import VPCError
from extra.evaluation.scores import make_video_scores
from extra.heldout import calibration_sequences
from MNAD.data import mnad_windows
from MNAD.model import score_sequence
from MNAD.scoring import STREAMS, calibrate


def label_free_calibration(model, items, held_out, config, device):
    """The label-free calibration (a JSON-ready dict, MNAD.scoring.calibrate) of a model trained without
    the ``held_out`` pieces (extra.windows.Piece), at ``config.false_alarm_rate``."""
    if not held_out:
        raise VPCError("the label-free calibration needs training footage held out of training (--hold_out)")

    def score(windows, state):
        psnr, distance, state = score_sequence(model, windows, state, config, device)
        return {"psnr": psnr, "distance": distance}, state

    per_stream, labels, names, recipes = calibration_sequences(mnad_windows(held_out, config), score, items,
                                                               config.seed)
    scores = make_video_scores(per_stream, labels, STREAMS, names)
    details = {"held_out": [piece.name for piece in held_out], "recipes": list(recipes), "sequences": len(names),
               "seed": config.seed}
    return calibrate(scores, labels, config.false_alarm_rate, details)
