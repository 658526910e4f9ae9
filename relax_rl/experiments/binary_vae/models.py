"""The sigmoid belief-net VAEs of the REBAR and RELAX papers: ``linear1``, ``linear2``, ``nonlinear``.

Every stochastic layer holds 200 independent Bernoullis. The encoder is
``q(b_1 | x) q(b_2 | b_1) …`` and the decoder ``p(b_L) p(b_{L−1} | b_L) … p(x | b_1)`` with a
learned prior ``p(b_L)``. Latents take values in {0, 1}, but every network reads a latent as
``2b − 1 ∈ {−1, 1}``: that is the paper's parameterisation, and its logits match the
paper's code exactly. The log-probabilities extend to relaxed values in ``[0, 1]``
(``v log σ(ℓ) + (1 − v) log σ(−ℓ)``), which the Concrete and REBAR relaxations use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from relax_rl.estimators import BernoulliRelaxation, Temperature, mlp

MODELS = ("linear1", "linear2", "nonlinear")
LATENT = 200  # Bernoullis per stochastic layer
HIDDEN = 200  # tanh units per deterministic layer of the nonlinear model
RELAXATION = BernoulliRelaxation()


class BinaryVAE(nn.Module):
    """A VAE with factorised-Bernoulli stochastic layers; see the module docstring."""

    def __init__(
        self,
        model: str,
        x_dim: int = 784,
        latent: int = LATENT,
        hidden: int = HIDDEN,
        data_mean: Tensor | None = None,
    ):
        super().__init__()
        if model == "linear1":
            encoders, decoders = [nn.Linear(x_dim, latent)], [nn.Linear(latent, x_dim)]
        elif model == "linear2":
            encoders = [nn.Linear(x_dim, latent), nn.Linear(latent, latent)]
            decoders = [nn.Linear(latent, x_dim), nn.Linear(latent, latent)]
        elif model == "nonlinear":
            encoders = [mlp(x_dim, (hidden, hidden), latent)]
            decoders = [mlp(latent, (hidden, hidden), x_dim)]
        else:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        self.x_dim, self.latent = x_dim, latent
        self.encoders = nn.ModuleList(encoders)  # encoders[i]: layer i's input → logits of b_{i+1}
        self.decoders = nn.ModuleList(decoders)  # decoders[i]: b_{i+1} → logits of the layer below (x for i = 0)
        self.prior_logits = nn.Parameter(torch.zeros(latent))
        mean = torch.full((x_dim,), 0.5) if data_mean is None else data_mean.detach().float()
        self.register_buffer("data_mean", mean)
        # The paper's initialisation: centre the encoder input on the data mean, and start the
        # decoder's output at the pixel marginals so early training is not spent learning them.
        output = self.decoders[0] if isinstance(self.decoders[0], nn.Linear) else self.decoders[0][-1]
        with torch.no_grad():
            output.bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)))

    @property
    def n_layers(self) -> int:
        return len(self.encoders)

    def encode(self, layer: int, below: Tensor) -> Tensor:
        """Logits of ``q(b_{layer+1} | below)``; ``below`` is ``x`` for layer 0, else the previous latent."""
        return self.encoders[layer](below - self.data_mean if layer == 0 else 2 * below - 1)

    def log_joint(self, x: Tensor, values: Sequence[Tensor]) -> Tensor:
        """``log p(x, b_1, …, b_L)`` per row; ``values`` may be relaxed."""
        total = RELAXATION.log_prob(self.prior_logits.expand_as(values[-1]), values[-1])
        for decoder, above, below in zip(self.decoders, values, [x, *values[:-1]], strict=True):
            total = total + RELAXATION.log_prob(decoder(2 * above - 1), below)
        return total

    @staticmethod
    def log_q(logits: Sequence[Tensor], values: Sequence[Tensor]) -> Tensor:
        """``log q(b_1, …, b_L | x)`` per row, given each layer's logits."""
        return sum(RELAXATION.log_prob(lg, v) for lg, v in zip(logits, values, strict=True))

    def elbo(self, x: Tensor, values: Sequence[Tensor], logits: Sequence[Tensor]) -> Tensor:
        """The single-sample ELBO ``log p(x, b) − log q(b | x)`` per row."""
        return self.log_joint(x, values) - self.log_q(logits, values)

    def complete(
        self,
        values: Sequence[Tensor],
        logits: Sequence[Tensor],
        noise: Sequence[Tensor],
        temperature: Temperature | float | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Extend the first layers' values to all layers, driving each new layer with fixed noise.

        Layer ``j`` gets ``z_j = ℓ_j + ε_j`` with its logistic noise ``ε_j`` from ``noise``, and
        the value ``H(z_j)``, or ``σ(z_j / τ)`` when a temperature is given. A relaxed value
        must relax the layers below it too: hard ones would make ``f`` jump in it, and a
        reparameterised gradient of a discontinuous ``f`` is biased.
        """
        values, logits = list(values), list(logits)
        for eps in noise:
            layer_logits = self.encode(len(values), values[-1])
            z = layer_logits + eps
            if temperature is None:
                values.append(RELAXATION.hard(z))
            else:
                values.append(RELAXATION.relax(z, temperature() if callable(temperature) else temperature))
            logits.append(layer_logits)
        return values, logits

    def sample_q(self, x: Tensor, k: int = 1) -> tuple[list[Tensor], list[Tensor]]:
        """``k`` ancestral samples from ``q(b | x)`` per row of ``x``, as ``k·n`` rows (grouped by row)."""
        first = self.encode(0, x).repeat_interleave(k, dim=0)
        noise = [RELAXATION.sample_z(first) - first for _ in range(self.n_layers)]
        values = [RELAXATION.hard(first + noise[0])]
        return self.complete(values, [first], noise[1:])

    def iwae(self, x: Tensor, k: int) -> Tensor:
        """The ``k``-sample importance-weighted bound ``log (1/k) Σ_j p(x, b_j) / q(b_j | x)`` per row."""
        values, logits = self.sample_q(x, k)
        log_w = self.elbo(x.repeat_interleave(k, dim=0), values, logits).view(x.shape[0], k)
        return torch.logsumexp(log_w, dim=1) - math.log(k)
