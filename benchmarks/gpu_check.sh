#!/usr/bin/env bash
# On a machine with CUDA: the CUDA-only tests, then the pipeline's frames per second on generated
# ShanghaiTech-shaped data at the coreset ratios of the paper's Table 6, beside the paper's FPS, a column per
# precision (exact, fp16, bf16), then the fast precisions' speed and AUROC cost (bench_precision.py --quick),
# then the memory models' (MNAD pred and recon, the dual-memory autoencoder) training and inference frames
# per second at 256 x 256 (bench_memory_models.py).
#   bash benchmarks/gpu_check.sh [python]        (default: the project's .venv, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device here')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py
PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/bench_gpu.py "${@:2}"
PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/bench_precision.py --quick
PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/bench_memory_models.py --device cuda --steps 10 --warmup 3
