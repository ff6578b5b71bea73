"""Evaluate saved scores again, without features or models: other fixed weights, same protocol.

    python Memorization/evaluate.py WORK_DIR/results/avenue/32/spatial0.01_temporal0.01_highlevel0.01 \
        --fixed_a1=0.6 --fixed_b1=0.7 --fixed_sigma=5
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extra.cli import OneLineErrorParser  # noqa: E402
from extra.errors import run_main  # noqa: E402


def main(argv=None):
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", help="a results folder written by Memorization/run.py")
    parser.add_argument("--fixed_a1", type=float, default=None, help="spatial weight (default: as saved)")
    parser.add_argument("--fixed_b1", type=float, default=None, help="local-stream weight (default: as saved)")
    parser.add_argument("--fixed_sigma", type=int, default=None, help="smoothing sigma (default: as saved)")
    args = parser.parse_args(argv)
    from extra.evaluation.fusion import FusionWeights
    from extra.evaluation.harness import evaluate
    from extra.evaluation.protocol import VIDEOPATCHCORE
    from extra.evaluation.results import RESULTS_FILE, SCORES_FILE, format_results, load_results
    from Memorization.banks.specs import BANKS, stream_titles

    folder = Path(args.results_dir)
    saved = load_results(folder / SCORES_FILE, folder / RESULTS_FILE)
    previous = saved.results["fixed"]["weights"]
    a1 = previous["a1"] if args.fixed_a1 is None else args.fixed_a1
    b1 = previous["b1"] if args.fixed_b1 is None else args.fixed_b1
    sigma = previous["sigma"] if args.fixed_sigma is None else args.fixed_sigma
    weights = FusionWeights.chosen(a1, b1, sigma)
    calibration = saved.results.get("label_free", {}).get("calibration")
    titles = stream_titles([BANKS[bank] for bank in saved.scores.banks if bank in BANKS])
    print(format_results(evaluate(saved.scores, VIDEOPATCHCORE, weights, calibration), saved.metadata, titles), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
