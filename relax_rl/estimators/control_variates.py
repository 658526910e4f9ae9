"""Learnable control variates ``c_φ(z)`` (docs/design.md §1).

A control variate maps a relaxation ``z`` (and optionally a context, such as
an encoder input or a state embedding) to one scalar per batch row. It relaxes
``z`` itself, so its temperature is one of the parameters ``φ`` that the
variance objective trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from relax_rl.estimators.relaxations import GaussianReparam, Relaxation


class Temperature(nn.Module):
    """A positive scalar, learnable by gradient steps that cannot make it non-positive.

    Unbounded, it is stored as its log. With ``bounds = (low, high)`` its log is a sigmoid of the
    stored value, scaled into ``[log low, log high]``: objectives that drive ``τ`` towards 0 (where
    ``softmax(z/τ)`` turns into a step and the reparameterised gradients explode) or towards ∞ stop
    at the bounds. Near a bound the gradient shrinks but, unlike under a clamp, does not vanish at
    once, so Adam's normalised steps can bring ``τ`` back.
    """

    def __init__(self, init: float = 0.5, learnable: bool = True, bounds: tuple[float, float] | None = None):
        super().__init__()
        if init <= 0:
            raise ValueError(f"temperature must be positive, got {init}")
        if bounds is not None and not 0 < bounds[0] < init < bounds[1]:
            raise ValueError(f"temperature bounds must satisfy 0 < low < init < high, got {bounds} and init {init}")
        self.log_bounds = None if bounds is None else (math.log(bounds[0]), math.log(bounds[1]))
        raw = torch.tensor(math.log(init) if bounds is None else self._inverse(math.log(init)))
        if learnable:
            self.raw = nn.Parameter(raw)
        else:
            self.register_buffer("raw", raw)

    def _inverse(self, log_t: float) -> float:
        low, high = self.log_bounds
        fraction = (log_t - low) / (high - low)
        return math.log(fraction / (1 - fraction))

    def forward(self) -> Tensor:
        if self.log_bounds is None:
            return self.raw.exp()
        low, high = self.log_bounds
        return (low + (high - low) * torch.sigmoid(self.raw)).exp()


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int = 1,
    activation: type[nn.Module] = nn.Tanh,
    zero_output: bool = False,
) -> nn.Sequential:
    """A plain multi-layer perceptron; ``zero_output`` starts its output layer at zero."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    if zero_output:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class ControlVariate(nn.Module):
    """Base class: ``forward(z, context=None)`` returns a tensor of shape ``(batch,)``."""

    #: Whether ``c(z)`` is affine in ``z`` for every context, so that ``E[c(b)] = c(E[b])`` exactly.
    affine: bool = False

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class _LearnedControlVariate(ControlVariate):
    """Shared plumbing of the free-form control variates: the input relaxation and the context.

    The input is ``relax(z, τ)`` with a learnable temperature ``τ`` (``softmax(z/τ)`` or
    ``σ(z/τ)``), or the raw ``z`` when ``relaxed_input`` is False. Unbiasedness holds for either.
    Output layers start at zero, so the estimator starts as the baseline-only one: a random
    ``c_φ`` would add noise of its own (through ``∇c(z) − ∇c(z̃)``) before it has learned anything.
    """

    def __init__(
        self,
        relaxation: Relaxation | GaussianReparam,
        context_dim: int,
        temperature: float,
        learn_temperature: bool,
        relaxed_input: bool,
        temperature_bounds: tuple[float, float] | None = None,
    ):
        super().__init__()
        self.relaxation = relaxation
        self.context_dim = context_dim
        self.relaxed_input = relaxed_input
        # A continuous variable, or a raw-z input, has nothing to relax: no temperature to learn.
        learnable = learn_temperature and relaxed_input and relaxation.has_temperature
        self.temperature = Temperature(temperature, learnable, temperature_bounds)

    def _input(self, z: Tensor) -> Tensor:
        return self.relaxation.relax(z, self.temperature()) if self.relaxed_input else z

    def _context(self, z: Tensor, context: Tensor | None) -> Tensor:
        if context is None:
            if self.context_dim:
                raise ValueError("this control variate was built with context_dim > 0 and needs a context")
            return z.new_zeros(z.shape[0], 0)
        return context


