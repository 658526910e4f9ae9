"""Reparameterisations of discrete and continuous random variables (docs/design.md §2).

Every relaxation maps distribution parameters ``θ`` (logits, or a mean and a
standard deviation) and independent noise to a continuous variable ``z`` with a
hard value ``b = H(z)``. Each also samples ``z̃ ~ p(z | b)`` given a hard value,
reparameterised in ``θ`` with its own noise held fixed, which is what REBAR,
RELAX and RELAX-A2C need. All tensors carry a leading batch dimension and the
code is device-agnostic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class RelaxedSample(NamedTuple):
    """A hard sample with its two relaxations, all differentiable in ``θ``."""

    b: Tensor
    """Hard sample ``H(z)``, detached (the executed action)."""
    z: Tensor
    """Unconditional relaxation ``z ~ p(z | θ)`` with ``H(z) = b``."""
    z_tilde: Tensor
    """Conditional relaxation ``z̃ ~ p(z | b, θ)``, independent of ``z`` given ``b``."""
    log_prob: Tensor
    """``log p(b | θ)``, summed over the event dimensions: shape ``(batch,)``."""


def uniform_like(x: Tensor) -> Tensor:
    """``U(0, 1)`` noise shaped like ``x``, kept away from 0 and 1 so logs stay finite."""
    eps = torch.finfo(x.dtype).eps
    return torch.rand_like(x).clamp_(eps, 1.0 - eps)


class Relaxation(ABC):
    """A discrete (or continuous) distribution with a continuous reparameterisation."""

    #: Whether :meth:`relax` uses a temperature (False for continuous variables).
    has_temperature: bool = True

    @abstractmethod
    def sample_z(self, params: Tensor) -> Tensor:
        """Unconditional ``z ~ p(z | θ)``, reparameterised in ``θ``."""

    @abstractmethod
    def hard(self, z: Tensor) -> Tensor:
        """The hard value ``b = H(z)``."""

    @abstractmethod
    def conditional_z(self, params: Tensor, b: Tensor) -> Tensor:
        """``z̃ ~ p(z | b, θ)``, reparameterised in ``θ`` with its uniform noise fixed."""

    @abstractmethod
    def location(self, params: Tensor) -> Tensor:
        """The ``θ``-dependent shift of ``z``: ``z = location(θ) + noise``."""

    @abstractmethod
    def log_prob(self, params: Tensor, b: Tensor) -> Tensor:
        """``log p(b | θ)`` summed over event dimensions, shape ``(batch,)``."""

    @abstractmethod
    def score(self, params: Tensor, b: Tensor) -> Tensor:
        """``∇_params log p(b | params)`` in closed form, one row per sample."""

    @abstractmethod
    def relax(self, z: Tensor, temperature: Tensor | float) -> Tensor:
        """The relaxed value fed to ``f`` or to a control variate."""

    @abstractmethod
    def indicator(self, params: Tensor, b: Tensor) -> Tensor:
        """The hard value as a vector shaped like ``params``: one-hot blocks, or the bits themselves."""

    @abstractmethod
    def mean_indicator(self, params: Tensor) -> Tensor:
        """``E[indicator(b)]`` under ``p(b | θ)``: the probabilities, differentiable in ``θ``."""

    @abstractmethod
    def draw(self, params: Tensor) -> Tensor:
        """``b ~ p(b | θ)`` alone, drawn as ``torch.distributions`` draws it: for one generator state, the
        same ``b`` as that distribution's ``sample()``, without building the distribution object."""

    @abstractmethod
    def mode(self, params: Tensor) -> Tensor:
        """The most probable ``b``."""

    def sample(self, params: Tensor) -> RelaxedSample:
        """Draw ``b`` together with ``z`` and an independent ``z̃ | b``."""
        z = self.sample_z(params)
        b = self.hard(z.detach())
        return RelaxedSample(b, z, self.conditional_z(params, b), self.log_prob(params, b))

    def sample_given(self, params: Tensor, b: Tensor) -> RelaxedSample:
        """Relaxations for a hard value that was already drawn (e.g. a stored action).

        ``z`` is drawn from ``p(z | b)`` and its noise ``z − location(θ)`` is
        detached, so ``z(θ) = location(θ) + noise`` has the same joint law with
        ``b`` as an unconditional draw (docs/design.md §2, last paragraph).
        """
        with torch.no_grad():
            noise = self.conditional_z(params, b) - self.location(params)
        z = self.location(params) + noise
        return RelaxedSample(b, z, self.conditional_z(params, b), self.log_prob(params, b))


