"""Fit a model on normal footage: any videos or frame folders, no dataset layout, no ground truth.

    python fit.py normal_videos/ --out camera.vpc --detector motion [--preset general]
    python fit.py normal_videos/ --out camera.mnad --method mnad [--mnad_method pred|recon --epochs 60]
    python fit.py normal_videos/ --out camera.dual --method dual_memory [--pseudo_anomaly_jump 0.01]

Runs object detection and the memorization stage with a preset's settings (every one can be
overridden with the stage's flags), calibrates fusion, normalisation and an alarm threshold on the
footage alone (README, Evaluation), and writes one model file for score.py. With --method mnad or
dual_memory it trains that model instead, holding out some footage on which it calibrates (fit.py
--method mnad --help for its flags). Intermediate files go to a folder of the footage's own,
<work_dir>/footage/<first video>_<key>/, which a rerun on the same footage reuses, whatever its --out.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extra.errors import run_main  # noqa: E402
from extra.methods import TRAINED, method_module  # noqa: E402
from Memorization.cli import footage_parser, method_parser, resolve_footage_run  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    method, rest = method_parser().parse_known_args(argv)
    if method.method in TRAINED:
        return fit_trained(method.method, rest)
    args = footage_parser(__doc__.splitlines()[0]).parse_args(argv)
    run, videos = resolve_footage_run(args)          # the inputs checked before the model code loads (seconds)
    from extra.lock import work_lock
    from Memorization.encoders.loader import load_backbone_for
    from Memorization.footage.fit import fit_footage

    with work_lock(run.context.work_dir, run.method.dataset, [run.context.work_dir]):
        model = fit_footage(videos, run, args.detector, load_backbone_for(run, None))
        model.save(args.out)
    calibration = model.calibration
    print(f"model: {args.out} ({len(videos)} normal videos, banks "
          + ", ".join(f"{name} {tuple(bank.shape)}" for name, bank in model.banks.items())
          + f"; alarm threshold {calibration['clip_threshold']:.4g} for {100 * run.false_alarm_rate:g}% false alarms"
          + (f"; {calibration['fallback']}" if calibration.get("fallback") else "") + ")", flush=True)
    return 0


def fit_trained(method, argv):
    """A training-based method: its own flags, then its fitting."""
    options = method_module(method, "options")
    args = options.footage_parser(__doc__.splitlines()[0]).parse_args(argv)
    config, videos = options.resolve_footage_config(args)    # the inputs checked before the model code loads
    footage = method_module(method, "footage")
    print(footage.summary(args.out, config, videos, footage.fit_footage(videos, config, args.out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
