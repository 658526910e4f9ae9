"""Training SPS of the same configuration in two source trees (a commit before a change and after it),
side by side: the runs alternate A B A B ..., each in a fresh process, and the ratio is taken pair by pair,
so that a machine whose speed drifts moves both sides of a pair alike.

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/sps/paired_trees.py --before /tmp/before --after . --pairs 10

Each run trains RelaxA2C on ``--env`` (8 envs by default, SB3's 8 x 5 setting, one torch thread; ``--backend
torch`` for the on-device envs at any ``--n-envs``) for a short warm-up, then times ``--steps`` timesteps
in-process (imports and set-up excluded).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RUN = """
import sys, time
sys.path.insert(0, {tree!r})
import torch
from stable_baselines3.common.env_util import make_vec_env
import relax_rl.envs
from relax_rl import RelaxA2C
torch.set_num_threads(1)
if {backend!r} == "torch":
    env = relax_rl.envs.make_vec_env({env!r}, {n_envs}, seed=0, backend="torch", device="cpu")
else:
    env = make_vec_env({env!r}, {n_envs}, seed=0)
model = RelaxA2C("MlpPolicy", env, seed=0, device="cpu", **{kwargs!r})
model.learn(400)
start = time.perf_counter()
model.learn({steps}, reset_num_timesteps=False)
print({steps} / (time.perf_counter() - start))
"""


def sps(tree: Path, env: str, steps: int, kwargs: dict, n_envs: int = 8, backend: str = "gymnasium") -> float:
    code = RUN.format(tree=str(tree.resolve()), env=env, steps=steps, kwargs=kwargs, n_envs=n_envs, backend=backend)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def commit_of(tree: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path("."))
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--backend", choices=["gymnasium", "torch"], default="gymnasium")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument(
        "--hyperparams", type=json.loads, default={}, help='RelaxA2C keywords as JSON, e.g. {"critic_replay": 0}'
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pairs = []
    for i in range(args.pairs):
        after = sps(args.after, args.env, args.steps, args.hyperparams, args.n_envs, args.backend)
        before = sps(args.before, args.env, args.steps, args.hyperparams, args.n_envs, args.backend)
        pairs.append((after, before))
        print(f"pair {i}: after {after:.0f} SPS, before {before:.0f} SPS, ratio {after / before:.3f}", flush=True)
    ratios = np.array([a / b for a, b in pairs])
    rng = np.random.default_rng(0)
    boot = [np.median(rng.choice(ratios, len(ratios))) for _ in range(2000)]
    low, high = np.percentile(boot, [2.5, 97.5])
    print(f"after / before: median {np.median(ratios):.3f} [{low:.3f}, {high:.3f}] over {len(ratios)} pairs")
    if args.out:
        result = {
            "command": "python benchmarks/sps/paired_trees.py " + " ".join(sys.argv[1:]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, one torch thread per run",
            "before_commit": commit_of(args.before),
            "after_commit": commit_of(args.after),
            "commit": commit_of(args.after),  # the code measured, against before_commit
            "env": args.env,
            "n_envs": args.n_envs,
            "backend": args.backend,
            "hyperparams": args.hyperparams,
            "pairs": [{"after_sps": a, "before_sps": b} for a, b in pairs],
            "median_ratio": float(np.median(ratios)),
            "ratio_95ci": [float(low), float(high)],
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
