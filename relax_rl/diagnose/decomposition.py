"""Where does the policy gradient's variance come from? (Tucker et al., 2018; DESIGN.md §4b, §8)

At a fixed policy, the single-row estimate ``ĝ`` of one rollout row varies because the row's state
``s`` varies, because the action ``a ~ π(·|s)`` varies, and because what follows the action (the
rest of the return, and the relaxation noise of RELAX) varies. The law of total variance splits
``Var(ĝ)`` into those three parts. A learned control variate can only remove the action part.

What is measured is what training uses. Each sampled row is an independent rollout row: its own
copy of the environment, reset with its own seed and run on-policy to a state drawn from the state
distribution of a training env that has run for a while (see :func:`on_policy_states`; no two rows
share a trajectory). Its position ``j ~ U{0, …, n−1}`` in an ``n``-step window gives it ``h = n − j``
steps to the bootstrap, and its advantage is training's: GAE(λ) over those ``h`` steps,
bootstrapped with ``V`` at the window end, cut at a termination, and a truncation bootstrapped with
``V(terminal observation)`` as SB3 does. At each of ``N`` rows, ``M`` actions and ``K`` continuations
of each give the nested (hierarchical ANOVA) estimates of the parts, and a jackknife over the
independent rows gives every number a standard error.

The estimators, on the same rows, actions and continuations:

- ``reinforce``: REINFORCE, no baseline, with the λ-return ``R̂ = Â + V̂(s)``;
- ``a2c``: baseline ``V̂(s)``. Its "action" part holds ``(V(s) − V̂(s)) ∇log π``, which a better
  *state* baseline would remove (DESIGN.md §4b);
- ``mc_v``: baseline a Monte Carlo estimate of the true ``V(s)``: the mean return of ``L`` *other* actions
  drawn at the same state, each continued once (independent of the sample, so unbiased). Its sampling
  noise, ``Var(R̂|s)/L`` times the score's norm, would sit in its action part; it is estimated from the
  same ``L`` returns and taken out, so ``mc_v`` estimates A2C with the exact ``V``, and ``mc_v / a2c`` is
  what a better ``V`` removes. (Returns are counted as samples only when independent: with deterministic
  rewards, one action's continuations are copies, which a baseline from those would not see.)
- the model's own estimator if it has a control variate (``relax``, or ``all_action``), and its own
  state part (``relax_state``, ``all_action_state``): A2C's estimator with baseline
  ``V̂(s) + E_{a~π}[ĉ(s, ·)]``. ``relax / relax_state`` is what the action dependence removes.
- on an environment with an exact reference (:mod:`relax_rl.envs.reference`, target matching): A2C with the
  exact ``V*`` (``a2c_exact_v``, one-step episodes), the model's estimator with ``V*`` in place of ``V̂``
  (``<own>_exact_v``), and the all-action estimator with the exact action value (``exact_q``: ``q = r − V̂`` on
  one-step episodes, whose estimate is then exact given the state; the exact action effect otherwise). They
  are the ceiling every learned critic is measured against.

    relax-rl diagnose --model runs/relax_a2c/CartPole-v1_s0/final_model.zip --samples 256 --json
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

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
from relax_rl.envs.reference import AffineReward, exact_reference
from relax_rl.errors import first_line

#: Largest age (steps since a reset) of a sampled state when the env has no episode limit.
DEFAULT_MAX_AGE = 200
#: Monte Carlo draws per state of ``E_{a~π}[ĉ(s, ·)]``, the control variate's state part.
CV_MEAN_SAMPLES = 256

Observations = Tensor | dict[str, Tensor]

# --------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Estimate:
    """A number and its standard error."""

    value: float
    se: float

    def __format__(self, spec: str) -> str:
        return f"{self.value:{spec or '.4g'}} ± {self.se:.2g}"

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "se": self.se}


def _jackknife(values: Tensor) -> Estimate:
    """``values[0]`` from all ``N`` states, ``values[1:]`` leaving each out: the estimate and its jackknife SE."""
    loo = values[1:]
    n = len(loo)
    se = math.sqrt((n - 1) / n * (loo - loo.mean()).pow(2).sum().item())
    return Estimate(values[0].item(), se)


@dataclass(frozen=True)
class StateStatistics:
    """Per-state sums of squares of the nested ANOVA, from which the parts and their jackknife follow."""

    within_pair: Tensor
    """``(N,)``: ``Σ_coords mean_m s²_k``, the spread over continuations given ``(s, a)``."""
    within_state: Tensor
    """``(N,)``: ``Σ_coords s²_m`` of the ``(s, a)`` means, the spread over actions given ``s``."""
    means: Tensor
    """``(N, D)``: the state means, less a common reference point (which leaves their spread alone)."""
    mean_norms: Tensor
    """``(N,)``: ``‖x̄_i‖²``, the squared norms of the state means themselves."""
    n_actions: int
    n_continuations: int
    action_noise: Tensor | None = None
    """``(N,)``: an unbiased estimate, per state, of variance that the samples' construction adds to their
    action part and that is to be taken out (the Monte Carlo baseline's own noise); None for none."""

    def mean_squared_norms(self) -> Tensor:
        """``(N,)``: ``mean_m ‖x̄_m‖²`` at each state."""
        return self.mean_norms + (self.n_actions - 1) / self.n_actions * self.within_state

    def spread(self) -> Tensor:
        """``(N,)``: each state's mean of ``‖x − x̿‖²`` over its samples, which sum to the total spread."""
        m, k = self.n_actions, self.n_continuations
        centred = self.means.double() - self.means.double().mean(0)
        return centred.pow(2).sum(1) + (m - 1) / m * self.within_state + (k - 1) / k * self.within_pair

    def parts(self) -> dict[str, Tensor]:
        """Each part as ``(N + 1,)``: the estimate from all states, then each leave-one-state-out one."""
        n, m, k = len(self.within_pair), self.n_actions, self.n_continuations

        def with_loo(v: Tensor) -> Tensor:
            return th.cat([v.mean().view(1), (v.sum() - v) / (n - 1)])

        centred = self.means.double() - self.means.double().mean(0)
        sq = centred.pow(2).sum(1)  # ‖x̄_i − x̿‖²; leaving i out moves the centre by −(x̄_i − x̿)/(N−1)
        between = th.cat([(sq.sum() / (n - 1)).view(1), (sq.sum() - sq * n / (n - 1)) / (n - 2)])
        residual = with_loo(self.within_pair)  # → σ_c²
        within_state = with_loo(self.within_state)  # → σ_b² + σ_c²/K
        action = within_state - residual / k  # between → σ_a² + (σ_b² + σ_c²/K)/M
        state = between - within_state / m
        if self.action_noise is not None:
            action = action - with_loo(self.action_noise)
        return {"total": state + action + residual, "state": state, "action": action, "residual": residual}


def _squared_norms(d: Tensor, metric: Tensor | None) -> Tensor:
    """``‖d‖²`` over the last axis, or ``dᵀ G d`` with one metric ``G`` per leading (state) index."""
    if metric is None:
        return d.pow(2).sum(-1)
    metric = metric.view(len(metric), *[1] * (d.dim() - 3), *metric.shape[1:])
    return ((d @ metric) * d).sum(-1)


def _statistics(x: Tensor, metric: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``within_pair``, ``within_state`` and the state means of samples ``(N, ..., M, K, P)``.

    With ``metric`` ``(N, P, P)`` the squared norms are ``dᵀ G_i d``: the norms of ``J_iᵀ d`` when
    ``G_i = J_i J_iᵀ``, computed without forming ``J_iᵀ d``.
    """
    x = x.double()
    m, k = x.shape[-3:-1]
    pair_means = x.mean(-2)
    within_pair = _squared_norms(x - pair_means.unsqueeze(-2), metric).sum(-1).mean(-1) / (k - 1)
    state_means = pair_means.mean(-2)
    within_state = _squared_norms(pair_means - state_means.unsqueeze(-2), metric).sum(-1) / (m - 1)
    return within_pair, within_state, state_means


def _check_sizes(n: int, m: int, k: int) -> None:
    if n < 3 or m < 2 or k < 2:
        raise ValueError(f"need at least 3 states, 2 actions and 2 continuations, got {n}, {m}, {k}")


@dataclass(frozen=True)
class VarianceDecomposition:
    """Trace of the covariance of a single-row estimate, split by the law of total variance (± jackknife SE)."""

    total: Estimate
    state: Estimate
    """``Var_s(E[ĝ | s])``: the same for every unbiased estimator; more states remove it."""
    action: Estimate
    """``E_s[Var_a(E[ĝ | s, a])]``: what an action-dependent control variate, or a better state baseline
    where ``V̂`` is off, can remove."""
    residual: Estimate
    """``E_{s,a}[Var(ĝ | s, a)]``: the return after the action, and the relaxation noise."""
    action_fraction: Estimate

    @classmethod
    def from_parts(cls, parts: dict[str, Tensor]) -> VarianceDecomposition:
        total = parts["total"]
        fraction = th.where(total > 0, parts["action"] / total, th.nan)
        return cls(**{name: _jackknife(v) for name, v in parts.items()}, action_fraction=_jackknife(fraction))

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {name: getattr(self, name).to_dict() for name in self.__dataclass_fields__}


def decompose_variance(samples: Tensor) -> VarianceDecomposition:
    """Unbiased nested-ANOVA estimates of the variance parts of ``samples``, with jackknife SEs over states.

    ``samples`` has shape ``(N states, M actions, K continuations, P coordinates)``; each
    coordinate's parts are estimated and summed (the trace). Needs ``N >= 3`` and ``M, K >= 2``.
    """
    _check_sizes(*samples.shape[:3])
    within_pair, within_state, means = _statistics(samples)
    stats = StateStatistics(within_pair, within_state, means, means.pow(2).sum(-1), *samples.shape[1:3])
    return VarianceDecomposition.from_parts(stats.parts())


# ------------------------------------------------------------------------------------ the policy


def _forward(policy: ActorCriticPolicy, obs: Observations) -> tuple[Tensor, Tensor, Tensor]:
    """Distribution parameters (connected to θ; logits, or ``[μ, log σ]``), values and the features
    the control variate reads, one row per observation."""
    if hasattr(policy, "distribution_params_values_features"):
        params, values, _, features = policy.distribution_params_values_features(obs)
        return params, values, features
    features = policy.extract_features(obs)
    if policy.share_features_extractor:
        pi_features, (latent_pi, latent_vf) = features, policy.mlp_extractor(features)
    else:
        pi_features = features[0]
        latent_pi = policy.mlp_extractor.forward_actor(features[0])
        latent_vf = policy.mlp_extractor.forward_critic(features[1])
    params = policy.action_net(latent_pi)
    if isinstance(policy.action_dist, DiagGaussianDistribution):  # SB3's state-independent log σ
        params = th.cat([params, policy.log_std.expand_as(params)], dim=-1)
    return params, policy.value_net(latent_vf).flatten(), pi_features


def _obs_tensor(policy: ActorCriticPolicy, obs: Sequence[Any]) -> Observations:
    if isinstance(obs[0], dict):
        return policy.obs_to_tensor({key: np.stack([o[key] for o in obs]) for key in obs[0]})[0]
    return policy.obs_to_tensor(np.stack(obs))[0]


def _take(obs: Observations, index: Tensor | slice) -> Observations:
    return {key: value[index] for key, value in obs.items()} if isinstance(obs, dict) else obs[index]


def _sample(policy: ActorCriticPolicy, params: Tensor) -> Tensor:
    return distribution_from_params(policy.action_dist, params).sample()


def _env_actions(actions: Tensor, space: gym.Space) -> list[Any]:
    """One env action per row, converted once for the batch (plain ints for ``Discrete``)."""
    if isinstance(space, gym.spaces.Discrete):
        return actions.flatten().tolist()
    rows = actions.cpu().numpy()
    if isinstance(space, gym.spaces.Box):  # a Gaussian's sample is clipped for the env, as in training
        rows = np.clip(rows, space.low, space.high)
    return list(rows.astype(space.dtype))


def _theta(policy: ActorCriticPolicy) -> list[Tensor]:
    """``θ`` and ``ψ``: every trainable parameter but the control variate's (``ψ`` gets no gradient)."""
    cv_ids = {id(p) for p in policy.control_variate.parameters()} if hasattr(policy, "control_variate") else set()
    return [p for p in policy.parameters() if p.requires_grad and id(p) not in cv_ids]


# ----------------------------------------------------------------------- states and their returns


def default_max_age(env: gym.Env) -> int:
    """The env's episode limit, or :data:`DEFAULT_MAX_AGE` without one."""
    limit = env.spec.max_episode_steps if env.spec is not None else None
    return limit or DEFAULT_MAX_AGE


def _reseed(env: gym.Env, rng: np.random.Generator) -> None:
    # A copy shares its original's random stream: each must draw its own environment noise.
    env.unwrapped.np_random = np.random.default_rng(rng.integers(2**63))


def on_policy_states(
    model: BaseAlgorithm, env: gym.Env, n_states: int, max_age: int, rng: np.random.Generator
) -> tuple[list[gym.Env], list[Any]]:
    """``n_states`` independent on-policy states, each on its own copy of ``env``, with its observation.

    A training env that has run for a while shows the state at age ``u`` (steps since its last reset)
    of an episode that lived past ``u``, with ``P(u) ∝ P(L > u)`` for episode length ``L``: the
    stationary law of a renewal process. Each copy is reset with its own seed and run on-policy;
    at every reset it draws ``u ~ U{0, …, max_age − 1}`` and the first episode that lives past ``u``
    gives the state at age ``u`` (rejection sampling: accepting with probability ``P(L > u)``
    yields exactly that law when no episode outlives ``max_age``). Cost: at most ``max_age`` steps
    per state on average.
    """
    envs = [copy.deepcopy(env) for _ in range(n_states)]
    obs = [e.reset(seed=int(s))[0] for e, s in zip(envs, rng.integers(2**31, size=n_states), strict=True)]
    target, age = rng.integers(max_age, size=n_states), np.zeros(n_states, dtype=np.int64)
    while (active := np.flatnonzero(age < target)).size:
        with th.no_grad():
            actions = model.policy.get_distribution(_obs_tensor(model.policy, [obs[i] for i in active])).sample()
        for i, action in zip(active, _env_actions(actions, model.action_space), strict=True):
            obs[i], _, terminated, truncated, _ = envs[i].step(action)
            age[i] += 1
            if terminated or truncated:  # the episode ended before age u: try the next one
                obs[i], _ = envs[i].reset()
                age[i], target[i] = 0, rng.integers(max_age)
    return envs, obs


@dataclass(frozen=True)
class Continuations:
    """What training's rollout gives each row: its advantage, and whether its window held an episode end."""

    advantages: np.ndarray
    ended: np.ndarray


def continue_rows(
    model: BaseAlgorithm, envs: list[gym.Env], first_actions: Tensor, values: Tensor, horizons: np.ndarray
) -> Continuations:
    """Run each env (in place) from its row with its first action, on-policy, for up to ``h`` steps.

    The advantage is what SB3's rollout and ``RolloutBuffer.compute_returns_and_advantage`` give a
    row with ``h`` steps to the bootstrap: ``Σ_k (γλ)^k δ_k`` with ``δ_k = r_k + γ V̂(s_{k+1}) − V̂(s_k)``,
    cut (no ``V̂(s_{k+1})``) at a termination, with ``γ V̂(terminal observation)`` added to the reward
    of a truncation (which also cuts), and bootstrapped with ``V̂(s_h)`` at the window end.
    ``values`` are ``V̂`` at the rows' states.
    """
    policy, gamma, decay = model.policy, model.gamma, model.gamma * model.gae_lambda
    advantages, weight = np.zeros(len(envs)), np.ones(len(envs))
    ended = np.zeros(len(envs), dtype=bool)
    value = values.detach().cpu().double().numpy().copy()  # V̂(s_k) of each live row
    alive, actions = np.arange(len(envs)), first_actions
    for k in range(int(horizons.max())):
        if not len(alive):
            break
        env_actions = _env_actions(actions, model.action_space)
        steps = [envs[i].step(a) for i, a in zip(alive, env_actions, strict=True)]
        with th.no_grad():
            params, next_values, _ = _forward(policy, _obs_tensor(policy, [s[0] for s in steps]))
        next_value = next_values.double().cpu().numpy()
        reward = np.array([float(s[1]) for s in steps])
        terminated = np.array([s[2] for s in steps], dtype=bool)
        truncated = np.array([s[3] for s in steps], dtype=bool) & ~terminated  # as SB3's DummyVecEnv reports it
        reward[truncated] += gamma * next_value[truncated]  # SB3 bootstraps a timeout in its reward
        done = terminated | truncated
        delta = reward + gamma * np.where(done, 0.0, next_value) - value[alive]
        advantages[alive] += weight[alive] * delta
        weight[alive] *= decay
        ended[alive[done]] = True
        going = ~done & (k + 1 < horizons[alive])
        alive = alive[going]
        value[alive] = next_value[going]
        if len(alive):
            actions = _sample(policy, params[th.as_tensor(going, device=params.device)])
    return Continuations(advantages, ended)


# ---------------------------------------------------------------------------------- the estimators


def own_estimator(model: BaseAlgorithm) -> str | None:
    """The model's estimator if it has a control variate (``"relax"``, ``"all_action"``), else None."""
    estimator = getattr(model.policy, "estimator", None)
    return model.pg_estimator if getattr(estimator, "uses_control_variate", False) else None


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
    _check_sizes(n_states, n_actions, n_continuations)
    rng = np.random.default_rng(seed)
    policy, space = model.policy, model.action_space
    n, m, k = n_states, n_actions, n_continuations
    chains, obs = on_policy_states(model, env, n, max_age or default_max_age(env), rng)
    horizons = model.n_steps - rng.integers(model.n_steps, size=n)  # h = n − j, j ~ U{0, …, n−1}
    obs_t = _obs_tensor(policy, obs)
    with th.no_grad():
        params, values, features = _forward(policy, obs_t)
        actions = _sample(policy, params.repeat_interleave(m, 0))  # (N·M, ...)
    per_row = m * k
    runs = continue_rows(
        model,
        _copies(chains, per_row, rng),
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
        pool_actions = _sample(policy, params.repeat_interleave(n_baseline, 0))
    pool = continue_rows(
        model,
        _copies(chains, n_baseline, rng),
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
        flat_actions = actions_for_relaxation(actions.repeat_interleave(k, 0), space)
        _, g = model.estimate(rows, flat_actions, advantages.flatten(), context.repeat_interleave(per_row, 0))
        estimates[own] = g.detach().view(n, m, k, -1)
        with th.no_grad():  # E_{a~π}[ĉ(s, ·)]: the control variate's state-only part
            state_part = policy.estimator.mean_control_variate(
                params, policy.control_variate, context, n_samples=CV_MEAN_SAMPLES
            )
        estimates[f"{own}_state"] = (advantages - state_part.view(n, 1, 1)).unsqueeze(-1) * score
    reference = exact_reference(env)
    if reference is not None:
        horizon = th.as_tensor(horizons, device=params.device)
        estimates.update(exact_estimates(model, reference, obs_t, horizon, params, values, actions, returns, score))
    noise = pool_returns.double().var(1) / n_baseline
    return RowSamples(obs_t, th.as_tensor(horizons), estimates, runs.ended.reshape(n, m, k), score[:, :, 0], noise)


def _copies(chains: list[gym.Env], per_chain: int, rng: np.random.Generator) -> list[gym.Env]:
    """``per_chain`` copies of each env, in order, each with a random stream of its own."""
    copies = []
    for chain in chains:
        for _ in range(per_chain):
            copies.append(copy.deepcopy(chain))
            _reseed(copies[-1], rng)
    return copies


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
    relaxation = estimator_for(model.action_space).relaxation
    params = params.detach().requires_grad_()
    probs = relaxation.mean_indicator(params)
    slopes, _ = reference.coefficients(obs)
    (mean_effect,) = th.autograd.grad((slopes * probs).sum(), params)  # ∇_params E_π[w* · ind(a)]
    flat_actions = actions_for_relaxation(actions, model.action_space)
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
        if own is not None:
            policy = model.policy
            _, _, features = _forward(policy, obs)
            context = policy.cv_context(features, params.detach(), horizon).repeat_interleave(m * k, 0)
            rows = params.detach().repeat_interleave(m * k, 0).requires_grad_()
            advantages = (returns - v_star).flatten()
            _, g = model.estimate(rows, flat_actions.repeat_interleave(k, 0), advantages, context)
            estimates[f"{own}_exact_v"] = g.detach().view(n, m, k, -1)
    else:
        coefficient = coefficient - values.view(n, 1, 1)
    estimates["exact_q"] = coefficient.unsqueeze(-1) * score + mean_effect.view(n, 1, 1, -1)
    return estimates


def policy_score(model: BaseAlgorithm, params: Tensor, actions: Tensor) -> Tensor:
    """``∇_params log π(a|s)`` for ``M`` actions per row of ``params``: shape ``(N·M, P)``."""
    m = len(actions) // len(params)
    relaxed = actions_for_relaxation(actions, model.action_space)
    return estimator_for(model.action_space).score(params.detach().repeat_interleave(m, 0), relaxed)


# ------------------------------------------------------------------------------ parameter space

SCORE = "_score"


def _row_vjp(params: Tensor, theta: list[Tensor], vectors: Tensor) -> Tensor:
    """``(∂params_c / ∂θ)ᵀ v`` for each row ``c`` of ``params`` and each of its vectors ``v``: ``vectors``
    ``(C, B, P)`` → ``(C, B, D)``, by one batched backward pass (block-diagonal output gradients)."""
    c, b, p = vectors.shape
    outputs = vectors.new_zeros(c, b, c, p)
    rows = th.arange(c)
    outputs[rows, :, rows] = vectors
    grads = th.autograd.grad(
        params, theta, outputs.view(c * b, c, p), retain_graph=True, is_grads_batched=True, allow_unused=True
    )
    return th.cat([g.reshape(c * b, -1) for g in grads if g is not None], dim=1).view(c, b, -1)


def parameter_space_statistics(model: BaseAlgorithm, rows: RowSamples) -> dict[str, StateStatistics]:
    """The nested-ANOVA statistics of ``ĝ_θ = (∂params/∂θ)ᵀ ĝ^params``, the update's estimate, per estimator.

    Works through the states in chunks, holding ``ĝ_θ`` for one chunk at a time; what it keeps is one
    mean vector per state and estimator (``N · E · D`` floats).
    """
    # The score rides along as one more "estimator" (the same for every continuation): the Monte Carlo
    # baseline's noise is its variance times the score's squared norm in parameter space.
    estimates = {**rows.estimates, SCORE: rows.score.unsqueeze(2).expand_as(rows.estimates["a2c"])}
    names = list(estimates)
    g = th.stack([estimates[name] for name in names], dim=1)  # (N, E, M, K, P)
    n, e, m, k, p = g.shape
    theta = _theta(model.policy)
    size = sum(t.numel() for t in theta)
    # With fewer distribution parameters than samples per state, build J = ∂params/∂θ once per state
    # and work in params space with the metric J Jᵀ; otherwise push each sample through J directly.
    use_jacobian = p < e * m * k
    vectors = p if use_jacobian else e * m * k  # backward products per state
    chunk = max(1, min(n, 2**22 // (vectors * size), 2**12 // vectors))
    within_pair, within_state, means, mean_norms = [], [], [], []
    reference = None
    for start in range(0, n, chunk):
        index = slice(start, min(start + chunk, n))
        params, _, _ = _forward(model.policy, _take(rows.obs, index))
        c = len(params)
        if use_jacobian:
            eye = th.eye(p, dtype=params.dtype, device=params.device).expand(c, p, p).contiguous()
            jacobian = _row_vjp(params, theta, eye).double()  # (C, P, D)
            wp, ws, mu = _statistics(g[index], jacobian @ jacobian.transpose(1, 2))
            mu = mu @ jacobian
        else:
            x = _row_vjp(params, theta, g[index].flatten(1, 3).to(params.dtype).contiguous())
            wp, ws, mu = _statistics(x.view(c, e, m, k, -1))
        # Held relative to the first state's mean, in float32: a large common mean would otherwise eat
        # the precision of their spread.
        reference = mu[0] if reference is None else reference
        within_pair.append(wp)
        within_state.append(ws)
        means.append((mu - reference).float())
        mean_norms.append(mu.pow(2).sum(-1))
    wp, ws, mu, norms = (th.cat(parts) for parts in (within_pair, within_state, means, mean_norms))
    stats = {name: StateStatistics(wp[:, i], ws[:, i], mu[:, i], norms[:, i], m, k) for i, name in enumerate(names)}
    # The baseline b̂ is shared by a state's actions but independent of them: (V − b̂) ∇log π adds
    # Var(b̂|s) E‖J ∇log π‖² to the action part and nothing else (E[∇log π] = 0), which is taken out.
    noise = rows.baseline_noise.to(wp.dtype) * stats.pop(SCORE).mean_squared_norms()
    stats["mc_v"] = dataclasses.replace(stats["mc_v"], action_noise=noise)
    return stats


# -------------------------------------------------------------------------------------- diagnose


def ratio_pairs(own: str | None, names: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """``(numerator, denominator, what their variance ratio says)`` for a model whose control-variate
    estimator is ``own`` (None: it has none), among the estimators ``names`` that were sampled."""
    pairs = [("mc_v", "a2c", "what a better state baseline leaves of A2C's")]
    if own is not None:
        pairs += [
            (own, f"{own}_state", "what the action dependence leaves of the control variate's state part"),
            (f"{own}_state", "a2c", "what the control variate's state part leaves of A2C's"),
            (own, "a2c", "the model's estimator against A2C's"),
        ]
    if "a2c_exact_v" in names:
        pairs += [
            ("a2c_exact_v", "a2c", "what the exact V leaves of A2C's"),
            ("mc_v", "a2c_exact_v", "the Monte Carlo V against the exact one (1 if it is right)"),
        ]
        if own is not None:
            pairs += [
                (own, "a2c_exact_v", "the model's estimator against A2C with the exact V"),
                (f"{own}_exact_v", own, "what the exact V leaves of the model's estimator"),
            ]
    if "exact_q" in names:
        pairs.append(("exact_q", "a2c", "what the exact action value leaves of A2C's"))
    return pairs


@dataclass(frozen=True)
class Diagnosis:
    """The variance decomposition of each estimator, and paired ratios of their variances."""

    estimators: dict[str, VarianceDecomposition]
    ratios: dict[str, dict[str, Estimate]]
    """``"x/y"`` → ``{"total": Var(x)/Var(y), "action": their action parts' ratio}``, from the same samples."""
    own: str | None
    """The model's control-variate estimator, if it has one."""
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "estimators": {name: d.to_dict() for name, d in self.estimators.items()},
            "ratios": {name: {part: r.to_dict() for part, r in parts.items()} for name, parts in self.ratios.items()},
        }


def random_state_kept(model: BaseAlgorithm) -> AbstractContextManager:
    """Forks torch's random state (and that of the model's CUDA device): draws made inside leave the caller's
    random stream, such as training's, as it was."""
    return th.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else [])


def diagnose(
    model: BaseAlgorithm,
    env: gym.Env,
    n_states: int = 256,
    n_actions: int = 4,
    n_continuations: int = 4,
    seed: int = 0,
    max_age: int | None = None,
    n_baseline: int = 8,
) -> Diagnosis:
    """The variance decomposition of each estimator the model supports, at its current policy, with a Monte
    Carlo state value from ``n_baseline`` independent returns per state."""
    with random_state_kept(model):
        th.manual_seed(seed)
        rows = sample_estimates(model, env, n_states, n_actions, n_continuations, max_age, seed, n_baseline)
    statistics = parameter_space_statistics(model, rows)
    parts = {name: stats.parts() for name, stats in statistics.items()}
    own = own_estimator(model)
    ratios = {  # on the same states, so each leave-one-state-out ratio pairs like with like
        f"{numerator}/{denominator}": {
            part: _jackknife(parts[numerator][part] / parts[denominator][part]) for part in ("total", "action")
        }
        for numerator, denominator, _ in ratio_pairs(own, list(parts))
    }
    settings = {
        "n_states": n_states,
        "n_actions": n_actions,
        "n_continuations": n_continuations,
        "n_baseline": n_baseline,
        "max_age": max_age or default_max_age(env),
        "seed": seed,
        "n_steps": model.n_steps,
        "gamma": model.gamma,
        "gae_lambda": model.gae_lambda,
        "pg_estimator": own or "a2c",
        "episode_end_fraction": float(rows.ended.mean()),
        # The rare rows: how much of A2C's variance the states where some window ended carry.
        "episode_end_share_of_a2c": _share(statistics["a2c"].spread(), rows.ended.any((1, 2))),
    }
    estimators = {name: VarianceDecomposition.from_parts(p) for name, p in parts.items()}
    return Diagnosis(estimators, ratios, own, settings)


def _share(spread: Tensor, selected: np.ndarray) -> float:
    total = spread.sum().item()
    return spread[th.as_tensor(selected)].sum().item() / total if total > 0 else float("nan")


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
        detail = type(err).__name__ + (f": {first_line(err)}" if str(err).strip() else "")
        raise EnvNotCopyableError(f"a deep copy of it cannot step ({detail})") from None
    if not same:
        raise EnvNotCopyableError("a deep copy of it does not continue as the original does")


class ActionVarianceCallback(BaseCallback):
    """Logs the variance decomposition every ``interval`` timesteps, for the model's estimator and A2C's.

    Keys: ``train/action_var_frac`` (the model's own estimator; A2C's for a model without a control
    variate) and ``train/action_var_frac_a2c``, each with ``..._se``; ``train/var_ratio_loo_a2c``
    (what a better state baseline leaves of A2C's variance) and, with a control variate,
    ``train/var_ratio_own_state`` (what its action dependence leaves of its state part's) and
    ``train/var_ratio_own_a2c``.

    Each call draws ``n_states`` independent rollout rows (see :func:`diagnose`) on private copies
    of the environment. Rare rows are weighted by their probability, nothing more: where ~1% of rows
    hold an episode end in their window and carry most of the variance (CartPole), 64 states miss
    them all about half the time, so single calls scatter (and their SEs understate it then); the
    estimates are consistent, and averaging over calls is what sees the rare rows. Everything is drawn
    from forked or private random streams, so training is the same with or without it. An
    environment that cannot be copied faithfully (see :func:`check_copyable`) turns it off with a
    warning.

    Cost: about 1–1.5 s a call on CartPole-v1 at the defaults (measured on two shared CPU cores), most
    of it drawing the states (on average at most the episode limit in env steps per state): some 5% of
    RelaxA2C's training time at the default interval of 50k timesteps, and more of SB3's faster A2C's.
    """

    def __init__(
        self,
        env_id: str,
        interval: int = 50_000,
        n_states: int = 64,
        n_actions: int = 4,
        n_continuations: int = 2,
        max_age: int | None = None,
    ):
        super().__init__()
        _check_sizes(n_states, n_actions, n_continuations)
        self.env: gym.Env | None = gym.make(env_id)
        self.interval, self.sizes, self.max_age = interval, (n_states, n_actions, n_continuations), max_age
        self._next = interval
        try:
            check_copyable(self.env)
        except EnvNotCopyableError as err:
            warnings.warn(
                f"train/action_var_frac is off for {env_id}: the decomposition resamples actions on copies of "
                f"the env, and {err}; --diagnose-freq 0 (diagnose_freq: 0) turns it off without this warning",
                stacklevel=2,
            )
            self.env = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.env is None or self.num_timesteps < self._next:
            return
        self._next = (self.num_timesteps // self.interval + 1) * self.interval
        result = diagnose(self.model, self.env, *self.sizes, seed=self.num_timesteps, max_age=self.max_age)
        own, a2c = result.estimators[result.own or "a2c"], result.estimators["a2c"]
        self.logger.record("train/action_var_frac", own.action_fraction.value)
        self.logger.record("train/action_var_frac_se", own.action_fraction.se)
        self.logger.record("train/action_var_frac_a2c", a2c.action_fraction.value)
        self.logger.record("train/action_var_frac_a2c_se", a2c.action_fraction.se)
        self.logger.record("train/var_ratio_mc_v_a2c", result.ratios["mc_v/a2c"]["total"].value)
        if result.own is not None:
            own_state = result.ratios[f"{result.own}/{result.own}_state"]["total"]
            self.logger.record("train/var_ratio_own_state", own_state.value)
            self.logger.record("train/var_ratio_own_a2c", result.ratios[f"{result.own}/a2c"]["total"].value)


def format_table(result: Diagnosis) -> str:
    """Markdown tables: the parts of each estimator's variance, then the paired ratios, all ± SE."""
    lines = [
        "| estimator | total | state | action | residual | action fraction |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in result.estimators.items():
        lines.append(f"| {name} | {d.total} | {d.state} | {d.action} | {d.residual} | {d.action_fraction:.2f} |")
    lines += ["", "| variance ratio | total | action part | reads |", "|---|---|---|---|"]
    for numerator, denominator, meaning in ratio_pairs(result.own, list(result.estimators)):
        parts = result.ratios[f"{numerator}/{denominator}"]
        lines.append(f"| {numerator}/{denominator} | {parts['total']:.3f} | {parts['action']:.3f} | {meaning} |")
    return "\n".join(lines)
