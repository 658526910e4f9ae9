#!/usr/bin/env bash
# Reproduce the committed results of the benchmark folders, each with the commands its README gives
# (one function per folder below, its commands in the README's order).
#
#   benchmarks/run_all.sh                   every folder, in the order of --list (many hours on 2 cores)
#   benchmarks/run_all.sh toy sps           only these folders, in the order given
#   benchmarks/run_all.sh --list            the folders and what each one measures
#   benchmarks/run_all.sh --dry-run [FOLDER ...]   print the commands without running them
#
# Each command is printed ("+ ...") before it runs; the first one that fails stops the script.
# Before a long run, note:
# - The scripts write into the committed results (they are the outputs), and some of them resume instead of
#   measuring again: binary_vae/run.py, critic_replay/run.py (results.jsonl, issue21.jsonl) and tuned/run.py skip
#   the runs their committed files already hold. Move those files aside to measure from scratch.
# - Rewritten results files lose the date, machine and commit added to them by hand where their writer does not
#   record them (relax-rl compare's results.json, critic_replay/aggregate.py's summary.json);
#   tests/test_benchmarks_meta.py fails until they are recorded again.
# - sps and update_cost check out older commits as git worktrees under /tmp (git worktree add), as their READMEs do.
# - gpu needs a CUDA GPU and is skipped without one.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
RELAX_RL=.venv/bin/relax-rl
DRY_RUN=0

FOLDERS=(binary_vae continuous toy speed head_to_head cv_design sps critic_replay threads tuned update_cost gpu)
declare -A ABOUT=(
    [binary_vae]="binary VAE on MNIST, six gradient estimators (paper section 6.2); about 14 core-minutes"
    [continuous]="RelaxA2C (LAX) against A2C on three continuous-control envs (relax-rl compare)"
    [toy]="the toy problem (paper section 6.1), five estimators, seeds 0-4; about 9 minutes"
    [speed]="SPS and wall-clock time to solve of the torch and ALE env backends; Pong curve (20 minutes)"
    [head_to_head]="RelaxA2C against A2C on CartPole-v1 and LunarLander-v3, seeds 0-4"
    [cv_design]="the control-variate design study (reads head_to_head's results: run that first)"
    [sps]="training SPS side by side: RelaxA2C configurations, before/after trees (git worktrees in /tmp)"
    [critic_replay]="the critic-replay study (issues 12 and 21): lr grids, seeds, paired variance"
    [threads]="torch CPU threads against SPS"
    [tuned]="tuned head-to-head on CartPole-v1 (Optuna studies, fresh seeds) and Ray's overhead"
    [update_cost]="the update's cost before and after issue 15 (git worktree of 41beb33 in /tmp)"
    [gpu]="issue 15's GPU checks and measurements; needs a CUDA GPU, skipped without one"
)

