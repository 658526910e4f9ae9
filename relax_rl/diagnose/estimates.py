"""The single-row estimates of every estimator the model supports (listed in :mod:`relax_rl.diagnose`), on the
same rows, actions and continuations."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import Tensor

from relax_rl.agents.pg_estimators import estimator_for
from relax_rl.agents.policies import params_values_features
from relax_rl.diagnose.sampling import (
    Observations,
    continue_rows,
    default_max_age,
    env_copies,
    obs_tensor,
    on_policy_states,
    sample_actions,
)
from relax_rl.diagnose.statistics import check_sizes
from relax_rl.envs.reference import AffineReward, exact_reference

#: Monte Carlo draws per state of ``E_{a~π}[ĉ(s, ·)]``, the control variate's state part.
CV_MEAN_SAMPLES = 256


def own_estimator(model: BaseAlgorithm) -> str | None:
    """The model's estimator if it has a control variate (``"relax"``, ``"all_action"``), else None."""
    estimator = getattr(model.policy, "estimator", None)
    return model.pg_estimator if getattr(estimator, "uses_control_variate", False) else None


def cv_is_the_whole_baseline(model: BaseAlgorithm) -> bool:
    """Whether the model's baseline is ``ĉ`` alone (``baseline="control_variate"``), not ``V + ĉ``."""
    return getattr(model, "baseline", "value") == "control_variate"


@dataclass(frozen=True)
class RowSamples:
    """Single-row estimates ``ĝ^params`` (the gradient for the row's distribution parameters) at ``N``
    independent rows, ``M`` actions each and ``K`` continuations of each action."""

    obs: Observations
    """The rows' states, as the policy reads them (``N`` rows)."""
    horizons: Tensor
    """``(N,)``: steps to the bootstrap, ``h = n − j``."""
    estimates: dict[str, Tensor]
    """Estimator name → ``(N, M, K, P)``."""
    ended: np.ndarray
    """``(N, M, K)``: whether the row's window held an episode end."""
    score: Tensor
    """``(N, M, P)``: ``∇_params log π(a|s)`` of each action."""
    baseline_noise: Tensor
    """``(N,)``: the variance of the ``mc_v`` baseline at each state, ``Var(R̂|s)/L``, estimated from its ``L``
    returns."""


def sample_estimates(
    model: BaseAlgorithm,
    env: gym.Env,
    n_states: int = 256,
    n_actions: int = 4,
    n_continuations: int = 4,
    max_age: int | None = None,
    seed: int = 0,
    n_baseline: int = 8,
) -> RowSamples:
    """Estimates of every estimator the model supports, on the same rows, actions and continuations.

    Draws from torch's global stream (seed it, or fork it, first) and from a numpy stream seeded with
    ``seed``. Needs an environment that ``copy.deepcopy`` clones (see :func:`check_copyable`).
    """
    check_sizes(n_states, n_actions, n_continuations)
    rng = np.random.default_rng(seed)
    policy = model.policy
    n, m, k = n_states, n_actions, n_continuations
    chains, obs = on_policy_states(model, env, n, max_age or default_max_age(env), rng)
    horizons = model.n_steps - rng.integers(model.n_steps, size=n)  # h = n − j, j ~ U{0, …, n−1}
    obs_t = obs_tensor(policy, obs)
    with th.no_grad():
        params, values, features = params_values_features(policy, obs_t)
        values = values.flatten()
        actions = sample_actions(policy, params.repeat_interleave(m, 0))  # (N·M, ...)
    per_row = m * k
    runs = continue_rows(
        model,
        env_copies(chains, per_row, rng),
        actions.repeat_interleave(k, 0),
        values.repeat_interleave(per_row),
        horizons.repeat(per_row),
    )
    advantages = th.as_tensor(runs.advantages, dtype=th.float32, device=params.device).view(n, m, k)
    returns = advantages + values.view(n, 1, 1)
    score = policy_score(model, params, actions).view(n, m, 1, -1)
    # The Monte Carlo V: L other actions at each state, each continued once, so that its returns are
    # independent of each other and of the sample (continuations of one action are not, with
    # deterministic rewards).
    with th.no_grad():
        pool_actions = sample_actions(policy, params.repeat_interleave(n_baseline, 0))
    pool = continue_rows(
        model,
        env_copies(chains, n_baseline, rng),
        pool_actions,
        values.repeat_interleave(n_baseline),
        horizons.repeat(n_baseline),
    )
    pool_returns = th.as_tensor(pool.advantages, dtype=th.float32, device=params.device).view(n, -1)
    pool_returns = pool_returns + values.view(n, 1)
    estimates = {
        "reinforce": returns.unsqueeze(-1) * score,
        "a2c": advantages.unsqueeze(-1) * score,
        "mc_v": (returns - pool_returns.mean(1).view(n, 1, 1)).unsqueeze(-1) * score,
    }
    own = own_estimator(model)
    if own is not None:
        context = policy.cv_context(features, params, th.as_tensor(horizons, device=params.device))
        rows = params.detach().repeat_interleave(per_row, 0).requires_grad_()
        flat_actions = policy.estimator.kind.to_relaxation(actions.repeat_interleave(k, 0))
        f = returns if cv_is_the_whole_baseline(model) else advantages  # what training's estimator reads
        _, g = policy.estimator.estimate(
            rows, flat_actions, f.flatten(), policy.control_variate, context.repeat_interleave(per_row, 0)
        )
        estimates[own] = g.detach().view(n, m, k, -1)
        with th.no_grad():  # E_{a~π}[ĉ(s, ·)]: the control variate's state-only part
            state_part = policy.estimator.mean_control_variate(
                params, policy.control_variate, context, n_samples=CV_MEAN_SAMPLES
            )
        estimates[f"{own}_state"] = (f - state_part.view(n, 1, 1)).unsqueeze(-1) * score
    reference = exact_reference(env)
    if reference is not None:
        horizon = th.as_tensor(horizons, device=params.device)
        estimates.update(exact_estimates(model, reference, obs_t, horizon, params, values, actions, returns, score))
    noise = pool_returns.double().var(1) / n_baseline
    return RowSamples(obs_t, th.as_tensor(horizons), estimates, runs.ended.reshape(n, m, k), score[:, :, 0], noise)


