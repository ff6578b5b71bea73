"""Fit a model on normal footage: any videos or frame folders, no dataset layout, no ground truth.

    python fit.py normal_videos/ --out camera.vpc --detector motion [--preset general]

Runs object detection and the memorization stage with a preset's settings (every one can be
overridden with the stage's flags), calibrates fusion, normalisation and an alarm threshold on the
footage alone (README, Evaluation), and writes one model file for score.py. Intermediate files go to
<work_dir>/footage/<model>/ and a rerun reuses them.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extra.errors import run_main  # noqa: E402
from Memorization.cli import footage_parser, resolve_footage_run  # noqa: E402


def main(argv=None):
    args = footage_parser(__doc__.splitlines()[0]).parse_args(argv)
    run = resolve_footage_run(args)
    from extra.lock import work_lock
    from extra.sources import footage_videos

    videos = footage_videos(args.inputs)             # checked before the model code loads (seconds)
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


if __name__ == "__main__":
    sys.exit(run_main(main))
