"""A rollout buffer of tensors on the agent's device, for envs that step as tensors (TorchVecEnv)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape
from stable_baselines3.common.type_aliases import RolloutBufferSamples


class TensorRolloutBuffer:
    """SB3's ``RolloutBuffer`` semantics (same layout, same GAE), with every array a tensor on ``device``.

    Only what on-policy training reads is provided: :meth:`add`, :meth:`compute_returns_and_advantage`,
    :meth:`get` (whole rollout, one ``RolloutBufferSamples`` of tensors) and ``values``/``returns`` as
    numpy arrays (for logging). :meth:`get` does not shuffle: the update uses the whole rollout at
    once, for which the order of rows does not matter.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device,
        gamma: float,
        gae_lambda: float,
        n_envs: int,
    ) -> None:
        self.buffer_size, self.n_envs, self.device = buffer_size, n_envs, device
        self.gamma, self.gae_lambda = gamma, gae_lambda
        steps = (buffer_size, n_envs)
        self.observations = th.zeros((*steps, *get_obs_shape(observation_space)), device=device)
        self.actions = th.zeros((*steps, get_action_dim(action_space)), device=device)
        self.rewards = th.zeros(steps, device=device)
        self.episode_starts = th.zeros(steps, device=device)
        self.value_tensor = th.zeros(steps, device=device)
        self.log_probs = th.zeros(steps, device=device)
        self.advantages = th.zeros(steps, device=device)
        self.return_tensor = th.zeros(steps, device=device)
        self.pos = 0
        self.full = False

    def reset(self) -> None:
        self.pos, self.full = 0, False

    def add(
        self,
        obs: th.Tensor,
        action: th.Tensor,
        reward: th.Tensor,
        episode_start: th.Tensor | np.ndarray,
        value: th.Tensor,
        log_prob: th.Tensor,
    ) -> None:
        self.observations[self.pos] = obs
        self.actions[self.pos] = action.reshape(self.n_envs, -1)
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = th.as_tensor(episode_start, device=self.device)
        self.value_tensor[self.pos] = value.flatten()
        self.log_probs[self.pos] = log_prob.flatten()
        self.pos += 1
        self.full = self.pos == self.buffer_size

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: th.Tensor) -> None:
        """GAE(λ) and λ-returns, as ``stable_baselines3.common.buffers.RolloutBuffer`` computes them."""
        next_values = last_values.flatten()
        next_non_terminal = 1.0 - dones.float()
        last_gae_lam = th.zeros(self.n_envs, device=self.device)
        for step in reversed(range(self.buffer_size)):
            if step < self.buffer_size - 1:
                next_non_terminal = 1.0 - self.episode_starts[step + 1]
                next_values = self.value_tensor[step + 1]
            delta = self.rewards[step] + self.gamma * next_values * next_non_terminal - self.value_tensor[step]
            last_gae_lam = delta + self.gamma * self.gae_lambda * next_non_terminal * last_gae_lam
            self.advantages[step] = last_gae_lam
        self.return_tensor = self.advantages + self.value_tensor

    @property
    def values(self) -> np.ndarray:
        return self.value_tensor.cpu().numpy()

    @property
    def returns(self) -> np.ndarray:
        return self.return_tensor.cpu().numpy()

    def get(self, batch_size: int | None = None) -> Iterator[RolloutBufferSamples]:
        """The whole rollout, steps and envs flattened into one batch (``batch_size`` must be None)."""
        assert self.full, "the rollout is not complete"
        if batch_size is not None and batch_size != self.buffer_size * self.n_envs:
            raise NotImplementedError("TensorRolloutBuffer yields the whole rollout only")
        yield RolloutBufferSamples(
            self.observations.flatten(0, 1),
            self.actions.flatten(0, 1),
            self.value_tensor.flatten(),
            self.log_probs.flatten(),
            self.advantages.flatten(),
            self.return_tensor.flatten(),
        )


def whole_rollout(buffer: RolloutBuffer | TensorRolloutBuffer) -> tuple[RolloutBufferSamples, th.Tensor]:
    """The rollout's rows in collection order (row ``j · n_envs + e`` is step ``j`` of env ``e``), and
    each row's steps to the bootstrap ``h = n − j``.

    SB3's ``RolloutBuffer.get`` shuffles its rows, after which a row's position in the rollout, and
    so ``h``, cannot be recovered; this reads the buffer as collected instead.
    """
    n, n_envs = buffer.buffer_size, buffer.n_envs
    horizon = th.arange(n, 0, -1, device=buffer.device).repeat_interleave(n_envs)
    if isinstance(buffer, TensorRolloutBuffer):
        return next(buffer.get()), horizon

    def rows(array: np.ndarray) -> th.Tensor:
        return buffer.to_torch(array.reshape(n * n_envs, *array.shape[2:]))

    observations = buffer.observations
    obs = (
        {key: rows(value) for key, value in observations.items()}
        if isinstance(observations, dict)
        else rows(observations)
    )
    samples = RolloutBufferSamples(
        obs,
        rows(buffer.actions),
        rows(buffer.values).flatten(),
        rows(buffer.log_probs).flatten(),
        rows(buffer.advantages).flatten(),
        rows(buffer.returns).flatten(),
    )
    return samples, horizon


def rollout_rewards(buffer: RolloutBuffer | TensorRolloutBuffer) -> tuple[th.Tensor, th.Tensor]:
    """The rollout's rewards (a timeout's bootstrap included) and episode starts, in the row order of
    :func:`whole_rollout`."""
    if isinstance(buffer, TensorRolloutBuffer):
        return buffer.rewards.flatten(), buffer.episode_starts.flatten()
    return buffer.to_torch(buffer.rewards.reshape(-1)), buffer.to_torch(buffer.episode_starts.reshape(-1))
