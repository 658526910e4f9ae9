"""Where does the policy gradient's variance come from? (Tucker et al., 2018; DESIGN.md §8)

At a fixed policy, the single-sample estimate ``ĝ`` of one time step varies because the state
``s`` varies, because the action ``a ~ π(·|s)`` varies, and because what follows the action
(the rest of the n-step return, and the relaxation noise of RELAX) varies. The law of total
variance splits ``Var(ĝ)`` into those three parts. We sample ``N`` on-policy states, ``M``
actions at each state and ``K`` continuations of each (state, action) pair from copies of the
environment, and estimate the parts with the unbiased nested (hierarchical ANOVA) estimators.
A learned control variate can only remove the action part.

    python -m relax_rl.diagnose --model runs/relax_a2c/CartPole-v1_s0/final_model.zip --samples 64 --json
"""

from __future__ import annotations

import argparse
import copy
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import Tensor

from relax_rl.agents.spaces import actions_for_relaxation, distribution_from_params, estimator_for
from relax_rl.config import RunConfig
from relax_rl.envs import is_atari


@dataclass(frozen=True)
class VarianceDecomposition:
    """Trace of the covariance of a single-sample estimate, split by the law of total variance."""

    total: float
    state: float
    """``Var_s(E[ĝ | s])``: what a better state baseline or more states could remove."""
    action: float
    """``E_s[Var_a(E[ĝ | s, a])]``: the only part an action-dependent control variate can remove."""
    residual: float
    """``E_{s,a}[Var(ĝ | s, a)]``: the return after the action, and the relaxation noise."""

    @property
    def action_fraction(self) -> float:
        return self.action / self.total if self.total > 0 else float("nan")

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "action_fraction": self.action_fraction}


def decompose_variance(samples: Tensor) -> VarianceDecomposition:
    """Unbiased nested-ANOVA estimates of the variance components of ``samples``.

    ``samples`` has shape ``(N states, M actions, K continuations, P coordinates)``; each
    coordinate's components are estimated and summed (the trace). Needs ``N, M, K >= 2``.
    """
    n, m, k, _ = samples.shape
    if min(n, m, k) < 2:
        raise ValueError(f"need at least 2 states, actions and continuations, got {n}, {m}, {k}")
    x = samples.double()
    pair_means = x.mean(2)  # x̄_ij
    state_means = pair_means.mean(1)  # x̄_i
    within_pair = x.var(2).mean((0, 1))  # E[s²_k]  → σ_c²
    within_state = pair_means.var(1).mean(0)  # E[s²_j] → σ_b² + σ_c²/K
    between_states = state_means.var(0)  # s²_i    → σ_a² + σ_b²/M + σ_c²/(MK)
    residual = within_pair
    action = within_state - residual / k
    state = between_states - within_state / m
    parts = [p.sum().item() for p in (state, action, residual)]
    return VarianceDecomposition(sum(parts), *parts)


@dataclass
class _Snapshot:
    env: gym.Env
    obs: np.ndarray


def _distribution_params(policy: ActorCriticPolicy, latent_pi: Tensor) -> Tensor:
    """One row of distribution parameters, as RelaxA2C's update sees them: logits, or ``[μ, log σ]``."""
    if hasattr(policy, "distribution_params"):
        return policy.distribution_params(latent_pi)
    out = policy.action_net(latent_pi)
    if isinstance(policy.action_dist, DiagGaussianDistribution):  # SB3's state-independent log σ
        return th.cat([out, policy.log_std.expand_as(out)], dim=-1)
    return out


