#!/usr/bin/env bash
# The wheels the workplace's GPU machine lacks (it has torch, numpy, pandas, matplotlib, pytest, PyYAML,
# tensorboard, cloudpickle), for its Python 3.12, into .whl/ (git-ignored), at the versions installed here.
# run.sh unpacks them there. Carry .whl to that machine with the working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
packages=$("$PYTHON" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in ("stable-baselines3", "gymnasium", "ale-py", "farama-notifications")))
PY
)
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl $packages
ls -l .whl
