"""Statistical helpers shared by the unbiasedness tests."""

from __future__ import annotations

import torch
from torch import Tensor

#: Tolerance in standard errors. With fixed seeds the tests are deterministic;
#: 4 SE keeps the chance of a false alarm per component below 1e-4 should a seed change.
N_SE = 4.0


def z_scores(samples: Tensor, exact: Tensor) -> Tensor:
    """Per-component ``(mean − exact) / standard error`` of i.i.d. rows ``samples``."""
    samples = samples.detach().double()
    se = samples.std(dim=0) / samples.shape[0] ** 0.5
    return (samples.mean(dim=0) - exact.detach().double()) / se


def assert_unbiased(samples: Tensor, exact: Tensor, name: str = "estimator") -> None:
    z = z_scores(samples, exact)
    assert z.abs().max() < N_SE, f"{name}: mean estimate off the exact gradient by {z.tolist()} standard errors"


def per_sample_gradients(surrogate: Tensor, expanded_params: Tensor) -> Tensor:
    """Single-sample estimates: row ``i`` of the gradient w.r.t. parameters expanded to one row per sample."""
    return torch.autograd.grad(surrogate.sum(), expanded_params, retain_graph=True)[0]
