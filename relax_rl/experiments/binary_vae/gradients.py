"""One gradient estimator per stochastic layer, on that layer's logits (paper §6.2).

For layer ``i`` with logits ``ℓ_i`` the black box is the ELBO as a function of ``b_i``,
``f_i(b_i) = log p(x, b) − log q(b | x)``, with everything it needs besides ``b_i`` packed
into a *context* row: ``x``, the hard upstream latents and their logits, ``ℓ_i`` itself and
the logistic noise of the downstream layers. The downstream layers are redrawn from that
fixed noise whenever ``b_i`` changes (``H(ℓ_j + ε_j)``, or its relaxation for a relaxed
``b_i``), so ``f_i`` is a deterministic function of ``b_i`` and noise independent of it, and
every estimator stays unbiased for ``∂ELBO/∂ℓ_i``. The context is detached: in ``f_i`` the
term ``−log q(b_i | ℓ_i)`` sees a constant ``ℓ_i``, and its direct gradient
``σ(ℓ_i) − b_i`` (zero-mean, but part of the exact gradient) is added separately.

The estimators are those of :mod:`relax_rl.estimators`, with DisARM as a further reference point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from relax_rl.estimators import (
    ControlVariate,
    MLPControlVariate,
    RebarControlVariate,
    RelaxedSample,
    SumControlVariate,
    Temperature,
    concrete,
    disarm,
    mlp,
    rebar,
    reinforce,
    relax,
    relaxed_rebar,
)
from relax_rl.experiments.binary_vae.models import RELAXATION, BinaryVAE

ESTIMATORS = ("reinforce", "nvil", "concrete", "rebar", "relax", "relaxed_rebar", "disarm")
UNBIASED = tuple(name for name in ESTIMATORS if name != "concrete")
CONCRETE_TEMPERATURE = 0.5  # fixed, as in the toy problem; Concrete has no variance objective to tune it
CV_HIDDEN = (200, 200)  # r_φ: two tanh layers of 200, the "Q" network of the paper's code
NVIL_HIDDEN = (100,)  # NVIL's input-dependent baseline: one tanh layer of 100 (Mnih & Gregor, 2014)
CENTRE_DECAY = 0.8  # NVIL's running mean of the learning signal (Mnih & Gregor use α = 0.8)


def antithetic(logits: Tensor, z: Tensor) -> Tensor:
    """``H(ℓ − ε)`` for ``z = ℓ + ε``: the Bernoulli drawn with ``1 − u`` in place of ``u``."""
    return RELAXATION.hard((2 * logits - z).detach())


def context_widths(model: BinaryVAE, layer: int) -> list[int]:
    """Widths of a context row: ``x``, upstream latents, upstream logits, own logits, downstream noise."""
    n = model.latent
    return [model.x_dim] + [n] * layer * 2 + [n] + [n] * (model.n_layers - 1 - layer)


def pack_context(
    x: Tensor, upstream: Sequence[Tensor], upstream_logits: Sequence[Tensor], logits: Tensor, noise: Sequence[Tensor]
) -> Tensor:
    """Everything ``f_i`` needs besides ``b_i``, detached and concatenated into one row per sample."""
    return torch.cat([x, *upstream, *upstream_logits, logits, *noise], dim=-1).detach()


class LayerObjective:
    """``f_i(value; context)``, the ELBO as a function of layer ``i``'s value, one per row.

    ``temperature`` relaxes the downstream layers for relaxed values (Concrete, REBAR);
    None keeps them hard. Not a module: it must not register the VAE's parameters
    as those of a control variate.
    """

    def __init__(self, model: BinaryVAE, layer: int, temperature: Temperature | float | None = None):
        self.model, self.layer, self.temperature = model, layer, temperature

    def __call__(self, value: Tensor, context: Tensor) -> Tensor:
        parts = context.split(context_widths(self.model, self.layer), dim=-1)
        x, layer = parts[0], self.layer
        upstream, upstream_logits = parts[1 : 1 + layer], parts[1 + layer : 1 + 2 * layer]
        logits, noise = parts[1 + 2 * layer], parts[2 + 2 * layer :]
        values, all_logits = self.model.complete(
            [*upstream, value], [*upstream_logits, logits], noise, self.temperature
        )
        return self.model.elbo(x, values, all_logits)


class LayerEstimator(nn.Module):
    """One layer's estimator of ``∇_ℓ E[f_i]`` and its learned parts (control variate, baseline)."""

    def __init__(self, name: str, model: BinaryVAE, layer: int):
        super().__init__()
        if name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
        self.name = name
        context_dim = sum(context_widths(model, layer))
        # f_i itself: relaxed for Concrete, hard for DisARM's antithetic sample.
        self.objective = LayerObjective(model, layer, CONCRETE_TEMPERATURE if name == "concrete" else None)
        self.control_variate: ControlVariate | None = None
        if name in ("rebar", "relaxed_rebar"):
            rebar_cv = RebarControlVariate(LayerObjective(model, layer), RELAXATION)
            rebar_cv.f.temperature = rebar_cv.temperature  # downstream layers relax at the learned λ too
            self.control_variate = rebar_cv
        if name in ("relax", "relaxed_rebar"):
            r_phi = MLPControlVariate(RELAXATION, model.latent, context_dim, CV_HIDDEN)
            self.control_variate = r_phi if name == "relax" else SumControlVariate(rebar_cv, r_phi)
        # NVIL's baseline, and RELAX's: a free-form c_φ starts at zero, far from an ELBO of several
        # hundred nats, so RELAX's coefficient is centred on the running mean like NVIL's.
        self.register_buffer("centre", torch.zeros(()))
        self.baseline = mlp(context_dim, NVIL_HIDDEN) if name == "nvil" else None

    def surrogate(self, logits: Tensor, sample: RelaxedSample, f_b: Tensor, context: Tensor) -> Tensor:
        """Per-row surrogate whose gradient in ``logits`` (a leaf) is the estimate of ``∇_ℓ E[f_i]``."""
        if self.name == "reinforce":
            return reinforce(f_b, sample.log_prob)
        if self.name == "nvil":
            return reinforce(f_b, sample.log_prob, baseline=self.centre + self.baseline(context).squeeze(-1))
        if self.name == "concrete":
            return concrete(self.objective(RELAXATION.relax(sample.z, CONCRETE_TEMPERATURE), context))
        if self.name == "disarm":
            b_anti = antithetic(logits, sample.z)
            with torch.no_grad():
                f_anti = self.objective(b_anti, context)
            return disarm(f_b, f_anti, logits, sample.b, b_anti)
        if self.name == "rebar":
            return rebar(f_b, sample.log_prob, sample.z, sample.z_tilde, self.control_variate, context)
        if self.name == "relaxed_rebar":
            return relaxed_rebar(f_b, sample.log_prob, sample.z, sample.z_tilde, self.control_variate, context)
        return relax(f_b - self.centre, sample.log_prob, sample.z, sample.z_tilde, self.control_variate, context)

    def learner_loss(self, gradient: Tensor, f_b: Tensor, context: Tensor) -> Tensor:
        """What the learned parts descend: ``mean ‖ĝ‖²`` of the total logit gradient, or NVIL's MSE."""
        if self.baseline is not None:
            return (f_b - self.centre - self.baseline(context).squeeze(-1)).pow(2).mean()
        return gradient.pow(2).sum(-1).mean()

    @torch.no_grad()
    def update_centre(self, f_b: Tensor) -> None:
        """Move the running mean after the step, so no row's signal is centred on itself."""
        if self.name in ("nvil", "relax"):
            self.centre.mul_(CENTRE_DECAY).add_((1 - CENTRE_DECAY) * f_b.mean())


