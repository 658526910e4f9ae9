"""SB3's action distributions: set from rows of distribution parameters, and those SB3 builds one sub-action at
a time, batched."""

from __future__ import annotations

import torch as th
from stable_baselines3.common.distributions import (
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
)
from torch.distributions import Categorical

from relax_rl.agents.action_spaces import split_mean_log_std


def _one_size(action_dims: list[int]) -> bool:
    return len(set(action_dims)) == 1


class BatchedMultiCategoricalDistribution(MultiCategoricalDistribution):
    """SB3's ``MultiCategoricalDistribution`` for sub-actions of one size, as a single ``Categorical``.

    The law, the logits' layout and the network head are SB3's; only the work differs: SB3 builds a
    ``Categorical`` per sub-action, which for 64 sub-actions makes sampling, ``log_prob`` and their
    backward pass dozens of small kernels each, and the policy several times slower than its MLP.
    """

    def __init__(self, action_dims: list[int]):
        if not _one_size(action_dims):
            raise ValueError(f"sub-actions must all have one size to be batched, got {action_dims}")
        super().__init__(action_dims)

    def proba_distribution(self, action_logits: th.Tensor) -> BatchedMultiCategoricalDistribution:
        # (batch, D·K) → (batch, D, K): the same block layout as SB3's split of the logits.
        self.distribution = Categorical(logits=action_logits.unflatten(-1, (len(self.action_dims), -1)))
        return self

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        return self.distribution.log_prob(actions).sum(dim=-1)

    def entropy(self) -> th.Tensor:
        return self.distribution.entropy().sum(dim=-1)

    def sample(self) -> th.Tensor:
        return self.distribution.sample()

    def mode(self) -> th.Tensor:
        return self.distribution.logits.argmax(dim=-1)


def batched(action_dist: Distribution) -> Distribution:
    """``action_dist`` with its sub-actions batched where that keeps its law (equal sizes), else itself."""
    if isinstance(action_dist, MultiCategoricalDistribution) and _one_size(action_dist.action_dims):
        return BatchedMultiCategoricalDistribution(list(action_dist.action_dims))
    return action_dist


def distribution_from_params(action_dist: Distribution, params: th.Tensor) -> Distribution:
    """SB3's ``action_dist`` set to rows of distribution parameters: logits, or ``[μ, log σ]`` for a Gaussian."""
    if isinstance(action_dist, DiagGaussianDistribution):
        return action_dist.proba_distribution(*split_mean_log_std(params))
    return action_dist.proba_distribution(action_logits=params)
