"""Issue 12's study: what the critic's replay gives, and what the action dependence adds on top.

Every run is one (variant, learning rate, seed) at SB3's A2C setting (8 envs x 5 steps), trained until
the 100-episode mean return of the training episodes reaches the env's threshold, or the budget runs
out (censored). Variants:

- ``a2c``: SB3's own A2C at its defaults (RMSprop; only the learning rate varies in the grid).
- ``a2c_replay``: RelaxA2C with ``pg_estimator="a2c"``: A2C's estimator, the critic on a replay. The
  honest control: the same critic training as the two below.
- ``relax_replay``: RELAX, ``ĉ`` (MLP on features, softmax(z/τ), h) on the same replay.
- ``all_action_replay``: the all-action form, ``q̂`` linear in the action's one-hot / bits, same replay.

Results go to ``results.jsonl`` (one line per run, appended as runs finish: a killed study resumes
where it stopped). ``aggregate.py`` makes the tables and plots.

    .venv/bin/python benchmarks/critic_replay/run.py --env CartPole-v1 --seeds 0 1 2 --lrs 3.5e-4 7e-4 1.4e-3 2.8e-3
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from relax_rl import RelaxA2C
from relax_rl.envs import get_spec, make_vec_env

HERE = Path(__file__).resolve().parent
#: The replay of the probe in issue 12: 32 rollouts, 4 minibatch steps of 256 rows for V; one for φ
#: (four made RELAX 8x slower than A2C per timestep).
REPLAY = {"critic_replay": 32, "critic_steps": 4, "critic_batch_size": 256}
VARIANTS: dict[str, dict[str, Any]] = {
    "a2c": {},
    "a2c_replay": {"pg_estimator": "a2c", **REPLAY},
    "relax_replay": {
        "pg_estimator": "relax",
        "cv_objective": "regression+logits",
        "cv_steps": 1,
        "cv_horizon_input": True,
        **REPLAY,
    },
    "all_action_replay": {
        "pg_estimator": "all_action",
        "cv_objective": "regression",
        "cv_steps": 1,
        "cv_horizon_input": True,
        **REPLAY,
    },
}
SOLVE_WINDOW = 100
#: Steps between the points of a run's learning curve (the 100-episode mean), stored with its result.
CURVE_EVERY = 10_000


class StopWhenSolved(BaseCallback):
    """Stops training when the mean of the last 100 training episodes reaches ``threshold``; keeps that
    mean every ``CURVE_EVERY`` steps as the run's learning curve."""

    def __init__(self, threshold: float, progress: int = 0, label: str = ""):
        super().__init__()
        self.threshold, self.returns, self.solved_at = threshold, [], None
        self.progress, self.label, self.next_report = progress, label, progress  # a line every `progress` steps
        self.curve: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        if self.num_timesteps >= CURVE_EVERY * (len(self.curve) + 1) and self.returns:
            self.curve.append((self.num_timesteps, float(np.mean(self.returns[-SOLVE_WINDOW:]))))
        if self.progress and self.num_timesteps >= self.next_report:
            self.next_report += self.progress
            recent = self.returns[-SOLVE_WINDOW:]
            mean = f"{np.mean(recent):.3f}" if recent else "-"
            print(f"  {self.label}: {self.num_timesteps} steps, {len(self.returns)} episodes, mean {mean}", flush=True)
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(float(info["episode"]["r"]))
                recent = self.returns[-SOLVE_WINDOW:]
                if len(recent) == SOLVE_WINDOW and np.mean(recent) >= self.threshold:
                    self.solved_at = len(self.returns)
                    return False
        return True


def threshold_of(result: dict[str, Any]) -> float:
    """The threshold a stored run was made to: results from before ``--threshold`` used the env's."""
    return result.get("threshold", get_spec(result["env"]).reward_threshold)


def run_one(
    env_id: str,
    variant: str,
    lr: float,
    seed: int,
    budget: int,
    threshold: float,
    normalize: bool = False,
    progress: int = 0,
) -> dict[str, Any]:
    torch.set_num_threads(1)
    env = make_vec_env(env_id, 8, seed, backend="gymnasium")
    if normalize:  # as the zoo's configs do for MuJoCo; the episode returns read are the raw ones
        env = VecNormalize(env)
    kwargs = {"learning_rate": lr, "seed": seed, "device": "cpu"}
    model = (
        A2C("MlpPolicy", env, **kwargs)
        if variant == "a2c"
        else RelaxA2C("MlpPolicy", env, **VARIANTS[variant], **kwargs)
    )
    stopper = StopWhenSolved(threshold, progress, f"{variant} lr={lr:g} s{seed}")
    start = time.perf_counter()
    model.learn(budget, callback=stopper)
    wall = time.perf_counter() - start
    return {
        "env": env_id,
        "variant": variant,
        "lr": lr,
        "seed": seed,
        "budget": budget,
        "threshold": threshold,
        "normalize": normalize,
        "solved": stopper.solved_at is not None,
        "episodes": stopper.solved_at if stopper.solved_at is not None else len(stopper.returns),
        "timesteps": model.num_timesteps,
        "updates": model.num_timesteps // (8 * model.n_steps),
        "wall_s": wall,
        "sps": model.num_timesteps / wall,
        "final_mean_return": float(np.mean(stopper.returns[-SOLVE_WINDOW:])) if stopper.returns else None,
        "curve": stopper.curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--lrs", nargs="+", type=float, default=[3.5e-4, 7e-4, 1.4e-3, 2.8e-3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=300_000, help="timesteps before a run counts as unsolved")
    parser.add_argument(
        "--threshold", type=float, help="the 100-episode mean that counts as solved (default: the env's)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--normalize", action="store_true", help="VecNormalize observations and rewards")
    parser.add_argument("--progress", type=int, default=0, help="print a progress line every this many steps")
    parser.add_argument("--out", type=Path, default=HERE / "results.jsonl")
    args = parser.parse_args()
    threshold = args.threshold if args.threshold is not None else get_spec(args.env).reward_threshold
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["env"], r["variant"], r["lr"], r["seed"], r["budget"], threshold_of(r)))
    jobs = [
        (args.env, v, lr, s, args.budget, threshold)
        for s in args.seeds
        for lr in args.lrs
        for v in args.variants
        if (args.env, v, lr, s, args.budget, threshold) not in done
    ]
    print(f"{len(jobs)} runs to go ({len(done)} already in {args.out})", flush=True)
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run_one, *job, args.normalize, args.progress): job for job in jobs}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            result = future.result()
            with args.out.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(
                f"[{i}/{len(jobs)}] {result['variant']} lr={result['lr']:g} s{result['seed']}: "
                f"{'solved' if result['solved'] else 'UNSOLVED'} at episode {result['episodes']} "
                f"({result['timesteps']} steps, {result['sps']:.0f} SPS)",
                flush=True,
            )


if __name__ == "__main__":
    main()
