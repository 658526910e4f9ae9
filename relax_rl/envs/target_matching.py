"""Contextual target matching: high-dimensional discrete actions whose sampling noise dominates.

Each step shows a context ``x ~ N(0, I)``; the agent picks ``D`` sub-actions and earns the
fraction that match a target ``t(x)`` fixed by the task (a random linear map, seeded). A
linear policy can match every sub-action, yet a single-sample policy gradient sees ``D``
independent coin flips in its score, so the action-sampling variance grows with ``D``: the
regime where an action-dependent control variate should pay off (docs/design.md §8).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from relax_rl.envs.reference import AffineReward

#: Dimensions registered as ready-made ids; any other is a constructor argument away.
REGISTERED_DIMS = (8, 16, 32, 64, 128, 256, 512, 1024)
#: Fraction of matched sub-actions per step that counts as solved.
SOLVED_FRACTION = 0.9


class TargetMatchingEnv(gym.Env):
    """Match ``D`` binary (or ``n_choices``-way) sub-actions to a context-dependent target.

    :param n_actions: D, the number of sub-actions (8 to 1024 is the intended range)
    :param n_choices: 2 gives a ``MultiBinary(D)`` action; more gives ``MultiDiscrete([n_choices] * D)``
    :param context_dim: size of the observed context
    :param episode_length: steps per episode; each step has a fresh context and its own reward
    :param task_seed: seeds the target map, so that every instance poses the same task
    :param observe_step: the observation ends with the step's place in the episode, ``t / episode_length``.
        Without it a state value cannot tell how many rewards are left, so on episodes of several steps no
        critic, learned or exact, can predict the return-to-go
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        n_actions: int = 64,
        n_choices: int = 2,
        context_dim: int = 8,
        episode_length: int = 1,
        task_seed: int = 0,
        multidiscrete: bool = False,
        observe_step: bool = False,
    ):
        if n_actions < 1 or n_choices < 2 or context_dim < 1 or episode_length < 1:
            raise ValueError(
                "need n_actions >= 1, n_choices >= 2, context_dim >= 1 and episode_length >= 1, got "
                f"{n_actions}, {n_choices}, {context_dim}, {episode_length}"
            )
        self.n_actions, self.n_choices, self.episode_length = n_actions, n_choices, episode_length
        self.observe_step = observe_step
        self.observation_space = spaces.Box(-np.inf, np.inf, (context_dim + observe_step,), np.float32)
        if n_choices == 2 and not multidiscrete:
            self.action_space = spaces.MultiBinary(n_actions)
        else:
            self.action_space = spaces.MultiDiscrete(np.full(n_actions, n_choices))
        task = np.random.default_rng(task_seed)
        self._target_map = task.standard_normal((n_actions, n_choices, context_dim)).astype(np.float32)
        self._context = np.zeros(context_dim, np.float32)
        self._t = 0

    def exact_reference(self) -> TargetMatchingReward:
        """The reward in closed form (:mod:`relax_rl.envs.reference`): the exact values to measure critics by."""
        return TargetMatchingReward(
            self._target_map,
            binary=isinstance(self.action_space, spaces.MultiBinary),
            one_step=self.episode_length == 1,
        )

    def context(self, obs: np.ndarray) -> np.ndarray:
        """The context part of an observation (all of it, unless the step is observed)."""
        return obs[..., : self._context.shape[0]]

    def target(self, obs: np.ndarray) -> np.ndarray:
        """The sub-actions that earn the full reward for an observation's context: ``argmax_c W_ic · x``."""
        return (self._target_map @ self.context(obs)).argmax(-1)

    def _new_context(self) -> np.ndarray:
        self._context = self.np_random.standard_normal(self._context.shape).astype(np.float32)
        if self.observe_step:
            return np.append(self._context, np.float32(self._t / self.episode_length))
        return self._context.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._new_context(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        matched = float(np.mean(np.asarray(action) == self.target(self._context)))
        self._t += 1
        return self._new_context(), matched, self._t >= self.episode_length, False, {"matched_fraction": matched}


def register_target_matching() -> None:
    """Register ``relax_rl/TargetMatching[MultiDiscrete|Sequential|Timed]-D{D}-v0`` for the usual D."""
    variants = {
        "TargetMatching": {},
        "TargetMatchingMultiDiscrete": {"n_choices": 4},
        "TargetMatchingSequential": {"episode_length": 10},
        # 4 steps per episode, each observing its place: multi-step, and a state value can learn the return-to-go
        "TargetMatchingTimed": {"episode_length": 4, "observe_step": True},
    }
    for name, kwargs in variants.items():
        for dim in REGISTERED_DIMS:
            env_id = f"relax_rl/{name}-D{dim}-v0"
            if env_id in gym.registry:
                continue
            gym.register(
                env_id,
                entry_point=TargetMatchingEnv,
                kwargs={"n_actions": dim, **kwargs},
                reward_threshold=SOLVED_FRACTION * kwargs.get("episode_length", 1),
            )


class TargetMatchingReward(AffineReward):
    """Target matching's reward, ``r(x, a) = (1/D) Σ_i 1[a_i = t_i(x)]``, as ``w*(x) · ind(a) + c*(x)``.

    Bits (``MultiBinary``): ``w*_i = (2 t_i − 1)/D`` and ``c* = #{i: t_i = 0}/D``. One-hot blocks
    (``MultiDiscrete``): ``w*_ik = 1[k = t_i]/D`` and ``c* = 0``. The next context is drawn afresh whatever
    the action, so the action changes nothing that follows.
    """

    def __init__(self, target_map: np.ndarray, binary: bool, one_step: bool):
        self.target_map = torch.as_tensor(target_map)  # (D, K, context)
        self.binary, self.one_step = binary, one_step

    def coefficients(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        target_map = self.target_map.to(obs.device, obs.dtype)
        context = obs[:, : target_map.shape[-1]]  # without the step, where the observation shows it
        targets = torch.einsum("dkc,bc->bdk", target_map, context).argmax(-1)  # (batch, D)
        n_actions = targets.shape[-1]
        if self.binary:
            slopes = (2 * targets - 1).to(obs.dtype) / n_actions
            return slopes, (targets == 0).sum(-1).to(obs.dtype) / n_actions
        one_hot = torch.nn.functional.one_hot(targets, target_map.shape[1]).to(obs.dtype) / n_actions
        return one_hot.flatten(1), obs.new_zeros(len(obs))