class BernoulliRelaxation(Relaxation):
    """Independent Bernoullis with logits ``ℓ``: ``z = ℓ + log u − log(1 − u)``, ``b = 1[z > 0]``."""

    def sample_z(self, params: Tensor) -> Tensor:
        u = uniform_like(params)
        return params + torch.log(u) - torch.log1p(-u)

    def hard(self, z: Tensor) -> Tensor:
        return (z > 0).to(z.dtype)

    def conditional_z(self, params: Tensor, b: Tensor) -> Tensor:
        # z̃ = ℓ + logit(v') with v' uniform on the part of (0, 1) where H(z̃) = b: v' = (1 − p) + v p for
        # b = 1, v' = v (1 − p) for b = 0. Forming v' loses the sign of z̃ in float32 from |ℓ| ≈ 12 on,
        # so it is simplified in log space, where each branch has its sign by construction:
        #   b = 1: z̃ = softplus(ℓ + log v) − log(1 − v) > 0,   b = 0: z̃ = log v − softplus(log(1 − v) − ℓ) < 0.
        v = uniform_like(params)
        log_v, log_1mv = torch.log(v), torch.log1p(-v)
        return torch.where(b > 0.5, F.softplus(params + log_v) - log_1mv, log_v - F.softplus(log_1mv - params))

    def location(self, params: Tensor) -> Tensor:
        return params

    def draw(self, params: Tensor) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params))

    def mode(self, params: Tensor) -> Tensor:
        return torch.round(torch.sigmoid(params))

    def log_prob(self, params: Tensor, b: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(params, b.to(params.dtype), reduction="none").sum(-1)

    def score(self, params: Tensor, b: Tensor) -> Tensor:
        return b.to(params.dtype) - torch.sigmoid(params)

    def relax(self, z: Tensor, temperature: Tensor | float) -> Tensor:
        return torch.sigmoid(z / temperature)

    def indicator(self, params: Tensor, b: Tensor) -> Tensor:
        return b.to(params.dtype)

    def mean_indicator(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)


def _gumbel(u: Tensor) -> Tensor:
    return -torch.log(-torch.log(u))


class CategoricalRelaxation(Relaxation):
    """A categorical over the last dimension: ``z_i = log p_i + g_i``, ``b = argmax z``.

    ``b`` holds class indices of shape ``params.shape[:-1]``; ``z`` has the
    shape of ``params``. Using normalised ``log p`` makes ``max_i z_i`` a
    standard Gumbel independent of the argmax, which the conditional sampler relies on.
    """

    def sample_z(self, params: Tensor) -> Tensor:
        return self.location(params) + _gumbel(uniform_like(params))

    def hard(self, z: Tensor) -> Tensor:
        return z.argmax(dim=-1)

    def conditional_z(self, params: Tensor, b: Tensor) -> Tensor:
        logp = self.location(params)
        v = uniform_like(logp)
        index = b.long().unsqueeze(-1)
        z_b = _gumbel(v.gather(-1, index))  # the maximum: Gumbel(0), free of θ
        # Other coordinates: Gumbel(log p_i) truncated below z_b.
        # −log(−log v_i / p_i + exp(−z_b)), written with logaddexp for stability.
        z_rest = -torch.logaddexp(torch.log(-torch.log(v)) - logp, -z_b)
        return z_rest.scatter(-1, index, z_b)

    def location(self, params: Tensor) -> Tensor:
        return torch.log_softmax(params, dim=-1)

    def draw(self, params: Tensor) -> Tensor:
        # torch.distributions.Categorical's probabilities, to the bit: softmax of the normalised logits.
        probs = torch.softmax(params - params.logsumexp(-1, keepdim=True), dim=-1)
        return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, True).reshape(probs.shape[:-1])

    def mode(self, params: Tensor) -> Tensor:
        return params.argmax(dim=-1)

    def log_prob(self, params: Tensor, b: Tensor) -> Tensor:
        logp = self.location(params).gather(-1, b.long().unsqueeze(-1)).squeeze(-1)
        return logp.reshape(logp.shape[0], -1).sum(-1)

    def score(self, params: Tensor, b: Tensor) -> Tensor:
        return F.one_hot(b.long(), params.shape[-1]).to(params.dtype) - torch.softmax(params, dim=-1)

    def relax(self, z: Tensor, temperature: Tensor | float) -> Tensor:
        return torch.softmax(z / temperature, dim=-1)

    def indicator(self, params: Tensor, b: Tensor) -> Tensor:
        return F.one_hot(b.long(), params.shape[-1]).to(params.dtype)

    def mean_indicator(self, params: Tensor) -> Tensor:
        return torch.softmax(params, dim=-1)


