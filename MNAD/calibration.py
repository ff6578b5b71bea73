"""MNAD's label-free calibration: the training footage held out of training (extra.windows.hold_out_pieces)
scored as the test loop scores, with pseudo-anomalous stretches (extra.heldout); then alpha,
normalisation and threshold (MNAD.scoring.calibrate). Each sequence starts from the trained memory items
and updates them online as the test loop does.
"""
from extra.heldout import heldout_calibration
from MNAD.data import mnad_windows
from MNAD.model import score_sequence
from MNAD.scoring import STREAMS, calibrate


def label_free_calibration(model, items, held_out, config, device):
    """The label-free calibration (a JSON-ready dict, MNAD.scoring.calibrate) of a model trained without
    the ``held_out`` pieces (extra.windows.Piece), at ``config.false_alarm_rate``."""
    def score(windows, state):
        psnr, distance, state = score_sequence(model, windows, state, config, device)
        return {"psnr": psnr, "distance": distance}, state

    return heldout_calibration(held_out, lambda pieces: mnad_windows(pieces, config), score, items, STREAMS,
                               calibrate, config)