def _policy_outputs(model: BaseAlgorithm, obs: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """Distribution parameters (connected to θ), value and features for one observation."""
    policy = model.policy
    obs_t, _ = policy.obs_to_tensor(obs)
    features = policy.extract_features(obs_t)
    pi_features = features if policy.share_features_extractor else features[0]
    latent_pi, latent_vf = (
        policy.mlp_extractor(features)
        if policy.share_features_extractor
        else (policy.mlp_extractor.forward_actor(features[0]), policy.mlp_extractor.forward_critic(features[1]))
    )
    return _distribution_params(policy, latent_pi), policy.value_net(latent_vf).flatten(), pi_features


def _snapshots(model: BaseAlgorithm, env: gym.Env, n_states: int, stride: int, seed: int) -> list[_Snapshot]:
    """On-policy states, ``stride`` steps apart, with a copy of the environment in each."""
    snapshots: list[_Snapshot] = []
    obs, _ = env.reset(seed=seed)
    step = 0
    while len(snapshots) < n_states:
        if step % stride == 0:
            snapshots.append(_Snapshot(copy.deepcopy(env), obs))
        action, _ = model.predict(obs, deterministic=False)
        obs, _, terminated, truncated, _ = env.step(action)
        step += 1
        if terminated or truncated:
            obs, _ = env.reset()
    return snapshots


def _n_step_return(model: BaseAlgorithm, snapshot: _Snapshot, action: np.ndarray, rng: np.random.Generator) -> float:
    """``R̂ = Σ_t γ^t r_t + γ^n V(s_n)`` from a copy of the state, as the A2C rollout computes it."""
    env = copy.deepcopy(snapshot.env)
    # A copy shares its original's random stream: continuations must draw fresh environment noise.
    env.unwrapped.np_random = np.random.default_rng(rng.integers(2**63))
    ret, discount = 0.0, 1.0
    for t in range(model.n_steps):
        obs, reward, terminated, truncated, _ = env.step(action)
        ret += discount * float(reward)
        discount *= model.gamma
        if terminated:
            return ret
        if truncated or t == model.n_steps - 1:
            with th.no_grad():
                _, value, _ = _policy_outputs(model, obs)
            return ret + discount * value.item()
        action, _ = model.predict(obs, deterministic=False)
    raise AssertionError("unreachable")


def _env_action(action: Tensor, space: gym.Space) -> np.ndarray:
    action = action.cpu().numpy()
    if isinstance(space, gym.spaces.Box):  # a Gaussian's sample is clipped for the env, as in training
        action = np.clip(action, space.low, space.high)
    return action.astype(space.dtype)


def sample_estimates(
    model: BaseAlgorithm,
    env: gym.Env,
    n_states: int = 64,
    n_actions: int = 8,
    n_continuations: int = 4,
    stride: int = 5,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Single-sample policy-gradient estimates in parameter space, shape ``(N, M, K, P)``.

    Keys: ``"none"`` (REINFORCE with the n-step return), ``"a2c"`` (baseline ``V(s)``) and, for
    models with a control variate, ``"relax"``. Needs an environment that ``copy.deepcopy`` clones.
    """
    rng = np.random.default_rng(seed)
    estimator = estimator_for(model.action_space)
    theta = [p for p in model.policy.parameters() if p.requires_grad]
    if hasattr(model.policy, "control_variate"):
        cv_ids = {id(p) for p in model.policy.control_variate.parameters()}
        theta = [p for p in theta if id(p) not in cv_ids]
    estimates: dict[str, list[Tensor]] = {}
    for snapshot in _snapshots(model, env, n_states, stride, seed):
        params, value, features = _policy_outputs(model, snapshot.obs)
        with th.no_grad():
            actions = distribution_from_params(model.policy.action_dist, params.expand(n_actions, -1)).sample()
        flat_actions = actions.repeat_interleave(n_continuations, 0)
        returns = th.tensor(
            [_n_step_return(model, snapshot, _env_action(a, model.action_space), rng) for a in flat_actions],
            device=params.device,
        )
        advantages = returns - value.detach()
        rows = params.expand(len(flat_actions), -1)
        actions_t = actions_for_relaxation(flat_actions, model.action_space)
        score = estimator.score(rows.detach(), actions_t)
        per_sample = {"none": returns[:, None] * score, "a2c": advantages[:, None] * score}
        if hasattr(model, "relax_estimate"):
            leaf = rows.detach().requires_grad_()
            _, g = model.relax_estimate(leaf, actions_t, advantages, features.detach().expand(len(rows), -1))
            per_sample["relax"] = g.detach()
        for name, g_params in per_sample.items():
            # ĝ in parameter space: (∂ params / ∂θ)ᵀ ĝ^params, one vector-Jacobian product per sample.
            grads = th.autograd.grad(
                params, theta, g_params.unsqueeze(1), retain_graph=True, is_grads_batched=True, allow_unused=True
            )
            flat = th.cat([g.flatten(1) for g in grads if g is not None], dim=1)
            estimates.setdefault(name, []).append(flat.view(n_actions, n_continuations, -1))
    return {name: th.stack(per_state) for name, per_state in estimates.items()}


def observes_raw_env(config: RunConfig) -> bool:
    """Whether the run's policy sees the env's own observations, which the decomposition resamples on
    copies of the env: not when VecNormalize, frame stacking or Atari preprocessing sit in between."""
    return not (config.normalize or config.frame_stack or is_atari(config.env))


class EnvNotCopyableError(ValueError):
    """The environment cannot be cloned with ``copy.deepcopy`` into a copy that continues like it."""


def check_copyable(env: gym.Env, seed: int = 0) -> None:
    """Raise :class:`EnvNotCopyableError` unless a deep copy of ``env`` steps exactly as ``env`` does.

    The decomposition resamples actions from copies of the environment at fixed states, so a copy
    must carry the whole state: simulators with native handles (Box2D, for one) copy without error
    but lose their bodies, and fail or diverge on the next step.
    """
    env.reset(seed=seed)
    action = env.action_space.sample()
    try:
        clone = copy.deepcopy(env)
        expected, got = env.step(action), clone.step(action)
        same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(expected[:4], got[:4], strict=True))
    except Exception as err:  # whatever a half-copied simulator raises
        raise EnvNotCopyableError(f"a deep copy of it cannot step ({type(err).__name__}: {err})") from None
    if not same:
        raise EnvNotCopyableError("a deep copy of it does not continue as the original does")


def diagnose(
    model: BaseAlgorithm, env: gym.Env, n_states: int, n_actions: int, n_continuations: int, seed: int = 0
) -> dict[str, VarianceDecomposition]:
    """The variance decomposition of each estimator the model supports, at its current policy."""
    with th.random.fork_rng(devices=[]):  # leave the caller's (e.g. training's) random stream untouched
        th.manual_seed(seed)
        samples = sample_estimates(model, env, n_states, n_actions, n_continuations, seed=seed)
    return {name: decompose_variance(s) for name, s in samples.items()}


class ActionVarianceCallback(BaseCallback):
    """Logs ``train/action_var_frac`` every ``interval`` timesteps, for the model's estimator and for A2C's.

    A small decomposition (a few states, actions and continuations, on a private copy of the
    environment) keeps the cost to a fraction of the rollouts it is spread over. It draws from
    forked random streams, so training is the same with or without it. An environment that
    cannot be copied faithfully (see :func:`check_copyable`) turns it off with a warning.
    """

    def __init__(
        self,
        env_id: str,
        interval: int = 50_000,
        n_states: int = 8,
        n_actions: int = 4,
        n_continuations: int = 2,
    ):
        super().__init__()
        self.env: gym.Env | None = gym.make(env_id)
        self.interval, self.sizes = interval, (n_states, n_actions, n_continuations)
        self._next = interval
        try:
            check_copyable(self.env)
        except EnvNotCopyableError as err:
            warnings.warn(f"train/action_var_frac is off for {env_id}: {err}", stacklevel=2)
            self.env = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.env is None or self.num_timesteps < self._next:
            return
        self._next = (self.num_timesteps // self.interval + 1) * self.interval
        results = diagnose(self.model, self.env, *self.sizes, seed=self.num_timesteps)
        own = results.get("relax", results["a2c"])
        self.logger.record("train/action_var_frac", own.action_fraction)
        self.logger.record("train/action_var_frac_a2c", results["a2c"].action_fraction)


def format_table(results: dict[str, VarianceDecomposition]) -> str:
    """A Markdown table: one row per estimator, variance parts and the action fraction."""
    lines = [
        "| estimator | total | state | action | residual | action fraction |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in results.items():
        lines.append(
            f"| {name} | {d.total:.4g} | {d.state:.4g} | {d.action:.4g} | {d.residual:.4g} | {d.action_fraction:.2f} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    from relax_rl.cli import CLIParser

    parser = CLIParser(prog="python -m relax_rl.diagnose", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a .zip saved by train.py (either algorithm)")
    parser.add_argument("--env", help="default: the env in config.yml of the model's run directory")
    parser.add_argument("--samples", type=int, default=64, help="states N (default 64)")
    parser.add_argument("--actions", type=int, default=8, help="actions M per state (default 8)")
    parser.add_argument("--continuations", type=int, default=4, help="continuations K per action (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def _diagnose(argv: Sequence[str] | None) -> int:
    from relax_rl.cli import CLIError, detect_algo, find_run_config, read_model_data
    from relax_rl.config import load_algo_class
    from relax_rl.envs import make_vec_env
    from relax_rl.safe_load import UnsafeModelError, load_model_safely

    args = _parser().parse_args(argv)
    if min(args.samples, args.actions, args.continuations) < 2:
        raise CLIError("--samples, --actions and --continuations must each be >= 2")
    algo = detect_algo(read_model_data(args.model))
    run_config = find_run_config(args.model)
    env_id = args.env or (run_config.env if run_config else None)
    if env_id is None:
        raise CLIError(f"no --env given and no config.yml next to {args.model}")
    if run_config is not None and not observes_raw_env(run_config):
        raise CLIError(
            "diagnose needs the raw environment: VecNormalize, frame stacking and Atari preprocessing are not supported"
        )
    try:  # make_vec_env validates the id, with close matches if it is unknown
        model = load_model_safely(args.model, load_algo_class(algo), make_vec_env(env_id, 1), device="cpu")
    except UnsafeModelError as err:
        raise CLIError(str(err)) from None
    env = gym.make(env_id)
    try:
        check_copyable(env)
    except EnvNotCopyableError as err:
        raise CLIError(f"{env_id} cannot be copied to resample actions at fixed states: {err}") from None
    results = diagnose(model, env, args.samples, args.actions, args.continuations, args.seed)
    if args.json:
        print(json.dumps({"algo": algo, "env": env_id, **{k: v.to_dict() for k, v in results.items()}}))
    else:
        print(
            f"{algo} on {env_id}: {args.samples} states x {args.actions} actions x {args.continuations} continuations"
        )
        print(format_table(results))
        print("Negative parts are estimates of components indistinguishable from zero at this sample size.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from relax_rl.cli import run_guarded

    return run_guarded(_diagnose, argv)


if __name__ == "__main__":
    raise SystemExit(main())
