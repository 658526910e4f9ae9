#!/usr/bin/env bash
# Issue 15's GPU checks, in order, in about 7 minutes on one H200: the CUDA tests, then the measurements
# (benchmarks/gpu/run.py). Everything lands in OUT_DIR: cuda_tests.txt and .xml, gpu_results.json,
# gpu_summary.png, nvidia-smi.txt.
#
#   bash benchmarks/gpu/run.sh OUT_DIR
#
# Where the project's dependencies are missing (the workplace's GPU machine), the wheels in .whl/
# (benchmarks/gpu/wheels.sh) are unpacked first, and the checkout goes on PYTHONPATH. SMOKE=1 runs every step tiny, on the CPU.
set -uo pipefail
OUT=${1:?usage: run.sh OUT_DIR}
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! "$PYTHON" -c "import stable_baselines3, gymnasium, ale_py" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" >"$OUT/nvidia-smi.txt"

# The files that hold the CUDA tests, whole (their CPU parity tests run on this machine too).
timeout 150 "$PYTHON" -m pytest -m "not slow" -q -ra -p no:cacheprovider --junitxml "$OUT/cuda_tests.xml" \
    tests/test_torch_envs.py tests/test_tensor_rollout.py 2>&1 | tee "$OUT/cuda_tests.txt"
tests_rc=${PIPESTATUS[0]}

timeout 420 "$PYTHON" benchmarks/gpu/run.py --out "$OUT" ${SMOKE:+--smoke} 2>&1 | tee "$OUT/benchmark.txt"
bench_rc=${PIPESTATUS[0]}

echo "CUDA tests: exit $tests_rc; measurements: exit $bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
