"""The training-based methods the own-footage commands (fit.py, score.py) know besides VideoPatchCore, by
name: each package has an ``options`` module (``footage_parser``, ``resolve_footage_config``) and a
``footage`` module (``fit_footage``, ``summary``, ``is_checkpoint``, ``Scorer``). Named, not imported:
a package loads only when its method is used.
"""
import importlib

TRAINED = {"mnad": "MNAD", "dual_memory": "DualMemory"}


def method_module(method, part):
    """``<package>.<part>`` of a training-based method (part: "options" or "footage")."""
    return importlib.import_module(f"{TRAINED[method]}.{part}")


def trained_scorer(path, raw=False):
    """The scorer of a training-based method's model file (``raw``: raw score columns), None for any other
    file."""
    for method in TRAINED:
        footage = method_module(method, "footage")
        if footage.is_checkpoint(path):
            return footage.Scorer(path, raw=raw)
    return None
