"""Compare VideoPatchCore with MNAD on one dataset: AUROC, training time, speed, size, sensitivity to memory size.

    python compare.py --dataset=avenue [--data_root D --work_dir W] [--detector motion] [--h 64 --w 64 --epochs 5]

Runs VideoPatchCore from scratch and MNAD at its published memory size, then MNAD once per --msizes and
VideoPatchCore's banks at each --coreset_scales, on this machine's device; prints one table and saves it,
with every measurement, in <work_dir>/compare/<dataset>/ (comparison.json, .md, .txt). A rerun reuses the
measurements made with the same settings (what each column measures: comparison/run.py).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comparison.run import build_parser, compare, resolve_comparison  # noqa: E402
from extra.errors import run_main  # noqa: E402


def main(argv=None):
    compare(resolve_comparison(build_parser(__doc__.splitlines()[0]).parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
