"""Evaluate a trained dual-memory model on a dataset's test videos (AUROC, scores and results in the run's folder).

    cd DualMemory && python evaluate.py --dataset_type avenue            (the flags of train.py find the run)
    cd DualMemory && python evaluate.py --dataset_type avenue --model_dir state.pth
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extra.datasets import split_folder  # noqa: E402
from extra.errors import VPCError, run_main  # noqa: E402
from DualMemory.options import build_parser, resolve_config  # noqa: E402


def main(argv=None):
    config = resolve_config(build_parser(__doc__.splitlines()[0], evaluation=True).parse_args(argv))
    split_folder(config.settings, config.data_root, "test")     # a wrong --data_root, said at once
    if config.model_dir is not None and not config.model_dir.is_file():
        raise VPCError(f"file not found: {config.model_dir}")
    from DualMemory.evaluation import evaluate_run   # the model code, once the arguments are sound

    evaluate_run(config)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
