"""Finding 6 of issue 21: how much of the variance of θ's update does each design's control variate remove,
paired against A2C's update on the same rollouts, at the same actor and ``V``?

Each design trains ``--steps`` timesteps (8 envs x 5 steps) on 64-bit target matching with ``--episode-length``
steps per episode. Then θ, ``V`` and φ are frozen and ``--rollouts`` fresh rollouts are collected. On each, the
design's θ gradient (the policy loss's, as ``train`` forms it) and A2C's, ``mean_t Â_t ∇θ log π(a_t|s_t)`` with
the same advantages, are taken. The ratio is ``tr Var(design) / tr Var(A2C)`` over rollouts, with a paired
bootstrap interval (rollouts resampled together), and a paired z-score of the mean difference along the mean
A2C gradient (taken from the other half of the rollouts) checks that both estimate the same thing.

    .venv/bin/python benchmarks/critic_replay/theta_variance.py --steps 30000 --rollouts 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from run import VARIANTS, study_meta
from stable_baselines3.common.env_util import make_vec_env

from relax_rl import RelaxA2C
from relax_rl.agents.buffers import whole_rollout
from relax_rl.envs import TargetMatchingEnv

HERE = Path(__file__).resolve().parent
DESIGNS = {
    "relax_replay": VARIANTS["relax_replay"],  # the default until 2026-12-04
    "relax_no_replay": {**VARIANTS["relax_replay"], "critic_replay": 0},  # finding 6's 0.23
    "relax_phi_on_rollout": VARIANTS["relax_phi_on_rollout"],  # the default until 2026-12-06
    "relax_rollout_regression": VARIANTS["relax_rollout_regression"],  # RelaxA2C's default since 2026-12-06
    "relax_rollout_regression_two_v_steps": VARIANTS["relax_rollout_regression_two_v_steps"],
    "all_action_replay": VARIANTS["all_action_replay"],
    "all_action_centred": VARIANTS["all_action_centred"],
    "all_action_per_sub_action": VARIANTS["all_action_per_sub_action"],
    "all_action_cv_baseline_4": VARIANTS["all_action_cv_baseline_4"],  # ĉ the whole baseline (2026-12-06)
    "default": VARIANTS["default"],  # RelaxA2C's own defaults: on these bits, the design above (2026-12-07)
    "default_cv_lr_3e-3": VARIANTS["default_cv_lr_3e-3"],
    "default_cv_lr_1e-2": VARIANTS["default_cv_lr_1e-2"],
}


def flat_grad(loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(parameters, grads, strict=True)]
    )


def paired_gradients(model: RelaxA2C, n_rollouts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(design, A2C) θ gradients, one row per fresh rollout, at the frozen actor, ``V`` and φ."""
    policy, rows = model.policy, []
    theta = policy.actor_parameters()

    def measure() -> None:
        rollout, horizon = whole_rollout(model.rollout_buffer)
        actions = model.policy.estimator.kind.to_relaxation(rollout.actions)
        params, _, _, features = policy.distribution_params_values_features(rollout.observations, with_values=False)
        advantages = model._normalised(rollout.advantages)
        f = model._normalised(rollout.returns) if model.baseline == "control_variate" else advantages  # as trained
        context = policy.cv_context(features, params, horizon)
        _, g_params = policy.estimator.estimate(params, actions, f, policy.control_variate, context, create_graph=False)
        design = flat_grad(-(g_params.detach() * params).sum() / len(params), theta)
        log_prob = policy.estimator.log_prob(params, actions)
        a2c = flat_grad(-(advantages.detach() * log_prob).mean(), theta)
        rows.append(torch.stack([design, a2c]))

    model.train = measure  # collect with the frozen policy; nothing trains
    model.learn(n_rollouts * model.n_steps * model.n_envs, reset_num_timesteps=False)
    both = torch.stack(rows).double()
    return both[:, 0], both[:, 1]


def variance_ratio(design: torch.Tensor, a2c: torch.Tensor, reps: int = 2000) -> dict[str, float]:
    def ratio(index: torch.Tensor) -> float:
        return float(design[index].var(0).sum() / a2c[index].var(0).sum())

    n = len(design)
    generator = torch.Generator().manual_seed(0)
    boot = [ratio(torch.randint(n, (n,), generator=generator)) for _ in range(reps)]
    # The direction comes from the odd rollouts and the z-score from the even ones: a direction estimated
    # from the same rollouts would carry A2C's noise, with which the control variate's part correlates.
    direction = a2c[1::2].mean(0) / a2c[1::2].mean(0).norm()
    difference = (design[::2] - a2c[::2]) @ direction
    z = float(difference.mean() / (difference.std() / len(difference) ** 0.5))
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"ratio": ratio(torch.arange(n)), "low": float(low), "high": float(high), "paired_z": z}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--rollouts", type=int, default=300)
    parser.add_argument("--episode-length", type=int, default=4)
    parser.add_argument(
        "--observe-step", action="store_true", help="the observation shows the step (TargetMatchingTimed's env)"
    )
    parser.add_argument("--lr", type=float, default=5.6e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "theta_variance.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for name in args.designs:
        env = make_vec_env(
            TargetMatchingEnv,
            8,
            args.seed,
            env_kwargs={"episode_length": args.episode_length, "observe_step": args.observe_step},
        )
        model = RelaxA2C("MlpPolicy", env, learning_rate=args.lr, seed=args.seed, device="cpu", **DESIGNS[name])
        model.learn(args.steps)
        result = {"design": name, **variance_ratio(*paired_gradients(model, args.rollouts))}
        results.append(result)
        print(
            f"{name}: {result['ratio']:.3f} [{result['low']:.3f}, {result['high']:.3f}] of A2C's θ-update variance "
            f"(paired z {result['paired_z']:+.2f})",
            flush=True,
        )
    meta = study_meta("theta_variance.py", args)
    args.out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