@dataclass
class Estimate:
    """One batch: the ELBO of the sampled latents and each layer's logit-gradient estimate."""

    elbo: Tensor
    """Per-row ELBO, differentiable in the VAE's parameters (direct gradients)."""
    logits: list[Tensor]
    """Each layer's logits, attached to the encoder, to backpropagate the estimates into it."""
    estimates: list[Tensor]
    """Each layer's per-row estimate of ``∇_ℓ E[f_i]``; differentiable in ``φ`` when asked."""
    direct: list[Tensor]
    """Each layer's per-row direct gradient ``∂(−log q(b_i | ℓ_i))/∂ℓ_i = σ(ℓ_i) − b_i``."""
    contexts: list[Tensor]

    def gradients(self) -> list[Tensor]:
        """Each layer's per-row estimate of the whole ``∂ELBO/∂ℓ_i``."""
        return [g + d for g, d in zip(self.estimates, self.direct, strict=True)]


def estimate(model: BinaryVAE, estimators: Sequence[LayerEstimator], x: Tensor, create_graph: bool) -> Estimate:
    """Sample ``b ~ q(b | x)`` layer by layer and estimate every layer's logit gradient.

    ``create_graph`` keeps each control-variate estimate differentiable in ``φ`` for the
    variance objective.
    """
    values: list[Tensor] = []
    logits: list[Tensor] = []
    leaves: list[Tensor] = []
    samples: list[RelaxedSample] = []
    for layer in range(model.n_layers):
        logits.append(model.encode(layer, x if layer == 0 else values[-1]))
        # A detached leaf per layer: the estimator differentiates its surrogate in ℓ alone.
        leaves.append(logits[-1].detach().requires_grad_())
        samples.append(RELAXATION.sample(leaves[-1]))
        values.append(samples[-1].b)
    noise = [(s.z - leaf).detach() for s, leaf in zip(samples, leaves, strict=True)]
    elbo = model.elbo(x, values, logits)
    f_b = elbo.detach()
    estimates, direct, contexts = [], [], []
    for layer, est in enumerate(estimators):
        leaf = leaves[layer]
        context = pack_context(x, values[:layer], leaves[:layer], leaf, noise[layer + 1 :])
        surrogate = est.surrogate(leaf, samples[layer], f_b, context)
        (g,) = torch.autograd.grad(surrogate.sum(), leaf, create_graph=create_graph and est.control_variate is not None)
        estimates.append(g)
        direct.append((torch.sigmoid(leaf) - values[layer]).detach())
        contexts.append(context)
    return Estimate(elbo, logits, estimates, direct, contexts)
