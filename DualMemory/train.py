"""Train the dual-memory autoencoder on a dataset's training videos (resumable; <work_dir>/dual_memory/<dataset>/<run>/).

    cd DualMemory && python train.py --dataset_type avenue [--pseudo_anomaly_jump 0.01 --jump 2 3 4 5]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extra.datasets import split_folder  # noqa: E402
from extra.errors import run_main  # noqa: E402
from DualMemory.options import build_parser, resolve_config  # noqa: E402


def main(argv=None):
    config = resolve_config(build_parser(__doc__.splitlines()[0]).parse_args(argv))
    split_folder(config.settings, config.data_root, "train")     # a wrong --data_root, said at once
    from DualMemory.training import train   # the model code, once the arguments are sound

    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
