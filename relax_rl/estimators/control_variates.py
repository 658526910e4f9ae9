"""Learnable control variates ``c_φ(z)`` (DESIGN.md §1).

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
    """A positive scalar, stored as its log so gradient steps keep it positive."""

    def __init__(self, init: float = 0.5, learnable: bool = True):
        super().__init__()
        if init <= 0:
            raise ValueError(f"temperature must be positive, got {init}")
        log_t = torch.tensor(math.log(init))
        if learnable:
            self.log_value = nn.Parameter(log_t)
        else:
            self.register_buffer("log_value", log_t)

    def forward(self) -> Tensor:
        return self.log_value.exp()


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int = 1, activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """A plain multi-layer perceptron."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ControlVariate(nn.Module):
    """Base class: ``forward(z, context=None)`` returns a tensor of shape ``(batch,)``."""

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class MLPControlVariate(ControlVariate):
    """Free-form ``c_φ(z) = MLP([context, relax(z, τ)])`` with a learnable temperature ``τ``."""

    def __init__(
        self,
        relaxation: Relaxation | GaussianReparam,
        z_dim: int,
        context_dim: int = 0,
        hidden: Sequence[int] = (64, 64),
        temperature: float = 0.5,
        learn_temperature: bool = True,
        activation: type[nn.Module] = nn.Tanh,
    ):
        super().__init__()
        self.relaxation = relaxation
        self.context_dim = context_dim
        self.net = mlp(z_dim + context_dim, hidden, 1, activation)
        # A continuous variable has nothing to relax, so it gets no temperature to learn.
        self.temperature = Temperature(temperature, learn_temperature and relaxation.has_temperature)

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.relaxation.relax(z, self.temperature())
        if self.context_dim:
            if context is None:
                raise ValueError("this control variate was built with context_dim > 0 and needs a context")
            x = torch.cat([context, x], dim=-1)
        return self.net(x).squeeze(-1)


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
