"""Alarm thresholds, every method's: the threshold set at a target false-alarm rate on normal
footage, whether that footage can support the rate, and the rates measured on labelled frames with
their exact interval.

A rate rests on the independent units behind the frames: clips for VideoPatchCore (a clip's frames
share one score), frames for the frame-level methods. Fewer than MIN_UNITS_ABOVE units expected
above a threshold cannot set it reliably, and a few dozen normal test clips cannot measure a rate of
a few percent: 3 alarmed clips of 60 (5 %) have a 95 % interval of 1 to 14 %.
"""
import math

import numpy as np

DEFAULT_FALSE_ALARM_RATE = 0.01
MIN_UNITS_ABOVE = 5         # normal units expected above the threshold for a rate to be set reliably


def alarm_threshold(total, labels, false_alarm_rate):
    """The score above which ``false_alarm_rate`` of the normal frames (label 0) of ``total`` lie."""
    normal = np.concatenate(labels) == 0
    return float(np.quantile(total[normal], 1 - false_alarm_rate))


def false_alarm_support(normal_units, false_alarm_rate, unit="clips"):
    """What ``normal_units`` independent units (``unit``: their name) of normal footage can say about
    ``false_alarm_rate``: JSON-ready, with a one-line ``note`` where fewer than MIN_UNITS_ABOVE of them
    are expected above the threshold."""
    above = normal_units * false_alarm_rate
    support = {f"normal_{unit}": int(normal_units), f"{unit}_above_threshold": above,
               "supported": above >= MIN_UNITS_ABOVE}
    if not support["supported"]:
        support["note"] = (f"the held-out normal footage gives {int(normal_units)} {unit}, so a false-alarm rate of "
                           f"{100 * false_alarm_rate:g}% rests on {above:.2g} of them: it cannot be set reliably; "
                           f"give about {math.ceil(MIN_UNITS_ABOVE / false_alarm_rate)} {unit} of normal footage or "
                           f"a higher --false_alarm_rate")
    return support


def alarm_rates(total, threshold, y):
    """{"false_alarm_rate", "detection_rate"}: the share of normal and of anomalous frames whose ``total``
    lies above ``threshold`` (None without such frames)."""
    alarms = total > threshold
    return {"false_alarm_rate": float(alarms[y == 0].mean()) if (y == 0).any() else None,
            "detection_rate": float(alarms[y == 1].mean()) if (y == 1).any() else None}


def rate_interval(hits, trials, confidence=0.95):
    """(low, high): Clopper and Pearson's (1934) exact interval of a rate seen as ``hits`` of ``trials``
    independent trials."""
    from scipy.stats import beta      # scipy is slow to import: commands' --help skip it

    tail = (1 - confidence) / 2
    low = 0.0 if hits == 0 else float(beta.ppf(tail, hits, trials - hits + 1))
    high = 1.0 if hits == trials else float(beta.ppf(1 - tail, hits + 1, trials - hits))
    return low, high


def measured_rate_interval(rate, normal_frames, clip_frames):
    """{"normal", "unit", "interval"}: the 95 % interval of a false-alarm ``rate`` measured on ``normal_frames``
    frames that come in clips of ``clip_frames`` sharing a score: the ``normal`` clips (frames, for clips of
    one frame) are the independent trials."""
    trials = max(1, round(normal_frames / clip_frames))
    return {"normal": trials, "unit": "clips" if clip_frames > 1 else "frames",
            "interval": list(rate_interval(round(rate * trials), trials))}
