#!/usr/bin/env bash
# The whole GPU check in one command: the CUDA tests (pytest -m cuda: training on cuda, exact
# resume after Ctrl-C, bf16/fp16 against fp32, torch.compile, a GPU-trained run used on the CPU,
# CUDA graphs), then the speed benchmark on the GPU against the pytorch/examples loop, then one
# summary with every figure (summary.json and summary.txt). Installs nothing: the checkout is
# put on PYTHONPATH; it needs python3 with torch, torchvision, typer, rich, pyyaml and pytest.
#
#   bash benchmarks/gpu_check.sh [--dry-run] DATA_DIR [OUT_DIR]
#
# DATA_DIR holds MNIST/raw and FashionMNIST/raw: the *-ubyte.gz files are enough, but then it
# must be writable (torchvision unpacks them beside themselves, offline). OUT_DIR (default
# $VAE_CHECK_OUT, else ./gpu-check) receives summary.json, summary.txt, the test report and logs.
# --dry-run runs the same steps on the CPU with tiny sizes (tiny networks, 1 benchmark epoch),
# to prove the script before a GPU is at hand. On the GPU each step has a time limit, so that
# the whole check ends within 8 minutes even if a step hangs; a failed step does not stop the
# others.
set -uo pipefail

device=cuda
if [ "${1:-}" = "--dry-run" ]; then
    device=cpu
    shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash benchmarks/gpu_check.sh [--dry-run] DATA_DIR [OUT_DIR]" >&2
    exit 2
fi
data=$(realpath "$1")
out=$(realpath -m "${2:-${VAE_CHECK_OUT:-gpu-check}}")
if [ ! -d "$data/MNIST/raw" ]; then
    echo "error: $data/MNIST/raw does not exist: pass the folder holding MNIST/raw and FashionMNIST/raw" >&2
    exit 2
fi
mkdir -p "$out" || exit 1
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" VAE_DATA="$data" PYTHONUNBUFFERED=1
export VAE_CHECK_DEVICE=$device VAE_CHECK_FIGURES="$out/figures.jsonl"
rm -f "$VAE_CHECK_FIGURES"
if [ "$device" = cuda ]; then
    epochs=3 tests_limit=240 benchmark_limit=240
    command -v nvidia-smi >/dev/null && nvidia-smi >"$out/nvidia-smi.txt" 2>&1
else
    epochs=1 tests_limit=3600 benchmark_limit=1800  # a shared CPU can be very slow
fi

status=0
echo "== CUDA tests on $device (pytest -m cuda)"
timeout -k 10 "$tests_limit" "$PYTHON" -m pytest -m cuda -v -p no:cacheprovider --junitxml="$out/cuda-tests.xml" tests \
    2>&1 | tee "$out/cuda-tests.log" || status=1

echo "== speed benchmark on $device"
timeout -k 10 "$benchmark_limit" "$PYTHON" benchmarks/train_speed.py --device "$device" --short --epochs "$epochs" --rounds 1 \
    --json "$out/speed.json" 2>&1 | tee "$out/speed.log" || status=1

echo "== summary"
"$PYTHON" benchmarks/gpu_check_summary.py "$out" | tee "$out/summary.txt" || status=1
exit $status
