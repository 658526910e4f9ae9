#!/usr/bin/env bash
# Equal tuning budget for both algorithms on CartPole-v1: four settings each, three seeds (100-102,
# kept apart from the seeds 0-4 of the reported benchmark), 300k steps, SB3's n_envs=8, n_steps=5.
# Usage: bash benchmarks/cartpole/tune.sh   (about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/cartpole/tuning
run() {  # name algo [key=value ...]
  local name=$1 algo=$2; shift 2
  .venv/bin/python -m relax_rl.compare --env CartPole-v1 --algos "$algo" --seeds 3 --first-seed 100 \
    --total-timesteps 300000 --workers 2 --eval-freq 0 --checkpoint-freq 0 --out "$out/$name" \
    ${1:+--hyperparams "$@"}
}
run relax_default relax_a2c
run relax_params relax_a2c cv_objective=params
run relax_cvlr1e-2 relax_a2c cv_learning_rate=1e-2
run relax_cvsteps4 relax_a2c cv_steps=4
run a2c_default a2c
run a2c_lr1e-3 a2c learning_rate=1e-3
run a2c_lr3e-4 a2c learning_rate=3e-4
run a2c_normadv a2c normalize_advantage=true
