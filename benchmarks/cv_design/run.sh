#!/usr/bin/env bash
# Control-variate design study: one factor at a time around RELAX-A2C's design (MLP on
# [features, softmax(z/τ)], `logits` objective, Adam 1e-3 for φ, one φ step per update), against
# SB3's A2C with the same n_envs / n_steps (configs/*.yml), `--workers 2`.
#   bash benchmarks/cv_design/run.sh target     # target matching D16 (60k), D64 (150k), D256 (300k); seeds 200-202
#   bash benchmarks/cv_design/run.sh factors    # every other factor, at D16; seeds 200-202
#   bash benchmarks/cv_design/run.sh cartpole   # linear head, seeds 0-4 (pairs with benchmarks/head_to_head)
#   bash benchmarks/cv_design/run.sh lunarlander
#   bash benchmarks/cv_design/run.sh paper      # the paper's setting on CartPole: one env, 500-step rollouts
#   bash benchmarks/cv_design/run.sh d256-cvlr  # the linear head at D256 with a 10× smaller φ learning rate
# Then: python benchmarks/cv_design/aggregate.py > benchmarks/cv_design/table.md
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/cv_design/cells
LINEAR="policy_kwargs={cv_arch: linear}"
cell() {  # env steps seeds first_seed name algo [key=value ...]
  local env=$1 steps=$2 seeds=$3 first=$4 name=$5 algo=$6; shift 6
  .venv/bin/relax-rl compare --env "$env" --algos "$algo" --seeds "$seeds" --first-seed "$first" \
    --total-timesteps "$steps" --workers 2 --eval-freq 0 --checkpoint-freq 0 \
    --out "$out/${env//\//_}/$name" ${1:+--hyperparams "$@"}
}
case "${1:-}" in
  target)
    for spec in 16:60000 64:150000 256:300000; do
      env="relax_rl/TargetMatching-D${spec%%:*}-v0" steps=${spec##*:}
      cell "$env" "$steps" 3 200 a2c a2c
      cell "$env" "$steps" 3 200 relax_mlp relax_a2c
      cell "$env" "$steps" 3 200 relax_linear relax_a2c "$LINEAR"
    done
    ;;
  factors)
    env=relax_rl/TargetMatching-D16-v0
    cell $env 60000 3 200 relax_factorised relax_a2c "policy_kwargs={cv_arch: factorised}"
    cell $env 60000 3 200 relax_mlp_raw_z relax_a2c "policy_kwargs={cv_relaxed_input: false}"
    cell $env 60000 3 200 relax_mlp_cvlr1e-2 relax_a2c cv_learning_rate=1e-2
    cell $env 60000 3 200 relax_mlp_cvsteps4 relax_a2c cv_steps=4
    cell $env 60000 3 200 relax_mlp_params relax_a2c cv_objective=params
    cell $env 60000 3 200 relax_linear_params relax_a2c cv_objective=params "$LINEAR"
    ;;
  cartpole) cell CartPole-v1 300000 5 0 relax_linear relax_a2c "$LINEAR" ;;
  lunarlander) cell LunarLander-v3 200000 5 0 relax_linear relax_a2c "$LINEAR" ;;
  paper)
    cell CartPole-v1 200000 3 200 paper_a2c a2c n_envs=1 n_steps=500
    cell CartPole-v1 200000 3 200 paper_relax_mlp relax_a2c n_envs=1 n_steps=500
    cell CartPole-v1 200000 3 200 paper_relax_linear relax_a2c n_envs=1 n_steps=500 "$LINEAR"
    ;;
  d256-cvlr)  # linear raised the variance at D256 with φ's Adam at 1e-3: is φ's optimiser too noisy there?
    cell relax_rl/TargetMatching-D256-v0 300000 3 200 relax_linear_cvlr1e-4 relax_a2c cv_learning_rate=1e-4 "$LINEAR"
    ;;
  *) echo "usage: $0 target|factors|cartpole|lunarlander|paper|d256-cvlr" >&2; exit 2 ;;
esac
