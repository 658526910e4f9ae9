"""Is the critics' error at 20k steps a lag behind the policy, the noise of their targets, or a fit that is slow?

Issue 21 asks for a state baseline whose rmse against the exact ``V*`` at 20k steps (D64) is half of what it was.
Each design trains ``--steps`` timesteps on one-step target matching (SB3's 8 x 5, lr 5.6e-3); the critics'
fit is recorded then, on the 1024 fixed contexts ``run.py``'s ``FitRecorder`` uses. Then θ stops (it is put back
before every rollout, so the policy and ``V*`` no longer move) and training goes on, ``V`` and ``φ`` fitting fresh
rollouts of the frozen policy as they did before, ``V`` at its learning rate and φ's Adam at each ``--cv-lrs``. The
fit is recorded again after each of ``--more`` further timesteps.

- If the error were the policy's lead (lag), it would fall within a replay's length (32 rollouts, 1280 steps)
  once θ stops.
- If it were the noise of single-sample targets, it would stay where it was: the targets are as noisy as before.
- If the fit is slow, it keeps falling over thousands of updates.

    .venv/bin/python benchmarks/critic_replay/frozen_policy_fit.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch
from run import HERE, VARIANTS, FitRecorder, study_meta
from stable_baselines3.common.callbacks import BaseCallback

from relax_rl import RelaxA2C
from relax_rl.diagnose import critic_fit
from relax_rl.envs import exact_reference, make_vec_env

KEYS = ("state_part_rmse", "v_rmse", "slope_r2", "slope_r2_weighted")


class FrozenActor(BaseCallback):
    """Puts ``model``'s θ, as it is when this is made, back before every rollout and at the end of every ``learn``:
    the policy acts and is scored as it was, while ``V`` and φ train on. (Taken once, not when ``learn`` starts,
    or each ``learn`` would keep its last update's step.)"""

    def __init__(self, model: RelaxA2C):
        super().__init__()
        self.theta = [p.detach().clone() for p in model.policy.actor_parameters()]

    def _restore(self) -> None:
        with torch.no_grad():
            for param, value in zip(self.model.policy.actor_parameters(), self.theta, strict=True):
                param.copy_(value)

    def _on_rollout_start(self) -> None:
        self._restore()

    def _on_training_end(self) -> None:
        self._restore()

    def _on_step(self) -> bool:
        return True


def fit_at(model: RelaxA2C, recorder: FitRecorder) -> dict[str, float]:
    fit = critic_fit(model, recorder.reference, recorder.obs, recorder.horizon)
    return {key: round(fit[key], 4) for key in KEYS if key in fit}


def run_seed(env_id: str, variant: str, seed: int, steps: int, more: list[int], cv_lrs: list[float]) -> dict:
    torch.set_num_threads(1)
    env = make_vec_env(env_id, 8, seed, backend="gymnasium")
    recorder = FitRecorder(exact_reference(env), env.observation_space.shape[0], 5)
    model = RelaxA2C("MlpPolicy", env, learning_rate=5.6e-3, seed=seed, device="cpu", **VARIANTS[variant])
    model.learn(steps)
    result = {"env": env_id, "variant": variant, "seed": seed, "steps": steps, "trained": fit_at(model, recorder)}
    saved = io.BytesIO()
    model.save(saved)
    for cv_lr in cv_lrs:
        saved.seek(0)
        frozen = RelaxA2C.load(saved, env=env, device="cpu")
        frozen.cv_lr_schedule = lambda _, lr=cv_lr: lr
        actor = FrozenActor(frozen)
        fits = {}
        for extra in more:
            frozen.learn(steps + extra - frozen.num_timesteps, callback=actor, reset_num_timesteps=False)
            fits[str(extra)] = fit_at(frozen, recorder)
        result[f"frozen_cv_lr_{cv_lr:g}"] = fits
        print(f"{variant} s{seed} cv_lr {cv_lr:g}: trained {result['trained']}, frozen {fits}", flush=True)
    return result


def report(path: Path) -> None:
    """A markdown table (medians over seeds) on stdout and a PNG beside the JSON: each fit against the extra steps."""
    import matplotlib.pyplot as plt
    import numpy as np

    results = json.loads(path.read_text())["results"]
    keys = [key for key in KEYS if key in results[0]["trained"]]
    baseline = "state_part_rmse" if "state_part_rmse" in keys else "v_rmse"  # what the estimator subtracts
    runs = sorted(key for key in results[0] if key.startswith("frozen_"))
    extras = list(results[0][runs[0]])
    slopes = "slope_r2_weighted" in keys  # a design without ĉ has none
    figure, axes = plt.subplots(1, 1 + slopes, figsize=(5 + 5 * slopes, 3.8), squeeze=False)
    axes = axes[0]
    print(f"| θ frozen, then | extra steps | {' | '.join(keys)} |\n|---|---|{'---|' * len(keys)}")
    for run in runs:
        points = [{key: [r["trained"][key], *(r[run][e][key] for e in extras)] for key in keys} for r in results]
        median = {key: np.median([p[key] for p in points], axis=0) for key in keys}
        label = f"φ's Adam at {run.removeprefix('frozen_cv_lr_')}" if baseline == "state_part_rmse" else "V̂ (no ĉ)"
        for i, extra in enumerate(["0", *extras]):
            print(f"| {label} | {extra} | {' | '.join(f'{median[key][i]:.3f}' for key in keys)} |")
        steps = [0, *(int(e) / 1000 for e in extras)]
        axes[0].plot(steps, median[baseline], marker="o", label=label)
        if slopes:
            axes[1].plot(steps, median["slope_r2_weighted"], marker="o", label=label)
    after = "thousands of timesteps after θ stopped"
    axes[0].set(xlabel=after, ylabel=f"{baseline} against V*", title="state baseline")
    if slopes:
        axes[1].set(xlabel=after, ylabel="R² weighted by p(1−p)", title="q̂'s slopes")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    where = f"{results[0]['env']}, {results[0]['variant']}"
    figure.suptitle(f"{where}:\nthe critics' fit once the policy stops (medians of {len(results)} seeds)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path.with_suffix(".png"), dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="relax_rl/TargetMatching-D64-v0")
    parser.add_argument("--variant", default="default", choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--more", nargs="+", type=int, default=[1280, 5000, 10000, 20000, 40000])
    parser.add_argument("--cv-lrs", nargs="+", type=float, default=[1e-3, 3e-4])
    parser.add_argument("--out", type=Path, default=HERE / "frozen_policy_fit.json")
    parser.add_argument("--report", action="store_true", help="only the table and the plot of --out's results")
    args = parser.parse_args()
    if args.report:
        report(args.out)
        return
    results = [run_seed(args.env, args.variant, seed, args.steps, args.more, args.cv_lrs) for seed in args.seeds]
    args.out.write_text(json.dumps({**study_meta("frozen_policy_fit.py", args), "results": results}, indent=2))
    report(args.out)


if __name__ == "__main__":
    main()