def exact_estimates(
    model: BaseAlgorithm,
    reference: AffineReward,
    obs: Tensor,
    horizon: Tensor,
    params: Tensor,
    values: Tensor,
    actions: Tensor,
    returns: Tensor,
    score: Tensor,
) -> dict[str, Tensor]:
    """The estimators with exact critics, on the same rows: ``a2c_exact_v`` and ``<own>_exact_v`` (one-step
    episodes), and ``exact_q``, each ``(N, M, K, P)``."""
    n, m, k = returns.shape
    kind = estimator_for(model.action_space).kind
    relaxation = kind.relaxation
    params = params.detach().requires_grad_()
    probs = relaxation.mean_indicator(params)
    slopes, _ = reference.coefficients(obs)
    (mean_effect,) = th.autograd.grad((slopes * probs).sum(), params)  # ∇_params E_π[w* · ind(a)]
    flat_actions = kind.to_relaxation(actions)
    indicator = relaxation.indicator(params.detach().repeat_interleave(m, 0), flat_actions)
    effects = (slopes.repeat_interleave(m, 0) * (indicator - probs.detach().repeat_interleave(m, 0))).sum(-1)
    # q = A*(s, a) + (V* − V̂)(s): on one-step episodes q = r − V̂ exactly, and [Â − q] is zero
    coefficient = returns - effects.view(n, m, 1)
    estimates = {}
    if reference.one_step:
        v_star = reference.state_values(obs, probs.detach()).view(n, 1, 1)
        estimates["a2c_exact_v"] = (returns - v_star).unsqueeze(-1) * score
        coefficient = coefficient - v_star
        own = own_estimator(model)
        if own is not None and not cv_is_the_whole_baseline(model):  # without a V, there is none to make exact
            policy = model.policy
            _, _, features = params_values_features(policy, obs, with_values=False)
            context = policy.cv_context(features, params.detach(), horizon).repeat_interleave(m * k, 0)
            rows = params.detach().repeat_interleave(m * k, 0).requires_grad_()
            advantages = (returns - v_star).flatten()
            _, g = policy.estimator.estimate(
                rows, flat_actions.repeat_interleave(k, 0), advantages, policy.control_variate, context
            )
            estimates[f"{own}_exact_v"] = g.detach().view(n, m, k, -1)
    else:
        coefficient = coefficient - values.view(n, 1, 1)
    estimates["exact_q"] = coefficient.unsqueeze(-1) * score + mean_effect.view(n, 1, 1, -1)
    return estimates


def policy_score(model: BaseAlgorithm, params: Tensor, actions: Tensor) -> Tensor:
    """``∇_params log π(a|s)`` for ``M`` actions per row of ``params``: shape ``(N·M, P)``."""
    m = len(actions) // len(params)
    estimator = estimator_for(model.action_space)
    return estimator.score(params.detach().repeat_interleave(m, 0), estimator.kind.to_relaxation(actions))
