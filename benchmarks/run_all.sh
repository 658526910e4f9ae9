#!/usr/bin/env bash
# Every RL benchmark in the order they were taken for the committed results (2 cores: one at a time,
# each with 2 workers). Usage: bash benchmarks/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash benchmarks/cv_design/run.sh target
bash benchmarks/head_to_head/run.sh cartpole
bash benchmarks/cv_design/run.sh cartpole
bash benchmarks/cv_design/run.sh factors
bash benchmarks/head_to_head/run.sh lunarlander
bash benchmarks/cv_design/run.sh lunarlander
bash benchmarks/cv_design/run.sh paper
bash benchmarks/cv_design/run.sh d256-cvlr
