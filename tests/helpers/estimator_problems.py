"""Test problems shared by the estimator tests: three independent Bernoullis with a non-linear ``f``, and
the original RL code's biased conditional sampler for a categorical, which the unbiasedness checks must catch."""

from __future__ import annotations

import torch

# --- three independent Bernoullis --------------------------------------------------------

BERN_LOGITS = torch.tensor([0.3, -0.5, 1.0])
BERN_W = torch.tensor([1.0, -2.0, 0.5])


def f_bern(b: torch.Tensor) -> torch.Tensor:
    """Non-linear in b, and defined on the relaxed cube for REBAR/Concrete."""
    return torch.sin(3 * b @ BERN_W) + b[..., 0] * b[..., 1] * b[..., 2] + (b[..., 2] - 0.3) ** 2


# --- a known trap ----------------------------------------------------------------------


def biased_categorical_conditional(self, params: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The original RL code's sampler, with z̃_b = log p_b − log(−log v_b). Biased; kept out of the package."""
    logp = torch.log_softmax(params, -1)
    v = torch.rand_like(logp).clamp(1e-7, 1 - 1e-7)
    index = b.long().unsqueeze(-1)
    z_b = logp.gather(-1, index) - torch.log(-torch.log(v.gather(-1, index)))
    z_rest = -torch.logaddexp(torch.log(-torch.log(v)) - logp, -z_b)
    return z_rest.scatter(-1, index, z_b)
