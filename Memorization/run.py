"""Memorization stage: CLIP features, three coreset memory banks, scores and AUROC.

    python run.py --dataset=avenue            (from this folder, or Memorization/run.py from the root)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extra.datasets import split_folder  # noqa: E402
from extra.errors import run_main  # noqa: E402
from Memorization.cli import build_parser, resolve_run  # noqa: E402


def main(argv=None):
    run = resolve_run(build_parser(__doc__.splitlines()[0]).parse_args(argv))
    split_folder(run.context.settings, run.context.data_root, "test")     # a wrong --data_root, said at once
    from Memorization.pipeline import run_memorization   # the model code, once the arguments are sound

    run_memorization(run)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
