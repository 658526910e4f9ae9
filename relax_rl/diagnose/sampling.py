"""The rows the decomposition samples: independent on-policy states, each on a private copy of the env, and
their continuations with training's advantages."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import Tensor

from relax_rl.agents.action_spaces import ActionSpaceKind, action_space_kind
from relax_rl.agents.distributions import distribution_from_params
from relax_rl.agents.policies import params_values_features
from relax_rl.errors import first_line

#: Largest age (steps since a reset) of a sampled state when the env has no episode limit.
DEFAULT_MAX_AGE = 200

Observations = Tensor | dict[str, Tensor]


def default_max_age(env: gym.Env) -> int:
    """The env's episode limit, or :data:`DEFAULT_MAX_AGE` without one."""
    limit = env.spec.max_episode_steps if env.spec is not None else None
    return limit or DEFAULT_MAX_AGE


def obs_tensor(policy: ActorCriticPolicy, obs: Sequence[Any]) -> Observations:
    """The policy's batch of a list of env observations."""
    if isinstance(obs[0], dict):
        return policy.obs_to_tensor({key: np.stack([o[key] for o in obs]) for key in obs[0]})[0]
    return policy.obs_to_tensor(np.stack(obs))[0]


def sample_actions(policy: ActorCriticPolicy, params: Tensor) -> Tensor:
    """One action per row of distribution parameters, from SB3's distribution."""
    return distribution_from_params(policy.action_dist, params).sample()


def _env_actions(actions: Tensor, kind: ActionSpaceKind) -> list[Any]:
    """One env action per row, as training executes it (a Gaussian's sample clipped), converted once for the
    batch."""
    return list(kind.to_env(actions).cpu().numpy().astype(kind.space.dtype))


def _reseed(env: gym.Env, rng: np.random.Generator) -> None:
    # A copy shares its original's random stream: each must draw its own environment noise.
    env.unwrapped.np_random = np.random.default_rng(rng.integers(2**63))


def env_copies(envs: list[gym.Env], per_env: int, rng: np.random.Generator) -> list[gym.Env]:
    """``per_env`` copies of each env, in order, each with a random stream of its own."""
    copies = []
    for env in envs:
        for _ in range(per_env):
            copies.append(copy.deepcopy(env))
            _reseed(copies[-1], rng)
    return copies


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
    kind = action_space_kind(model.action_space)
    envs = [copy.deepcopy(env) for _ in range(n_states)]
    obs = [e.reset(seed=int(s))[0] for e, s in zip(envs, rng.integers(2**31, size=n_states), strict=True)]
    target, age = rng.integers(max_age, size=n_states), np.zeros(n_states, dtype=np.int64)
    while (active := np.flatnonzero(age < target)).size:
        with th.no_grad():
            actions = model.policy.get_distribution(obs_tensor(model.policy, [obs[i] for i in active])).sample()
        for i, action in zip(active, _env_actions(actions, kind), strict=True):
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
    kind = action_space_kind(model.action_space)
    advantages, weight = np.zeros(len(envs)), np.ones(len(envs))
    ended = np.zeros(len(envs), dtype=bool)
    value = values.detach().cpu().double().numpy().copy()  # V̂(s_k) of each live row
    alive, actions = np.arange(len(envs)), first_actions
    for k in range(int(horizons.max())):
        if not len(alive):
            break
        env_actions = _env_actions(actions, kind)
        steps = [envs[i].step(a) for i, a in zip(alive, env_actions, strict=True)]
        with th.no_grad():
            params, next_values, _ = params_values_features(policy, obs_tensor(policy, [s[0] for s in steps]))
        next_value = next_values.flatten().double().cpu().numpy()
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
            actions = sample_actions(policy, params[th.as_tensor(going, device=params.device)])
    return Continuations(advantages, ended)


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
