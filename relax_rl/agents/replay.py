"""A replay of the last K rollouts, for training the critic ``V`` and the control variate ``ĉ_φ`` on more
data than one rollout (docs/design.md §4b).

The rule that keeps the policy gradient unbiased is the algorithm's, not this buffer's: rollout ``k``'s
advantages and ``θ`` gradient are computed before ``V`` and ``φ`` train on a replay that includes ``k``.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.utils import obs_as_tensor

from relax_rl.agents.buffers import TensorRolloutBuffer, rollout_rewards

Observations = th.Tensor | dict[str, th.Tensor]


class ReplayRows(NamedTuple):
    """Rows of past rollouts, in collection order (row ``j · n_envs + e`` is step ``j`` of env ``e``)."""

    observations: Observations
    actions: th.Tensor
    returns: th.Tensor
    """The λ-returns as computed at collection time: ``V``'s regression target by default."""
    horizon: th.Tensor
    """Each row's steps to the bootstrap ``h``: fixed before the action, so ``ĉ`` may read it."""
    log_probs: th.Tensor
    """``log μ(a|s)`` of the policy that acted: importance weights need it."""
    rewards: th.Tensor
    """The rewards (a timeout's bootstrap included, as the rollout buffer holds them)."""
    episode_starts: th.Tensor

    @classmethod
    def of_rollout(
        cls, buffer: RolloutBuffer | TensorRolloutBuffer, rollout: RolloutBufferSamples, horizon: th.Tensor
    ) -> ReplayRows:
        """The rows of the rollout in ``buffer``, given :func:`~relax_rl.agents.buffers.whole_rollout`'s view."""
        rewards, episode_starts = rollout_rewards(buffer)
        return cls(
            rollout.observations,
            rollout.actions,
            rollout.returns,
            horizon,
            rollout.old_log_prob,
            rewards,
            episode_starts,
        )


class RolloutEnd(NamedTuple):
    """Where a rollout stopped, one row per env: what its last step bootstraps from."""

    observations: Observations
    dones: th.Tensor

    @classmethod
    def of(cls, last_obs: Observations | np.ndarray, last_episode_starts: np.ndarray, device: th.device) -> RolloutEnd:
        """From SB3's ``_last_obs`` and ``_last_episode_starts`` after collection (numpy, or tensors on the device)."""
        obs = last_obs if isinstance(last_obs, th.Tensor) else obs_as_tensor(last_obs, device)
        return cls(obs, th.as_tensor(last_episode_starts, device=device).float())


def _index(x: Observations, rows: th.Tensor) -> Observations:
    return {key: value[rows] for key, value in x.items()} if isinstance(x, dict) else x[rows]


def _cat(parts: list) -> Observations:
    if isinstance(parts[0], dict):
        return {key: th.cat([part[key] for part in parts]) for key in parts[0]}
    return th.cat(parts)


def _copy(x: Observations) -> Observations:
    return {key: value.detach().clone() for key, value in x.items()} if isinstance(x, dict) else x.detach().clone()


class RolloutReplay:
    """The last ``capacity`` rollouts, and minibatches drawn from all of their rows."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"a replay holds at least one rollout, got capacity {capacity}")
        self.rollouts: deque[ReplayRows] = deque(maxlen=capacity)
        self.ends: deque[RolloutEnd] = deque(maxlen=capacity)
        self._rows: ReplayRows | None = None  # the concatenation, rebuilt only when a rollout arrives
        self._ages: th.Tensor | None = None

    def __len__(self) -> int:
        return sum(len(rollout.returns) for rollout in self.rollouts)

    def add(self, rows: ReplayRows, end: RolloutEnd) -> None:
        # Copies: a tensor rollout buffer hands out views of storage that the next rollout overwrites.
        self.rollouts.append(ReplayRows(*(_copy(x) for x in rows)))
        self.ends.append(RolloutEnd(*(_copy(x) for x in end)))
        self._rows = None

    @property
    def rows(self) -> ReplayRows:
        """Every row, oldest rollout first."""
        if self._rows is None:
            self._rows = ReplayRows(*(_cat([getattr(r, f) for r in self.rollouts]) for f in ReplayRows._fields))
            sizes = th.tensor([len(r.returns) for r in self.rollouts])
            ages = th.arange(len(self.rollouts) - 1, -1, -1, dtype=th.float32)
            self._ages = ages.repeat_interleave(sizes).to(self._rows.returns.device)
        return self._rows

    @property
    def end(self) -> RolloutEnd:
        """Every rollout's end, oldest first: ``n_envs`` rows each."""
        return RolloutEnd(*(_cat([getattr(e, f) for e in self.ends]) for f in RolloutEnd._fields))

    def sample_indices(self, batch_size: int, half_life: float | None = None) -> th.Tensor:
        """``batch_size`` row indices drawn without replacement (all of them if there are fewer): uniformly, or
        with a row of a rollout ``k`` updates old weighted ``2^(−k / half_life)``."""
        total = len(self.rows.returns)
        if half_life is None or batch_size >= total:
            return th.randperm(total, device=self.rows.returns.device)[: min(batch_size, total)]
        return th.multinomial(th.exp2(-self._ages / half_life), batch_size)

    def take(self, indices: th.Tensor) -> ReplayRows:
        """Rows ``indices``, every field."""
        return ReplayRows(*(_index(x, indices) for x in self.rows))

    def observations_at(self, indices: th.Tensor) -> Observations:
        """The observations of rows ``indices``."""
        return _index(self.rows.observations, indices)
