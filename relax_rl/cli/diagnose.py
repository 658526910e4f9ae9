"""``relax-rl diagnose``: the variance decomposition of a saved model's gradient estimators."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import gymnasium as gym

from relax_rl.cli.common import CLIParser, add_threads_argument, run_guarded
from relax_rl.config import load_algo_class
from relax_rl.diagnose import (
    DEFAULT_MAX_AGE,
    EnvNotCopyableError,
    check_copyable,
    diagnose,
    format_table,
)
from relax_rl.envs import make_vec_env
from relax_rl.errors import UsageError
from relax_rl.run import detect_algo, find_run_config, observes_raw_env, read_model_data, torch_threads
from relax_rl.safe_load import UnsafeModelError, load_model_safely

DESCRIPTION = "Where does the policy gradient's variance come from? (Tucker et al., 2018; docs/design.md §4b, §8)"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = CLIParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--model", type=Path, required=True, help="a .zip saved by train.py (either algorithm)")
    parser.add_argument("--env", help="default: the env in config.yml of the model's run directory")
    parser.add_argument("--samples", type=int, default=256, help="independent rollout rows N (default 256)")
    parser.add_argument("--actions", type=int, default=4, help="actions M per row (default 4)")
    parser.add_argument("--continuations", type=int, default=4, help="continuations K per action (default 4)")
    parser.add_argument(
        "--max-age",
        type=int,
        help="largest age (steps since a reset) of a sampled state; states are exactly on-policy when no episode "
        f"is longer (default: the env's episode limit, or {DEFAULT_MAX_AGE})",
    )
    parser.add_argument(
        "--baseline-samples",
        type=int,
        default=8,
        help="independent actions per row whose returns make the Monte Carlo state value mc_v (default 8)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    add_threads_argument(parser)
    return parser


def _diagnose(argv: Sequence[str] | None, prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    if args.samples < 3 or min(args.actions, args.continuations, args.baseline_samples) < 2:
        raise UsageError("--samples must be >= 3, --actions, --continuations and --baseline-samples >= 2")
    if args.max_age is not None and args.max_age < 1:
        raise UsageError("--max-age must be >= 1")
    algo = detect_algo(read_model_data(args.model))
    run_config = find_run_config(args.model)
    env_id = args.env or (run_config.env if run_config else None)
    if env_id is None:
        raise UsageError(f"no --env given and no config.yml next to {args.model}")
    if run_config is not None and not observes_raw_env(run_config):
        raise UsageError(
            "diagnose needs the raw environment: VecNormalize, frame stacking and Atari preprocessing are not supported"
        )
    try:  # make_vec_env validates the id, with close matches if it is unknown
        model = load_model_safely(args.model, load_algo_class(algo), make_vec_env(env_id, 1), device="cpu")
    except UnsafeModelError as err:
        raise UsageError(str(err)) from None
    env = gym.make(env_id)
    try:
        check_copyable(env)
    except EnvNotCopyableError as err:
        raise UsageError(f"{env_id} cannot be copied to resample actions at fixed states: {err}") from None
    with torch_threads(args.threads):
        result = diagnose(
            model, env, args.samples, args.actions, args.continuations, args.seed, args.max_age, args.baseline_samples
        )
    if args.json:
        print(json.dumps({"algo": algo, "env": env_id, **result.to_dict()}))
        return 0
    s = result.settings
    print(
        f"{algo} on {env_id} (estimator {s['pg_estimator']}; n_steps {s['n_steps']}, gamma {s['gamma']}, "
        f"gae_lambda {s['gae_lambda']}): {s['n_states']} independent rollout rows (on-policy states of age "
        f"< {s['max_age']}, each at a uniform position j of the window, h = n_steps - j), "
        f"{s['n_actions']} actions x {s['n_continuations']} continuations each; "
        f"{s['episode_end_fraction']:.1%} of the sampled windows hold an episode end, and the states where one "
        f"did carry {s['episode_end_share_of_a2c']:.0%} of A2C's variance"
    )
    print("Variance (trace, policy-parameter space) of one row's estimate, ± jackknife SE over rows:")
    print(format_table(result))
    precise = min(result.estimators, key=lambda name: result.estimators[name].state.se)
    print(
        "Ratios are computed on the same rows, actions and continuations. The state part is one quantity for "
        f"every unbiased estimator; its most precise estimate here is {precise}'s, "
        f"{result.estimators[precise].state}. Negative parts are estimates of components indistinguishable "
        "from zero at this sample size."
    )
    if getattr(model, "normalize_advantage", False):
        print("Note: this model normalises advantages per rollout in training; the estimates here are unnormalised.")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "relax-rl diagnose") -> int:
    return run_guarded(partial(_diagnose, prog=prog), argv)
