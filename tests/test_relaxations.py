"""The conditional samplers z̃ | b have the law of z restricted to H(z) = b."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp, kstest

from relax_rl.estimators import (
    BernoulliRelaxation,
    CategoricalRelaxation,
    GaussianReparam,
    MultiCategoricalRelaxation,
)
from tests.helpers.estimator_problems import biased_categorical_conditional

N = 40_000
#: KS p-values below this reject "same law". With fixed seeds the outcome is deterministic.
ALPHA = 1e-3


@pytest.mark.parametrize("logit", [-1.3, 0.0, 0.8])
@pytest.mark.parametrize("b_value", [0.0, 1.0])
def test_bernoulli_conditional_matches_restricted_law(logit: float, b_value: float) -> None:
    torch.manual_seed(0)
    rel = BernoulliRelaxation()
    z = rel.sample_z(torch.full((N, 1), logit))
    restricted = z[rel.hard(z) == b_value]
    z_tilde = rel.conditional_z(torch.full((N, 1), logit), torch.full((N, 1), b_value))
    assert (rel.hard(z_tilde) == b_value).all()
    assert ks_2samp(restricted.numpy(), z_tilde.flatten().numpy()).pvalue > ALPHA


def truncated_logistic_cdf(logit: float, b_value: float) -> Callable[[np.ndarray], np.ndarray]:
    """The CDF of ``z ~ Logistic(ℓ, 1)`` given ``H(z) = b``, in float64 (the reference law)."""
    p = 1.0 / (1.0 + np.exp(-logit))

    def cdf(z: np.ndarray) -> np.ndarray:
        f = 1.0 / (1.0 + np.exp(-(np.asarray(z, dtype=np.float64) - logit)))
        if b_value > 0.5:  # z > 0: (F(z) − (1 − p)) / p
            return np.clip((f - (1.0 - p)) / p, 0.0, 1.0)
        return np.clip(f / (1.0 - p), 0.0, 1.0)  # z < 0: F(z) / (1 − p)

    return cdf


@pytest.mark.parametrize("logit", [-16.0, -12.0, 12.0, 16.0])
@pytest.mark.parametrize("b_value", [0.0, 1.0])
def test_bernoulli_conditional_keeps_its_law_in_float32_at_saturated_logits(logit: float, b_value: float) -> None:
    """At |ℓ| ≥ 12, forming v' = (1 − p) + v p in float32 gave z̃ the wrong sign (all of them at ±16)."""
    torch.manual_seed(0)
    z_tilde = BernoulliRelaxation().conditional_z(
        torch.full((N, 1), logit, dtype=torch.float32), torch.full((N, 1), b_value)
    )
    assert z_tilde.dtype == torch.float32
    assert torch.isfinite(z_tilde).all()
    assert (BernoulliRelaxation().hard(z_tilde) == b_value).all()
    sample = z_tilde.flatten().double().numpy()
    assert kstest(sample, truncated_logistic_cdf(logit, b_value)).pvalue > ALPHA


LOGITS = torch.tensor([0.4, -0.8, 1.1, 0.0])


