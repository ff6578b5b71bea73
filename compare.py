"""Compare VideoPatchCore, MNAD and the dual-memory model on one dataset: AUROC, cost, sensitivity to memory size.

    python compare.py --dataset=avenue [--data_root D --work_dir W] [--detector motion] [--h 64 --w 64 --epochs 5]
        [--dual_h 64 --dual_w 64 --dual_epochs 2 --dual_lr 0.001] [--methods vpc,mnad,dual_memory]

Runs VideoPatchCore from scratch, MNAD and the dual-memory model at their published memory sizes, then MNAD
once per --msizes, the dual-memory model once per --mem_dims and VideoPatchCore's banks at each
--coreset_scales, on this machine's device; prints one table (one row per method of --methods) and saves
it, with every measurement, in <work_dir>/compare/<dataset>/ (comparison.json, .md, .txt). A rerun reuses
the measurements made with the same settings (what each column measures: comparison/run.py).
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
