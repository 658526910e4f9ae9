"""CartPole in torch: gymnasium's ``CartPoleEnv`` dynamics for a whole batch at once."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from relax_rl.envs.torch_envs.base import TorchVecEnv

# gymnasium.envs.classic_control.cartpole.CartPoleEnv's constants, in the order it derives them.
GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
RESET_BOUND = 0.05


class CartPoleTorchEnv(TorchVecEnv):
    """``CartPole-v1`` (500-step limit) as a batch of tensors; same dynamics, rewards and limits.

    The state is kept in ``float64`` and observed as ``float32``, as gymnasium does (it computes with
    numpy ``float64`` scalars), and every expression is evaluated in gymnasium's order, so that
    trajectories agree to the last bit of the ``float32`` observation, up to the last bit of ``float64``
    ``sin``/``cos`` (tests/test_torch_envs.py checks this). Initial states are uniform in
    ``[-0.05, 0.05)`` as gymnasium draws them, but from torch's generator, not numpy's: the same
    distribution, not the same numbers.

    :param sutton_barto_reward: gymnasium's option: 0 per step and -1 when the pole falls
    """

    env_id = "CartPole-v1"

    def __init__(
        self,
        num_envs: int,
        *,
        max_episode_steps: int | None = 500,
        sutton_barto_reward: bool = False,
        **kwargs: Any,
    ) -> None:
        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        observation_space = spaces.Box(-high, high, dtype=np.float32)
        super().__init__(num_envs, observation_space, spaces.Discrete(2), max_episode_steps=max_episode_steps, **kwargs)
        self.sutton_barto_reward = sutton_barto_reward
        self.state = th.zeros((num_envs, 4), dtype=th.float64, device=self.device)

    def _reset_states(self, mask: th.Tensor) -> None:
        fresh = th.rand((self.num_envs, 4), generator=self.generator, dtype=th.float64, device=self.device)
        fresh = fresh * (2 * RESET_BOUND) - RESET_BOUND
        # Drawn for every env and kept where masked: no host sync to count the envs that reset.
        th.where(mask.unsqueeze(-1), fresh, self.state, out=self.state)

    def observe(self) -> th.Tensor:
        return self.state.float()

    def _advance(self, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        x, x_dot, theta, theta_dot = self.state.unbind(-1)
        force = th.where(actions == 1, FORCE_MAG, -FORCE_MAG).to(th.float64)
        costheta = th.cos(theta)
        sintheta = th.sin(theta)
        temp = (force + POLEMASS_LENGTH * th.square(theta_dot) * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (4.0 / 3.0 - MASSPOLE * th.square(costheta) / TOTAL_MASS)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        # Euler integration, gymnasium's default kinematics_integrator.
        self.state = th.stack(
            (x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc), -1
        )
        x, theta = self.state[:, 0], self.state[:, 2]
        terminated = (x < -X_THRESHOLD) | (x > X_THRESHOLD) | (theta < -THETA_THRESHOLD) | (theta > THETA_THRESHOLD)
        if self.sutton_barto_reward:
            rewards = -terminated.float()
        else:
            rewards = th.ones(self.num_envs, dtype=th.float32, device=self.device)
        return rewards, terminated
