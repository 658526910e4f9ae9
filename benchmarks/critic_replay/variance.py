"""Where the variance is, for the study's designs: ``relax_rl.diagnose`` on models trained part-way.

For each (env, variant) a model trains ``--steps`` timesteps at SB3's A2C setting, then the diagnostic
samples independent rollout rows from it and reports, on the same rows, actions and continuations,
paired variance ratios with jackknife standard errors: what a Monte Carlo state value leaves of A2C's
(``mc_v/a2c``), what the control variate's action dependence leaves of its own state part
(``own/own_state``) and the design against A2C (``own/a2c``). On target matching also the exact references:
A2C with the exact ``V*`` (``a2c_exact_v/a2c``), the design against it (``own/a2c_exact_v``) and the exact
action value (``exact_q/a2c``).

    .venv/bin/python benchmarks/critic_replay/variance.py --steps 50000 --states 256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import torch
from run import relax_model, study_meta

from relax_rl.diagnose import diagnose
from relax_rl.envs import make_vec_env

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "relax_rl/TargetMatching-D64-v0"])
    parser.add_argument("--variants", nargs="+", default=["a2c_replay", "relax_replay", "all_action_replay"])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--states", type=int, default=256)
    parser.add_argument("--lr", type=float, default=7e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "variance.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for env_id in args.envs:
        for variant in args.variants:
            env = make_vec_env(env_id, 8, args.seed, backend="gymnasium")
            model = relax_model(variant, env, learning_rate=args.lr, seed=args.seed, device="cpu")
            model.learn(args.steps)
            result = diagnose(model, gym.make(env_id), n_states=args.states, seed=args.seed)
            ratios = {name: {part: e.to_dict() for part, e in parts.items()} for name, parts in result.ratios.items()}
            results.append({"env": env_id, "variant": variant, "ratios": ratios, "settings": result.settings})
            line = ", ".join(f"{name} {parts['total']}" for name, parts in result.ratios.items())
            print(f"{env_id} {variant} after {args.steps} steps: {line}", flush=True)
    meta = study_meta("variance.py", args)
    args.out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
