"""Figures of a Memorization run: per-video scores, object-wise key frames, t-SNE of the memory banks.

    python figures.py --dataset=avenue [the flags of the run]   (from this folder, or
                                                                 Memorization/figures.py from the root)

Takes run.py's flags, so the same flags find the same files (the flags that only steer the run,
such as --save_feature or --clip_weights, are accepted and ignored). Nothing here runs a model;
what each figure shows and needs: Memorization/plots.py. Written into
<work_dir>/figures/<dataset>/<c'>/<run>/.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extra.errors import run_main  # noqa: E402
from Memorization.cli import build_parser, resolve_run  # noqa: E402
from Memorization.options import FIGURES, figures_folder  # noqa: E402


def build_figures_parser():
    """run.py's flags, and which figures to draw."""
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES),
                        help="which figures to draw (default: all of them)")
    parser.add_argument("--top_clips", type=int, default=6,
                        help="object figures: clips with the highest local score (default 6)")
    parser.add_argument("--normal_clips", type=int, default=3,
                        help="object figures: normal clips added for comparison (default 3)")
    parser.add_argument("--tsne_points", type=int, default=2000,
                        help="points per t-SNE, half memory-bank items, half test patches (default 2000)")
    return parser


def main(argv=None):
    args = build_figures_parser().parse_args(argv)
    run = resolve_run(args)
    from Memorization.paper import plots   # the model code, once the arguments are sound

    written = plots.make_figures(run, args.figures, args.top_clips, args.normal_clips, args.tsne_points)
    folder = figures_folder(run.work, run.method)
    print(f"{len(written)} figures in {folder}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