class MultiCategoricalRelaxation(Relaxation):
    """Independent categoricals of sizes ``nvec``, with logits concatenated on the last axis.

    ``params`` and ``z`` have shape ``(batch, sum(nvec))``; ``b`` has shape
    ``(batch, len(nvec))``. The relaxed value is the concatenation of each
    block's ``softmax(z / τ)``: one relaxation per sub-action.
    """

    def __init__(self, nvec: Sequence[int]):
        if len(nvec) == 0 or min(nvec) < 1:
            raise ValueError(f"nvec must be a non-empty list of positive sizes, got {list(nvec)}")
        self.nvec = [int(n) for n in nvec]
        # Blocks of one size are a (batch, D, K) view that one categorical handles at once; a loop over
        # 64 blocks would make every call dozens of small kernels, in the forward and backward passes.
        self._uniform = len(set(self.nvec)) == 1
        self._categorical = CategoricalRelaxation()

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        return torch.split(x, self.nvec, dim=-1)

    def _stacked(self, x: Tensor) -> Tensor:
        """Blocks of one size as a ``(..., D, K)`` view."""
        return x.unflatten(-1, (len(self.nvec), -1))

    def _per_block(self, fn, x: Tensor, *args) -> Tensor:
        """``fn`` (a categorical's map of one block to one block) on every block of ``x``."""
        if self._uniform:
            return fn(self._stacked(x), *args).flatten(-2)
        return torch.cat([fn(block, *args) for block in self._split(x)], dim=-1)

    def _per_block_given(self, fn, params: Tensor, b: Tensor) -> Tensor:
        """``fn(block of params, its sub-action)``, a block per sub-action, concatenated."""
        if self._uniform:
            return fn(self._stacked(params), b).flatten(-2)
        return torch.cat([fn(p, b[..., i]) for i, p in enumerate(self._split(params))], dim=-1)

    def sample_z(self, params: Tensor) -> Tensor:
        return self._per_block(self._categorical.sample_z, params)

    def hard(self, z: Tensor) -> Tensor:
        return self._per_sub_action(self._categorical.hard, z)

    def conditional_z(self, params: Tensor, b: Tensor) -> Tensor:
        return self._per_block_given(self._categorical.conditional_z, params, b)

    def _per_sub_action(self, fn, params: Tensor) -> Tensor:
        """``fn`` (a categorical's map of one block to its sub-action) on every block: ``(batch, D)``."""
        if self._uniform:
            return fn(self._stacked(params))
        return torch.stack([fn(block) for block in self._split(params)], dim=-1)

    def draw(self, params: Tensor) -> Tensor:
        return self._per_sub_action(self._categorical.draw, params)

    def mode(self, params: Tensor) -> Tensor:
        return self._per_sub_action(self._categorical.mode, params)

    def location(self, params: Tensor) -> Tensor:
        return self._per_block(self._categorical.location, params)

    def log_prob(self, params: Tensor, b: Tensor) -> Tensor:
        if self._uniform:  # the categorical sums over the sub-action axis too
            return self._categorical.log_prob(self._stacked(params), b)
        blocks = self._split(params)
        return sum(self._categorical.log_prob(p, b[..., i]) for i, p in enumerate(blocks))

    def score(self, params: Tensor, b: Tensor) -> Tensor:
        return self._per_block_given(self._categorical.score, params, b)

    def relax(self, z: Tensor, temperature: Tensor | float) -> Tensor:
        return self._per_block(self._categorical.relax, z, temperature)

    def indicator(self, params: Tensor, b: Tensor) -> Tensor:
        return self._per_block_given(self._categorical.indicator, params, b)

    def mean_indicator(self, params: Tensor) -> Tensor:
        return self._per_block(self._categorical.mean_indicator, params)


class GaussianReparam:
    """Diagonal Gaussian ``a = μ + σ ε`` (docs/design.md §2, continuous case).

    For LAX the control variate must see the action that was executed, so
    :meth:`recover_eps` rebuilds ``ε`` from a stored action and
    :meth:`rebuild` turns it back into ``a(θ)`` carrying the reparameterised
    gradient. Evaluating ``c`` at a fresh sample would bias the estimator.
    """

    has_temperature = False

    @staticmethod
    def sample(mean: Tensor, std: Tensor) -> Tensor:
        return mean + std * torch.randn_like(mean)

    @staticmethod
    def recover_eps(action: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        return ((action - mean) / std).detach()

    @staticmethod
    def rebuild(mean: Tensor, std: Tensor, eps: Tensor) -> Tensor:
        return mean + std * eps

    @staticmethod
    def log_prob(mean: Tensor, std: Tensor, action: Tensor) -> Tensor:
        return torch.distributions.Normal(mean, std).log_prob(action).sum(-1)

    @staticmethod
    def score(mean: Tensor, std: Tensor, action: Tensor) -> Tensor:
        """``∇ log p(a)`` for ``(μ, log σ)`` in closed form: ``[ε / σ, ε² − 1]`` with ``ε = (a − μ)/σ``."""
        eps = (action - mean) / std
        return torch.cat([eps / std, eps.pow(2) - 1], dim=-1)

    @staticmethod
    def relax(a: Tensor, temperature: Tensor | float = 1.0) -> Tensor:
        """Continuous variables need no relaxation; the temperature is ignored."""
        return a