class MLPControlVariate(_LearnedControlVariate):
    """Free-form ``c_φ(z) = MLP([context, relax(z, τ)])``."""

    def __init__(
        self,
        relaxation: Relaxation | GaussianReparam,
        z_dim: int,
        context_dim: int = 0,
        hidden: Sequence[int] = (64, 64),
        temperature: float = 0.5,
        learn_temperature: bool = True,
        activation: type[nn.Module] = nn.Tanh,
        relaxed_input: bool = True,
        temperature_bounds: tuple[float, float] | None = None,
    ):
        super().__init__(relaxation, context_dim, temperature, learn_temperature, relaxed_input, temperature_bounds)
        self.net = mlp(z_dim + context_dim, hidden, 1, activation, zero_output=True)

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(torch.cat([self._context(z, context), self._input(z)], dim=-1)).squeeze(-1)


class LinearControlVariate(_LearnedControlVariate):
    """``c_φ(z) = w(context) · (x − m) + b(context)``, affine in ``x``: the relaxed sample ``relax(z, τ)``, or
    ``z`` itself (for the all-action form, the sample's indicator).

    The slopes ``w`` and the offset ``b`` come from networks of the context (free parameters without
    one). It represents exactly any ``f`` that is additive over sub-actions, and scales to thousands of
    them. Two options make its slopes easier to learn (docs/design.md §4b, the all-action form):

    - ``centred``: ``m`` is the mean of the indicator under the distribution, ``E_θ[ind(b)]``, read from the
      distribution parameters that the context ends with (``params_dim`` columns, detached). Then
      ``E[c] = b`` exactly at the hard sample, and the slopes are orthogonal to the state part: a slope
      error does not move ``b``. Uncentred, ``m = 0``.
    - ``per_sub_action``: each sub-action ``i`` gets its slopes and an offset of its own from one network shared
      by the sub-actions, ``(w_i, b_i) = g([P_i(context), e_i, θ_i])``: ``P_i`` is a linear map of the context
      of its own, ``e_i`` a learned embedding of its position and ``θ_i`` its own (detached) distribution
      parameters. Then ``c = Σ_i [w_i · (x_i − m_i) + b_i] + b_0(context)``, whose state part is additive over
      sub-actions too: what a sub-action's logit says about its effect is learned once for all of them.
    """

    def __init__(
        self,
        relaxation: Relaxation | GaussianReparam,
        z_dim: int,
        context_dim: int = 0,
        hidden: Sequence[int] = (64,),
        temperature: float = 0.5,
        learn_temperature: bool = True,
        activation: type[nn.Module] = nn.Tanh,
        relaxed_input: bool = True,
        temperature_bounds: tuple[float, float] | None = None,
        params_dim: int = 0,
        centred: bool = False,
        n_blocks: int = 1,
        per_sub_action: bool = False,
        embedding_dim: int = 8,
        block_hidden: Sequence[int] = (32,),
    ):
        super().__init__(relaxation, context_dim, temperature, learn_temperature, relaxed_input, temperature_bounds)
        if (centred or per_sub_action) and not (params_dim and hasattr(relaxation, "mean_indicator")):
            raise ValueError(
                "a centred or per-sub-action linear control variate reads the distribution parameters of a discrete "
                "variable: give params_dim > 0 (the context's last columns) and a discrete relaxation"
            )
        if per_sub_action and (z_dim % n_blocks or params_dim % n_blocks):
            raise ValueError(f"per-sub-action slopes need {n_blocks} equal sub-actions, got z_dim {z_dim}")
        if params_dim > context_dim:
            raise ValueError(f"params_dim {params_dim} is larger than the context ({context_dim})")
        self.z_dim, self.params_dim, self.centred = z_dim, params_dim, centred
        self.n_blocks, self.per_sub_action = n_blocks, per_sub_action
        hidden = hidden if context_dim else ()
        self.net = mlp(context_dim, hidden, 1 if per_sub_action else z_dim + 1, activation, zero_output=True)
        if per_sub_action:
            shared = context_dim - params_dim
            self.projection = nn.Linear(shared, n_blocks * embedding_dim) if shared else None
            self.embedding = nn.Embedding(n_blocks, embedding_dim)
            block_in = embedding_dim * (1 + bool(shared)) + params_dim // n_blocks
            self.block_net = mlp(block_in, block_hidden, z_dim // n_blocks + 1, activation, zero_output=True)

    @property
    def affine(self) -> bool:
        return not self.relaxed_input  # softmax(z/τ) is not affine in z

    def _params(self, context: Tensor) -> Tensor:
        return context[:, context.shape[1] - self.params_dim :]

    def slopes_and_offset(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """``w(context)``, ``(batch, z_dim)``, and ``b(context)``, ``(batch,)``: the value at ``x = m``."""
        if not self.per_sub_action:
            out = self.net(context)
            return out[:, :-1], out[:, -1]
        out = self.block_net[1:](self._block_net_first_layer(context))  # (batch, blocks, block size + 1)
        return out[..., :-1].flatten(1), out[..., -1].sum(-1) + self.net(context).squeeze(-1)

    def _block_net_first_layer(self, context: Tensor) -> Tensor:
        """``block_net``'s first layer on ``[θ_i, e_i, P_i(context)]`` for every sub-action ``i``: ``(batch, blocks,
        width)``. That input is never built. Its weight is split by part, and the projection composed with its part
        into one map of the context. This is the same function, but each pass over ``batch × blocks`` rows costs
        more than the network's arithmetic at hundreds of sub-actions, and this makes fewer of them."""
        first = self.block_net[0]
        params = self._params(context).unflatten(1, (self.n_blocks, -1))
        k, e = params.shape[-1], self.embedding.embedding_dim
        w_params, w_embedding, w_shared = first.weight.split([k, e, first.in_features - k - e], dim=1)
        per_block = self.embedding.weight @ w_embedding.T + first.bias  # (blocks, width)
        if self.projection is not None:
            projection = self.projection.weight.unflatten(0, (self.n_blocks, e))  # (blocks, e, shared)
            per_block = per_block + self.projection.bias.unflatten(0, (self.n_blocks, e)) @ w_shared.T
            composed = torch.einsum("bes,we->sbw", projection, w_shared).flatten(1)  # (shared, blocks × width)
            shared = context[:, : context.shape[1] - self.params_dim]
            per_block = (shared @ composed).unflatten(1, (self.n_blocks, -1)) + per_block
        return per_block + params @ w_params.T

    def centre(self, context: Tensor) -> Tensor | float:
        """``m``: the indicator's mean under the distribution (centred), else 0."""
        return self.relaxation.mean_indicator(self._params(context)) if self.centred else 0.0

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        context = self._context(z, context)  # without a context: (batch, 0) in, the offset out
        slopes, offset = self.slopes_and_offset(context)
        return (slopes * (self._input(z) - self.centre(context))).sum(-1) + offset


class FactorisedControlVariate(_LearnedControlVariate):
    """``c_φ(z) = Σ_i g_φ([context, e_i, relax(z_i, τ)])``: one shared network per sub-action.

    ``z`` is split into ``n_blocks`` equal blocks (one per sub-action: a bit, or one
    categorical's logits); ``e_i`` is a learned embedding of the block's position. A sum
    of per-sub-action terms can capture non-linear effects of each sub-action, unlike
    :class:`LinearControlVariate`, while staying small when there are many of them.
    """

    def __init__(
        self,
        relaxation: Relaxation | GaussianReparam,
        z_dim: int,
        n_blocks: int,
        context_dim: int = 0,
        hidden: Sequence[int] = (32,),
        embedding_dim: int = 8,
        temperature: float = 0.5,
        learn_temperature: bool = True,
        activation: type[nn.Module] = nn.Tanh,
        relaxed_input: bool = True,
        temperature_bounds: tuple[float, float] | None = None,
    ):
        if z_dim % n_blocks:
            raise ValueError(f"z_dim {z_dim} does not split into {n_blocks} equal sub-actions")
        super().__init__(relaxation, context_dim, temperature, learn_temperature, relaxed_input, temperature_bounds)
        self.n_blocks, self.block = n_blocks, z_dim // n_blocks
        self.embedding = nn.Embedding(n_blocks, embedding_dim)
        self.net = mlp(context_dim + embedding_dim + self.block, hidden, 1, activation, zero_output=True)

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        batch = z.shape[0]
        context = self._context(z, context).unsqueeze(1).expand(-1, self.n_blocks, -1)
        blocks = self._input(z).reshape(batch, self.n_blocks, self.block)
        positions = self.embedding.weight.unsqueeze(0).expand(batch, -1, -1)
        return self.net(torch.cat([context, positions, blocks], dim=-1)).squeeze(-1).sum(-1)


class RebarControlVariate(ControlVariate):
    """REBAR's control variate ``η f(σ_λ(z))``, with learnable scale ``η`` and temperature ``λ``.

    ``f`` must accept relaxed values (and the context, if one is given) and be
    differentiable there.
    """

    def __init__(
        self,
        f: Callable[..., Tensor],
        relaxation: Relaxation,
        temperature: float = 0.5,
        eta: float = 1.0,
        learn_temperature: bool = True,
        learn_eta: bool = True,
    ):
        super().__init__()
        self.f = f
        self.relaxation = relaxation
        self.temperature = Temperature(temperature, learn_temperature)
        eta_t = torch.tensor(float(eta))
        if learn_eta:
            self.eta = nn.Parameter(eta_t)
        else:
            self.register_buffer("eta", eta_t)

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        relaxed = self.relaxation.relax(z, self.temperature())
        value = self.f(relaxed) if context is None else self.f(relaxed, context)
        return self.eta * value


class SumControlVariate(ControlVariate):
    """The sum of control variates, e.g. relaxed-REBAR's ``η f(σ_λ(z)) + r_φ(z)``."""

    def __init__(self, *terms: ControlVariate):
        super().__init__()
        if not terms:
            raise ValueError("SumControlVariate needs at least one term")
        self.terms = nn.ModuleList(terms)

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return sum(term(z, context) for term in self.terms)


#: Names of the free-form architectures accepted by :func:`make_control_variate`. ``centred`` and
#: ``per_sub_action`` are :class:`LinearControlVariate` centred on the distribution's mean, the latter with
#: one network for every sub-action's slopes and offset; both read the distribution parameters (``params_dim``).
ARCHITECTURES = ("mlp", "linear", "centred", "per_sub_action", "factorised")
#: The architectures that read the distribution parameters at the end of their context.
READS_PARAMS = ("centred", "per_sub_action")
#: The architectures affine in their input (with ``relaxed_input=False``): their mean over a discrete variable
#: is exact.
AFFINE = ("linear", *READS_PARAMS)


def make_control_variate(
    arch: str,
    relaxation: Relaxation | GaussianReparam,
    z_dim: int,
    n_blocks: int,
    context_dim: int = 0,
    hidden: Sequence[int] = (64, 64),
    **kwargs,
) -> _LearnedControlVariate:
    """One of the free-form control variates by name; ``n_blocks`` sub-actions make up ``z``. ``params_dim``
    (a keyword) says how many of the context's last columns are the distribution parameters."""
    if arch == "mlp":
        return MLPControlVariate(relaxation, z_dim, context_dim, hidden, **kwargs)
    if arch in ("linear", *READS_PARAMS):
        options = {"centred": arch != "linear", "per_sub_action": arch == "per_sub_action", "n_blocks": n_blocks}
        return LinearControlVariate(relaxation, z_dim, context_dim, hidden, **options, **kwargs)
    if arch == "factorised":
        return FactorisedControlVariate(relaxation, z_dim, n_blocks, context_dim, hidden, **kwargs)
    raise ValueError(f"unknown control-variate architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
