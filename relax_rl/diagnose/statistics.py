"""The nested (hierarchical) ANOVA of single-row estimates, with a jackknife over the independent states."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch as th
from torch import Tensor


@dataclass(frozen=True)
class Estimate:
    """A number and its standard error."""

    value: float
    se: float

    def __format__(self, spec: str) -> str:
        return f"{self.value:{spec or '.4g'}} ± {self.se:.2g}"

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "se": self.se}


def jackknife(values: Tensor) -> Estimate:
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


def nested_statistics(x: Tensor, metric: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
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


def check_sizes(n: int, m: int, k: int) -> None:
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
        return cls(**{name: jackknife(v) for name, v in parts.items()}, action_fraction=jackknife(fraction))

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {name: getattr(self, name).to_dict() for name in self.__dataclass_fields__}


def decompose_variance(samples: Tensor) -> VarianceDecomposition:
    """Unbiased nested-ANOVA estimates of the variance parts of ``samples``, with jackknife SEs over states.

    ``samples`` has shape ``(N states, M actions, K continuations, P coordinates)``; each
    coordinate's parts are estimated and summed (the trace). Needs ``N >= 3`` and ``M, K >= 2``.
    """
    check_sizes(*samples.shape[:3])
    within_pair, within_state, means = nested_statistics(samples)
    stats = StateStatistics(within_pair, within_state, means, means.pow(2).sum(-1), *samples.shape[1:3])
    return VarianceDecomposition.from_parts(stats.parts())
