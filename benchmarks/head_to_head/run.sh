#!/usr/bin/env bash
# Head-to-head of RELAX-A2C against SB3's A2C: 5 seeds (0-4) each, both at the configs' n_envs=8,
# n_steps=5 (configs/*.yml), 2 runs at a time.
#   CartPole-v1: 300k steps each (episodes to solve at 475, gymnasium's threshold, and at 195).
#   LunarLander-v3: rl-baselines3-zoo's A2C budget of 200k steps (return at a fixed budget).
# Usage: bash benchmarks/head_to_head/run.sh [cartpole|lunarlander]
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-cartpole}" in
  cartpole) env=CartPole-v1 steps=300000 ;;
  lunarlander) env=LunarLander-v3 steps=200000 ;;
  *) echo "usage: $0 [cartpole|lunarlander]" >&2; exit 2 ;;
esac
.venv/bin/relax-rl compare --env "$env" --algos relax_a2c a2c --seeds 5 --total-timesteps "$steps" \
  --workers 2 --eval-freq 0 --checkpoint-freq 0 --out "benchmarks/head_to_head/$env"
