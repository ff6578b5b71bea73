"""Reproduce the paper's tables: every configuration a table needs, printed beside the published values.

    python reproduce.py --dataset shanghai --table 6      (from this folder, or Memorization/reproduce.py from the root)

--table is 2, 3, 4, 5, 6, 7, appendix or all. All configurations come from one set of object
detections (run ObjectDetection/run.py first) and one set of features; each configuration's scores
and results are cached in <work_dir>/reproduce/<dataset>/<c'>/<name>/, so a rerun prints at once.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extra.cli import add_bool_flag, base_parser  # noqa: E402
from extra.errors import run_main  # noqa: E402
from Memorization.cli import (  # noqa: E402
    add_backbone_arguments,
    add_evaluation_arguments,
    add_method_arguments,
    resolve_run,
)
from Memorization.paper.tables import TABLE_KEYS  # noqa: E402


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    parser.epilog = __doc__.split("\n\n", 2)[2]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--table", required=True, choices=(*TABLE_KEYS, "all"),
                        help="the paper's table to reproduce: 2 to 7, appendix, or all of them")
    add_method_arguments(parser)
    add_backbone_arguments(parser)
    add_evaluation_arguments(parser)
    add_bool_flag(parser, "--overwrite", False, "extract the features and compute every configuration again")
    parser.set_defaults(save_feature=True, save_memory=False)     # fields of the run the runner does not use
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    base = resolve_run(args)
    from Memorization.paper.reproduction import reproduce_tables   # the model code, once the arguments are sound

    print()
    print(reproduce_tables(base, TABLE_KEYS if args.table == "all" else (args.table,)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
