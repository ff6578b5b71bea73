"""Every command's --help and argument errors come at once: none loads torch, scikit-learn or OpenCV
before its arguments are sound (a folder it must read is checked before torch loads)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "sklearn", "cv2")
# Runs a command as `python SCRIPT ARGS` (or `python -m MODULE ARGS`) would, then reports the heavy
# modules it loaded, on the last line of stdout.
WRAPPER = f"""
import json, runpy, sys
target, sys.argv = sys.argv[1], sys.argv[1:]
code = 0
try:
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code or 0
print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
sys.exit(code)
"""
COMMANDS = ("ObjectDetection/run.py", "Memorization/run.py", "Memorization/reproduce.py", "Memorization/figures.py",
            "Memorization/evaluate.py", "fit.py", "score.py", "extra.make_demo", "MNAD/train.py", "MNAD/evaluate.py",
            "compare.py", "DualMemory/train.py", "DualMemory/evaluate.py")
# One argument error per command, each found without any model code.
ARGUMENT_ERRORS = {
    "ObjectDetection/run.py": (["--detector=nope"], "invalid choice: 'nope'"),
    "Memorization/run.py": (["--false_alarm_rate=2"], "--false_alarm_rate must lie between 0 and 1"),
    "Memorization/reproduce.py": (["--table=9"], "argument --table: invalid choice: '9'"),
    "Memorization/figures.py": (["--figures", "nope"], "argument --figures: invalid choice: 'nope'"),
    "Memorization/evaluate.py": (["results", "--fixed_sigma=x"], "argument --fixed_sigma: invalid int value"),
    "fit.py": (["videos", "--out", "m.vpc", "--consecutive=2"], "--consecutive must be at least 3"),
    "score.py": (["m.vpc", "a.mp4", "b.mp4", "--gt", "labels.npy"], "--gt goes with a single input"),
    "extra.make_demo": (["--out", "demo", "--n_frames=2"], "--n_frames must be at least 8"),
    "MNAD/train.py": (["--method=recon", "--t_length=5"], "--t_length 5 does not fit --method recon"),
    "MNAD/evaluate.py": (["--h=30"], "--h and --w must be multiples of 8"),
    "DualMemory/train.py": (["--pseudo_anomaly_jump=2"], "--pseudo_anomaly_jump must lie in [0, 1]"),
    "DualMemory/evaluate.py": (["--skip_end=x"], "argument --skip_end: invalid choice: 'x'"),
    "compare.py": (["--coreset_scales=0.5,0"], "--coreset_scales: each value must be above 0"),
}


def command(target, *args):
    """(exit status, stdout without the report, stderr, the heavy modules loaded)."""
    result = subprocess.run([sys.executable, "-c", WRAPPER, target, *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    *out, report = result.stdout.splitlines()
    return result.returncode, "\n".join(out), result.stderr, json.loads(report)


def one_error_line(status, err, expected):
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert expected in err, err


@pytest.mark.parametrize("target", COMMANDS)
def test_help_loads_no_model_code(target):
    status, out, err, heavy = command(target, "--help")
    assert (status, err, heavy) == (0, "", [])
    assert "usage:" in out


@pytest.mark.parametrize("target", COMMANDS)
def test_an_argument_error_loads_no_model_code(target):
    args, expected = ARGUMENT_ERRORS[target]
    status, _, err, heavy = command(target, *args)
    one_error_line(status, err, expected)
    assert heavy == []


@pytest.mark.parametrize("target, args", [
    ("ObjectDetection/run.py", ["--detector=motion", "--data_root={missing}", "--work_dir={tmp}/work"]),
    ("Memorization/run.py", ["--data_root={missing}", "--work_dir={tmp}/work"]),
    ("fit.py", ["{missing}", "--out", "{tmp}/m.vpc", "--detector=motion", "--work_dir={tmp}/work"]),
    ("score.py", ["{tmp}/m.vpc", "{missing}", "--out_dir={tmp}/scores"]),
    ("MNAD/train.py", ["--data_root={missing}", "--work_dir={tmp}/work"]),
    ("MNAD/evaluate.py", ["--data_root={missing}", "--work_dir={tmp}/work"]),
    ("DualMemory/train.py", ["--data_root={missing}", "--work_dir={tmp}/work"]),
    ("DualMemory/evaluate.py", ["--data_root={missing}", "--work_dir={tmp}/work"]),
    ("compare.py", ["--data_root={missing}", "--work_dir={tmp}/work", "--random_weights", "--detector=motion"]),
])
def test_a_missing_folder_is_said_before_torch_loads(target, args, tmp_path):
    missing = tmp_path / "missing"
    status, _, err, heavy = command(target, *(arg.format(missing=missing, tmp=tmp_path) for arg in args))
    one_error_line(status, err, str(missing))
    assert "torch" not in heavy