quote() {  # one word, shell-quoted only where it needs to be
    if [[ $1 =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}

show() {  # the line printed before a command
    local line="+" word
    for word in "$@"; do line+=" $(quote "$word")"; done
    printf '%s\n' "$line"
}

run() {  # print a command, then run it (unless --dry-run)
    show "$@"
    if ((DRY_RUN == 0)); then "$@"; fi
}

run_in() {  # DIR COMMAND...: run a command in DIR, as the README's `cd DIR && ...` does
    local dir=$1
    shift
    printf '+ cd %s && %s\n' "$(quote "$dir")" "$(show "$@" | cut -c3-)"
    if ((DRY_RUN == 0)); then (cd "$dir" && "$@"); fi
}

worktree_at() {  # PATH COMMIT: the README's `git worktree add PATH COMMIT`, after removing one an earlier step left
    local worktrees
    worktrees=$(git worktree list --porcelain)
    if grep -qxF "worktree $1" <<<"$worktrees"; then run git worktree remove "$1"; fi
    run git worktree add "$1" "$2"
}

# ------------------------------------------------------------------------------------------------ the folders

bench_binary_vae() {  # benchmarks/binary_vae/README.md, "Commands" (the README read MNIST with run.py --data DIR)
    run "$PY" benchmarks/binary_vae/run.py --model linear1 --steps 5000 --seeds 0 1
    run "$PY" benchmarks/binary_vae/run.py --model nonlinear --steps 3000 --seeds 0 1 --estimators rebar relaxed_rebar disarm
}

bench_continuous() {  # benchmarks/continuous/README.md, "Commands, run from the repository root"
    run "$RELAX_RL" compare --env InvertedPendulum-v5 --algos relax_a2c a2c --seeds 5 --workers 2 \
        --out benchmarks/continuous/InvertedPendulum-v5 --eval-freq 0 --checkpoint-freq 0 --total-timesteps 150000
    run "$RELAX_RL" compare --env InvertedDoublePendulum-v5 --algos relax_a2c a2c --seeds 5 --workers 2 \
        --out benchmarks/continuous/InvertedDoublePendulum-v5 --eval-freq 0 --checkpoint-freq 0 --total-timesteps 300000
    run "$RELAX_RL" compare --env LunarLanderContinuous-v3 --algos relax_a2c a2c --seeds 3 --workers 2 \
        --out benchmarks/continuous/LunarLanderContinuous-v3 --eval-freq 0 --checkpoint-freq 0 --total-timesteps 200000
}

bench_toy() {  # benchmarks/toy/README.md, "Command"
    run "$PY" benchmarks/toy/run.py --workers 1
}

bench_speed() {  # benchmarks/speed/README.md; the full solve commands are those results.json records
    run "$PY" benchmarks/speed/run.py sps --seconds 15
    run "$PY" benchmarks/speed/run.py solve --cap 150 --solve-configs '[{"n_envs": 64}, {"n_envs": 256}, {"n_envs": 1024}, {"n_envs": 64, "kwargs": {"learning_rate": 0.002}}, {"n_envs": 256, "kwargs": {"learning_rate": 0.002}}, {"n_envs": 256, "kwargs": {"learning_rate": 0.005}}]'
    run "$PY" benchmarks/speed/run.py pong --seconds 20
    run "$PY" benchmarks/speed/run.py pong-curve --seconds 1200
    run "$PY" benchmarks/speed/run.py solve --cap 150 --seeds 1,2,3 --key solve_seeds --solve-configs '[{"n_envs": 256, "kwargs": {"learning_rate": 0.005}}, {"n_envs": 64, "kwargs": {"learning_rate": 0.002}}]'
}

bench_head_to_head() {  # benchmarks/head_to_head/README.md, "Commands" (each one relax-rl compare call)
    run bash benchmarks/head_to_head/run.sh cartpole
    run bash benchmarks/head_to_head/run.sh lunarlander
}

bench_cv_design() {  # benchmarks/cv_design/README.md, "Commands": every cell of run.sh, then aggregate.py
    # The study's own order interleaved head_to_head's two cells (after target and after factors); the
    # aggregate reads head_to_head's results too, so run that folder first.
    run bash benchmarks/cv_design/run.sh target
    run bash benchmarks/cv_design/run.sh cartpole
    run bash benchmarks/cv_design/run.sh factors
    run bash benchmarks/cv_design/run.sh lunarlander
    run bash benchmarks/cv_design/run.sh paper
    run bash benchmarks/cv_design/run.sh d256-cvlr
    run "$PY" benchmarks/cv_design/aggregate.py
}

bench_sps() {  # benchmarks/sps/README.md, in its order (results_critic_replay.json: critic_replay/README.md, "Speed")
    run "$PY" benchmarks/sps/training_sps.py --repeats 5 --steps 40000 --out benchmarks/sps/results.json
    run "$PY" benchmarks/sps/training_sps.py --env CartPole-v1 --steps 20000 --repeats 3 --out benchmarks/sps/results_critic_replay.json
    run "$PY" benchmarks/sps/training_sps.py --env relax_rl/TargetMatchingMultiDiscrete-D64-v0 --steps 8000 --repeats 3 --configs a2c_replay relax_replay all_action_replay --out benchmarks/sps/results_multidiscrete.json
    worktree_at /tmp/before b360044
    run env PYTHONPATH=/tmp/before "$PY" benchmarks/sps/training_sps.py --env relax_rl/TargetMatchingMultiDiscrete-D64-v0 --steps 8000 --repeats 3 --configs a2c_replay relax_replay all_action_replay --out benchmarks/sps/results_multidiscrete_before.json
    worktree_at /tmp/before f385497
    run "$PY" benchmarks/sps/paired_trees.py --before /tmp/before --after . --pairs 10 --out benchmarks/sps/results_issue22_same_maths.json
    run "$PY" benchmarks/sps/training_sps.py --env CartPole-v1 --steps 8000 --repeats 3 --configs relax_replay relax_replay_one_v_step a2c_replay --out benchmarks/sps/results_issue22_one_v_step.json
    worktree_at /tmp/before b08e021
    run "$PY" benchmarks/sps/paired_trees.py --before /tmp/before --after . --pairs 10 --out benchmarks/sps/results_issue22_acting.json
    run "$PY" benchmarks/sps/paired_trees.py --before /tmp/before --after . --pairs 10 --hyperparams '{"pg_estimator": "a2c"}' --out benchmarks/sps/results_issue22_acting_control.json
}

bench_critic_replay() {  # benchmarks/critic_replay/README.md, its code blocks and inline commands in its order
    local run_py=benchmarks/critic_replay/run.py aggregate=benchmarks/critic_replay/aggregate.py
    # Issue 12: CartPole-v1, 64- and 256-bit target matching, LunarLander-v3 seed 0, MultiDiscrete
    run "$PY" "$run_py" --env CartPole-v1 --seeds 0 1 --lrs 3.5e-4 7e-4 1.4e-3 2.8e-3 5.6e-3
    run "$PY" "$run_py" --env CartPole-v1 --variants a2c a2c_replay --lrs 2.8e-3 --seeds 2 3 4 5 6 7 8 9
    run "$PY" "$run_py" --env CartPole-v1 --variants relax_replay all_action_replay a2c --lrs 7e-4 --seeds 2 3 4 5 6 7 8 9
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --seeds 0 --lrs 7e-4 1.4e-3 2.8e-3 5.6e-3 1.12e-2 --budget 600000
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --seeds 1 2 --lrs 5.6e-3 --budget 600000
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --variants a2c --seeds 1 2 --lrs 7e-4 --budget 600000
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D256-v0 --seeds 0 --lrs 5.6e-3 --budget 600000
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D256-v0 --seeds 0 1 2 3 4 --lrs 5.6e-3 --budget 600000 --workers 2
    run "$PY" "$aggregate" --env relax_rl/TargetMatching-D256-v0 --metric updates --grid-seeds 0
    run "$PY" "$run_py" --env LunarLander-v3 --variants a2c relax_replay a2c_replay --lrs 7e-4 --seeds 0 --budget 1000000 --workers 1 --progress 50000
    run "$PY" "$run_py" --env relax_rl/TargetMatchingMultiDiscrete-D64-v0 --variants a2c --seeds 0 --lrs 5.6e-3 --budget 600000 --workers 1 --progress 50000
    run "$PY" "$run_py" --env relax_rl/TargetMatchingMultiDiscrete-D64-v0 --seeds 0 1 2 3 4 --lrs 5.6e-3 --budget 600000 --threshold 0.85 --workers 2 --progress 50000
    run "$PY" "$aggregate" --env CartPole-v1
    run "$PY" "$aggregate" --env relax_rl/TargetMatching-D64-v0 --metric updates --grid-seeds 0
    run "$PY" "$aggregate" --env LunarLander-v3 --grid-seeds 0
    run "$PY" "$aggregate" --env relax_rl/TargetMatchingMultiDiscrete-D64-v0 --metric updates --grid-seeds 0
    run "$PY" "$aggregate" --env relax_rl/TargetMatchingMultiDiscrete-D64-v0 --metric updates --grid-seeds 0 --threshold 0.85
    run_in benchmarks/critic_replay ../../.venv/bin/python variance.py --steps 50000 --states 256
    run_in benchmarks/critic_replay ../../.venv/bin/python variance.py --envs relax_rl/TargetMatchingMultiDiscrete-D64-v0 relax_rl/TargetMatching-D256-v0 --steps 50000 --states 256 --out variance_high_dim.json
    # LunarLander-v3, seeds 1-4
    run "$PY" "$run_py" --env LunarLander-v3 --variants a2c relax_replay a2c_replay --lrs 7e-4 --seeds 0 1 2 --budget 1000000 --workers 2 --progress 200000
    run "$PY" "$run_py" --env LunarLander-v3 --variants a2c relax_replay a2c_replay --lrs 7e-4 --seeds 3 4 --budget 1000000 --workers 2 --progress 200000
    run "$PY" "$aggregate" --env LunarLander-v3 --grid-seeds 0
    # Issue 21. The README writes `--out issue21.jsonl` and `--out variance_exact_reference.json` in commands run
    # from the repository root; they are given here relative to the root, where aggregate_issue21.py reads them.
    local i21=benchmarks/critic_replay/issue21.jsonl
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --variants a2c_replay relax_replay all_action_replay all_action_centred all_action_per_sub_action a2c_replay_corrected relax_per_sub_action relax_phi_on_rollout a2c_exact_v all_action_exact_q --lrs 5.6e-3 --seeds 0 1 2 3 4 --budget 600000 --out "$i21"
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --variants a2c_replay_vtrace a2c_replay_half_life_8 --lrs 5.6e-3 --seeds 0 1 2 --budget 600000 --out "$i21"
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --variants a2c_replay all_action_per_sub_action a2c_exact_v all_action_exact_q --lrs 1.12e-2 --seeds 0 1 2 --budget 600000 --out "$i21"
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --variants a2c_replay a2c_exact_v all_action_exact_q --lrs 2.24e-2 --seeds 0 --budget 600000 --out "$i21"
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --variants a2c_exact_v all_action_exact_q --lrs 2.24e-2 --seeds 1 2 --budget 600000 --out "$i21"
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D64-v0 --variants all_action_per_sub_action --lrs 2.24e-2 --seeds 0 --budget 100000 --out "$i21"
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D256-v0 --variants all_action_per_sub_action --lrs 5.6e-3 --seeds 0 --budget 600000 --out "$i21" --workers 1
    run "$PY" "$run_py" --env Acrobot-v1 --variants a2c a2c_replay relax_replay --lrs 7e-4 --seeds 0 1 2 --budget 300000 --out "$i21" --workers 1
    run "$PY" "$run_py" --env relax_rl/TargetMatchingMultiDiscrete-D64-v0 --variants a2c_replay all_action_per_sub_action all_action_replay --threshold 0.85 --lrs 5.6e-3 --seeds 0 --budget 600000 --out "$i21"
    run "$PY" "$run_py" --env relax_rl/TargetMatching-D256-v0 --variants a2c_replay all_action_replay all_action_centred relax_replay --lrs 5.6e-3 --seeds 0 1 2 --budget 600000 --out "$i21"
    run "$PY" benchmarks/critic_replay/aggregate_issue21.py --env relax_rl/TargetMatching-D64-v0
    run "$PY" benchmarks/critic_replay/aggregate_issue21.py --env relax_rl/TargetMatching-D256-v0
    run "$PY" benchmarks/critic_replay/aggregate_issue21.py --env Acrobot-v1 --metric episodes
    run "$PY" benchmarks/critic_replay/variance.py --envs relax_rl/TargetMatching-D64-v0 --variants a2c_replay relax_replay all_action_replay all_action_per_sub_action --steps 20000 --states 256 --lr 5.6e-3 --out benchmarks/critic_replay/variance_exact_reference.json
    run "$PY" benchmarks/critic_replay/theta_variance.py --steps 30000 --rollouts 300
    # LunarLander-v3 with rl-zoo's settings, 5 seeds, beside the control; merged into LunarLander-v3_zoo/
    run "$RELAX_RL" compare --env LunarLander-v3 --algos relax_a2c a2c --seeds 5 --workers 1 --eval-freq 50000 --out /tmp/ll_zoo
    run "$RELAX_RL" compare --env LunarLander-v3 --algos relax_a2c --hyperparams relax_a2c:pg_estimator=a2c --seeds 5 --workers 1 --eval-freq 50000 --out /tmp/ll/control
    run "$PY" benchmarks/critic_replay/merge_compares.py --env LunarLander-v3 --out benchmarks/critic_replay/LunarLander-v3_zoo \
        --inputs relax_a2c=/tmp/ll_zoo:relax_a2c a2c=/tmp/ll_zoo:a2c control=/tmp/ll/control:relax_a2c
    # InvertedPendulum-v5 (Box actions)
    run "$PY" "$run_py" --env InvertedPendulum-v5 --variants a2c a2c_replay relax_replay --lrs 7e-4 --seeds 0 1 2 3 4 --budget 150000 --normalize
    # Not reproduced: no README gives the aggregate.py call behind InvertedPendulum-v5/summary.json, nor the
    # commands behind issue22.jsonl and issue22_CartPole-v1.md (see benchmarks/sps/README.md).
}

bench_threads() {  # benchmarks/threads/README.md
    run "$PY" benchmarks/threads/run.py --steps 5000 --repeats 2
}

bench_tuned() {  # benchmarks/tuned/README.md (run.py resumes: finished trials and runs are not run again)
    run "$PY" benchmarks/tuned/run.py --trials 16 --seeds 2 --tune-timesteps 50000 --fresh-seeds 10 --fresh-timesteps 100000
    run "$PY" benchmarks/tuned/run.py --ray-overhead --repeats 3
}

bench_update_cost() {  # benchmarks/update_cost/README.md
    worktree_at /tmp/old 41beb33
    run "$PY" benchmarks/update_cost/run.py --before /tmp/old --after . --n-envs 4096 --updates 5 --repeats 5
}

bench_gpu() {  # benchmarks/gpu/README.md: the one prepared script for a CUDA machine (about 7 minutes on an H200)
    local cuda
    cuda=$("$PY" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null || echo "no torch")
    if [[ $cuda != True ]]; then
        echo "gpu: needs a CUDA GPU (torch.cuda.is_available(): $cuda); skipped"
        return 0
    fi
    run env PYTHON="$PY" bash benchmarks/gpu/run.sh /tmp/gpu_out
    echo "gpu: commit gpu_results.json, gpu_summary.png and cuda_tests.txt from /tmp/gpu_out with the date and the machine"
}

# ------------------------------------------------------------------------------------------------------ main

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

list() {
    local folder dir
    for folder in "${FOLDERS[@]}"; do printf '%-14s %s\n' "$folder" "${ABOUT[$folder]}"; done
    for dir in benchmarks/*/; do
        dir=${dir%/}
        [[ -n ${ABOUT[${dir#benchmarks/}]+set} ]] || echo "warning: $dir has no function in $0" >&2
    done
}

main() {
    local chosen=() folder
    while (($#)); do
        case $1 in
            -l | --list) list; return 0 ;;
            -n | --dry-run) DRY_RUN=1 ;;
            -h | --help) usage; return 0 ;;
            -*) echo "unknown option: $1" >&2; usage >&2; return 2 ;;
            *)
                folder=${1%/}
                folder=${folder#benchmarks/}
                if [[ -z ${ABOUT[$folder]+set} ]]; then
                    echo "unknown folder: $1 (one of: ${FOLDERS[*]})" >&2
                    return 2
                fi
                chosen+=("$folder")
                ;;
        esac
        shift
    done
    ((${#chosen[@]})) || chosen=("${FOLDERS[@]}")
    for folder in "${chosen[@]}"; do
        echo "=== $folder: ${ABOUT[$folder]}"
        "bench_$folder"
    done
}

main "$@"