def restricted_and_conditional(conditional, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    rel = CategoricalRelaxation()
    z = rel.sample_z(LOGITS.expand(4 * N, 4))
    restricted = z[rel.hard(z) == b]
    z_tilde = conditional(rel, LOGITS.expand(N, 4), torch.full((N,), b))
    return restricted, z_tilde


@pytest.mark.parametrize("b", range(4))
def test_categorical_conditional_matches_restricted_law(b: int) -> None:
    torch.manual_seed(0)
    restricted, z_tilde = restricted_and_conditional(CategoricalRelaxation.conditional_z, b)
    assert (z_tilde.argmax(-1) == b).all()
    for i in range(4):
        assert ks_2samp(restricted[:, i].numpy(), z_tilde[:, i].numpy()).pvalue > ALPHA, f"coordinate {i}"


def test_the_biased_categorical_conditional_fails_the_same_check() -> None:
    """The original code's z̃_b = log p_b − log(−log v_b) is rejected: this test has power."""
    torch.manual_seed(0)
    b = 1  # p_b far from 1, so the shift log p_b is large
    restricted, z_tilde = restricted_and_conditional(biased_categorical_conditional, b)
    pvalues = [ks_2samp(restricted[:, i].numpy(), z_tilde[:, i].numpy()).pvalue for i in range(4)]
    assert min(pvalues) < 1e-12


def test_stored_action_relaxation_has_the_joint_law_of_a_fresh_draw() -> None:
    """sample_given(θ, b) with b ~ p(b) gives (b, z) distributed as an unconditional draw."""
    torch.manual_seed(0)
    rel = CategoricalRelaxation()
    logits = LOGITS.expand(N, 4)
    fresh = rel.sample(logits)
    rebuilt = rel.sample_given(logits, rel.hard(rel.sample_z(logits)))
    for i in range(4):
        assert ks_2samp(fresh.z[:, i].numpy(), rebuilt.z[:, i].detach().numpy()).pvalue > ALPHA
    assert (rel.hard(rebuilt.z) == rebuilt.b).all()


@pytest.mark.parametrize("nvec", [[3, 2, 4], [3, 3, 3]], ids=["mixed sizes", "one size (batched)"])
def test_multicategorical_shapes_and_log_prob(nvec: list[int]) -> None:
    rel = MultiCategoricalRelaxation(nvec)
    logits = torch.randn(5, sum(nvec))
    sample = rel.sample(logits)
    assert sample.b.shape == (5, 3) and sample.z.shape == (5, sum(nvec)) and sample.z_tilde.shape == (5, sum(nvec))
    assert (rel.hard(sample.z_tilde) == sample.b).all()
    expected = sum(
        torch.log_softmax(block, -1).gather(-1, sample.b[:, i : i + 1]).squeeze(-1)
        for i, block in enumerate(torch.split(logits, nvec, -1))
    )
    assert torch.allclose(sample.log_prob, expected)
    relaxed = rel.relax(sample.z, 0.5)
    assert torch.allclose(torch.stack([s.sum(-1) for s in torch.split(relaxed, nvec, -1)], -1), torch.ones(5, 3))


def test_multicategorical_of_one_size_is_the_per_block_categorical() -> None:
    """Equal blocks go through one batched categorical: every value is the per-block one, and the
    sampled z, z̃ | b have the per-block law (the noise is drawn in another order, so not the same draws)."""
    torch.manual_seed(0)
    rel, cat = MultiCategoricalRelaxation([4, 4]), CategoricalRelaxation()
    logits = torch.tensor([0.3, -1.0, 0.5, 2.0, -0.4, 0.0, 1.5, -2.0]).expand(N, 8)
    blocks = torch.split(logits, 4, -1)
    b = torch.stack([cat.hard(cat.sample_z(block)) for block in blocks], -1)
    per_block = {
        "location": torch.cat([cat.location(p) for p in blocks], -1),
        "score": torch.cat([cat.score(p, b[:, i]) for i, p in enumerate(blocks)], -1),
        "indicator": torch.cat([cat.indicator(p, b[:, i]) for i, p in enumerate(blocks)], -1),
        "mean_indicator": torch.cat([cat.mean_indicator(p) for p in blocks], -1),
        "relax": torch.cat([cat.relax(p, 0.7) for p in blocks], -1),
        "log_prob": sum(cat.log_prob(p, b[:, i]) for i, p in enumerate(blocks)),
    }
    batched = {
        "location": rel.location(logits),
        "score": rel.score(logits, b),
        "indicator": rel.indicator(logits, b),
        "mean_indicator": rel.mean_indicator(logits),
        "relax": rel.relax(logits, 0.7),
        "log_prob": rel.log_prob(logits, b),
    }
    for name, expected in per_block.items():
        assert torch.allclose(batched[name], expected, atol=1e-6), name
    assert (rel.hard(rel.location(logits)) == torch.stack([cat.hard(p) for p in blocks], -1)).all()
    z_tilde, z = rel.conditional_z(logits, b), rel.sample_z(logits)
    assert (rel.hard(z_tilde) == b).all()
    reference_tilde = torch.cat([cat.conditional_z(p, b[:, i]) for i, p in enumerate(blocks)], -1)
    reference_z = torch.cat([cat.sample_z(p) for p in blocks], -1)
    for j in range(8):
        assert ks_2samp(z_tilde[:, j].numpy(), reference_tilde[:, j].numpy()).pvalue > ALPHA, j
        assert ks_2samp(z[:, j].numpy(), reference_z[:, j].numpy()).pvalue > ALPHA, j


def test_multicategorical_rejects_empty_nvec() -> None:
    with pytest.raises(ValueError, match="nvec"):
        MultiCategoricalRelaxation([])


def test_relaxed_values_are_in_range() -> None:
    torch.manual_seed(0)
    z = BernoulliRelaxation().sample_z(torch.randn(100, 5))
    relaxed = BernoulliRelaxation().relax(z, 0.3)
    assert ((relaxed >= 0) & (relaxed <= 1)).all()
    simplex = CategoricalRelaxation().relax(CategoricalRelaxation().sample_z(torch.randn(100, 5)), 0.3)
    assert torch.allclose(simplex.sum(-1), torch.ones(100))


def test_gaussian_eps_round_trip_carries_the_reparameterised_gradient() -> None:
    g = GaussianReparam()
    mean = torch.randn(8, 3, requires_grad=True)
    std = torch.rand(8, 3) + 0.1
    action = g.sample(mean, std).detach()
    eps = g.recover_eps(action, mean, std)
    assert not eps.requires_grad
    rebuilt = g.rebuild(mean, std, eps)
    assert torch.allclose(rebuilt, action, atol=1e-6)
    (grad,) = torch.autograd.grad(rebuilt.sum(), mean)
    assert torch.allclose(grad, torch.ones_like(grad))


@pytest.mark.parametrize("rel", [BernoulliRelaxation(), CategoricalRelaxation()], ids=["bernoulli", "categorical"])
def test_extreme_logits_stay_finite(rel) -> None:
    logits = torch.tensor([[30.0, -30.0, 0.0], [-40.0, 25.0, 1.0]], requires_grad=True)
    sample = rel.sample(logits)
    assert torch.isfinite(sample.z).all() and torch.isfinite(sample.z_tilde).all()
    (grad,) = torch.autograd.grad((sample.z_tilde.sum() + sample.log_prob.sum()), logits)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize(
    "rel, params, b",
    [
        (BernoulliRelaxation(), torch.randn(6, 3), torch.randint(0, 2, (6, 3)).float()),
        (CategoricalRelaxation(), torch.randn(6, 4), torch.randint(0, 4, (6,))),
        (
            MultiCategoricalRelaxation([3, 2]),
            torch.randn(6, 5),
            torch.stack([torch.randint(0, 3, (6,)), torch.randint(0, 2, (6,))], -1),
        ),
        (MultiCategoricalRelaxation([3, 3]), torch.randn(6, 6), torch.randint(0, 3, (6, 2))),
    ],
    ids=["bernoulli", "categorical", "multicategorical", "multicategorical of one size"],
)
def test_closed_form_score_matches_autograd(rel, params, b) -> None:
    params = params.requires_grad_()
    (autograd_score,) = torch.autograd.grad(rel.log_prob(params, b).sum(), params)
    assert torch.allclose(rel.score(params.detach(), b), autograd_score, atol=1e-6)


def test_gaussian_closed_form_score_matches_autograd() -> None:
    g = GaussianReparam()
    mean, log_std = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3, requires_grad=True)
    action = torch.randn(6, 3)
    autograd_score = torch.cat(torch.autograd.grad(g.log_prob(mean, log_std.exp(), action).sum(), [mean, log_std]), -1)
    assert torch.allclose(g.score(mean.detach(), log_std.detach().exp(), action), autograd_score, atol=1e-5)
