"""A replay of the last K rollouts, for training the critic ``V`` and the control variate ``ĉ_φ`` on more
data than one rollout (DESIGN.md §4b).

The rule that keeps the policy gradient unbiased is the algorithm's, not this buffer's: rollout ``k``'s
advantages and ``θ`` gradient are computed before ``V`` and ``φ`` train on a replay that includes ``k``.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import torch as th


class ReplayRows(NamedTuple):
    """Rows of past rollouts: what ``V`` and ``ĉ`` are fitted on."""

    observations: th.Tensor | dict[str, th.Tensor]
    actions: th.Tensor
    returns: th.Tensor
    """The λ-returns as computed at collection time: ``V``'s regression target."""
    horizon: th.Tensor
    """Each row's steps to the bootstrap ``h``: fixed before the action, so ``ĉ`` may read it."""


def _index(x: th.Tensor | dict[str, th.Tensor], rows: th.Tensor) -> th.Tensor | dict[str, th.Tensor]:
    return {key: value[rows] for key, value in x.items()} if isinstance(x, dict) else x[rows]


def _cat(parts: list) -> th.Tensor | dict[str, th.Tensor]:
    if isinstance(parts[0], dict):
        return {key: th.cat([part[key] for part in parts]) for key in parts[0]}
    return th.cat(parts)


class RolloutReplay:
    """The last ``capacity`` rollouts, and minibatches drawn uniformly from all of their rows."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"a replay holds at least one rollout, got capacity {capacity}")
        self.rollouts: deque[ReplayRows] = deque(maxlen=capacity)
        self._rows: ReplayRows | None = None  # the concatenation, rebuilt only when a rollout arrives

    def __len__(self) -> int:
        return sum(len(rollout.returns) for rollout in self.rollouts)

    def add(self, rows: ReplayRows) -> None:
        # Copies: a tensor rollout buffer hands out views of storage that the next rollout overwrites.
        self.rollouts.append(ReplayRows(*(_copy(x) for x in rows)))
        self._rows = None

    def sample(self, batch_size: int) -> ReplayRows:
        """``batch_size`` rows drawn uniformly without replacement (all of them if there are fewer)."""
        if self._rows is None:
            self._rows = ReplayRows(*(_cat([getattr(r, f) for r in self.rollouts]) for f in ReplayRows._fields))
        total = len(self._rows.returns)
        rows = th.randperm(total, device=self._rows.returns.device)[: min(batch_size, total)]
        return ReplayRows(*(_index(x, rows) for x in self._rows))


def _copy(x: th.Tensor | dict[str, th.Tensor]) -> th.Tensor | dict[str, th.Tensor]:
    return {key: value.detach().clone() for key, value in x.items()} if isinstance(x, dict) else x.detach().clone()
