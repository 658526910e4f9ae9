"""Training throughput of RelaxA2C against SB3's A2C, measured side by side in one process.

Both algorithms train on the same vectorised env with the same settings; runs alternate
(A2C, RELAX without replay: logits, params, linear head; the critic-replay study's variants, of which
``relax_replay`` is RelaxA2C's default; A2C, ...) so that
drifts in machine load hit all of them alike, and each configuration's median SPS over the repeats is
reported with its ratio to A2C.

    python benchmarks/sps/training_sps.py --env CartPole-v1 --steps 50000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from stable_baselines3 import A2C

import relax_rl
from relax_rl import RelaxA2C
from relax_rl.envs import make_vec_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "critic_replay"))
from run import SB3_A2C
from run import VARIANTS as REPLAY_VARIANTS

#: RelaxA2C without a replay, as it was before the critic-replay study made the replay its default.
NO_REPLAY = {"critic_replay": 0, "cv_objective": "logits", "cv_horizon_input": False}
CONFIGS = {
    **{name: (A2C, kwargs) for name, kwargs in SB3_A2C.items()},
    "relax_a2c, no replay (logits)": (RelaxA2C, NO_REPLAY),
    "relax_a2c, no replay (params)": (RelaxA2C, {**NO_REPLAY, "cv_objective": "params"}),
    "relax_a2c, no replay (logits, linear head)": (RelaxA2C, {**NO_REPLAY, "policy_kwargs": {"cv_arch": "linear"}}),
    **{name: (RelaxA2C, kwargs) for name, kwargs in REPLAY_VARIANTS.items() if name not in SB3_A2C},
}


def measure(algo_cls, kwargs: dict, env_id: str, n_envs: int, steps: int, seed: int) -> float:
    """SPS of ``learn(steps)`` after a short warm-up (imports, first allocations)."""
    model = algo_cls("MlpPolicy", make_vec_env(env_id, n_envs, seed), seed=seed, device="cpu", **kwargs)
    model.learn(n_envs * 50)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def _arg(value: object) -> str:
    return " ".join(f"'{v}'" if " " in v else v for v in value) if isinstance(value, list) else str(value)


def _library_commit() -> str:
    """The commit of the relax_rl that was measured (a worktree on PYTHONPATH can be another than this one)."""
    package = Path(relax_rl.__file__).parent
    commit = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{commit.stdout.strip() or 'unknown commit'} ({package})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), help="what to measure (a2c always)"
    )
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # what train.py does: small networks are fastest single-threaded

    sps: dict[str, list[float]] = {name: [] for name in CONFIGS if name == "a2c" or name in args.configs}
    for repeat in range(args.repeats):
        for name in sps:
            algo_cls, kwargs = CONFIGS[name]
            sps[name].append(measure(algo_cls, kwargs, args.env, args.n_envs, args.steps, seed=repeat))
    base = statistics.median(sps["a2c"])
    rows = {
        name: {"median_sps": statistics.median(v), "ratio_to_a2c": statistics.median(v) / base, "sps": v}
        for name, v in sps.items()
    }
    print(f"| {args.env}, n_envs={args.n_envs}, {args.steps} steps x {args.repeats} | median SPS | ratio to A2C |")
    print("|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['median_sps']:.0f} | {row['ratio_to_a2c']:.2f} |")
    if args.out:
        options = {k: v for k, v in vars(args).items() if k != "out" and v is not None}
        meta = {
            "command": "python benchmarks/sps/training_sps.py "
            + " ".join(f"--{k.replace('_', '-')} {_arg(v)}" for k, v in options.items()),
            "relax_rl": _library_commit(),
            "commit": _library_commit(),  # the code measured: the tree relax_rl was imported from
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        }
        with open(args.out, "w") as f:
            json.dump({**meta, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
