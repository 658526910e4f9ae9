"""Training φ on ‖ĝ‖² lowers the variance of the RELAX estimator."""

from __future__ import annotations

import torch

from relax_rl.estimators import BernoulliRelaxation, MLPControlVariate, relax, variance_loss
from tests.helpers.estimator_problems import BERN_LOGITS, f_bern
from tests.helpers.stats import per_sample_gradients


def estimator_variance(cv: MLPControlVariate, n: int = 20_000, seed: int = 123) -> float:
    """Total variance (trace of the covariance) of single-sample RELAX estimates, on fixed draws."""
    torch.manual_seed(seed)
    rel = BernoulliRelaxation()
    logits = BERN_LOGITS.expand(n, 3).clone().requires_grad_()
    s = rel.sample(logits)
    grads = per_sample_gradients(relax(f_bern(s.b), s.log_prob, s.z, s.z_tilde, cv), logits)
    return grads.var(dim=0).sum().item()


def test_optimising_phi_lowers_the_variance() -> None:
    torch.manual_seed(0)
    rel = BernoulliRelaxation()
    cv = MLPControlVariate(rel, 3, hidden=(32,), temperature=0.5)
    before = estimator_variance(cv)
    temperature_before = cv.temperature().item()
    theta = BERN_LOGITS.clone().requires_grad_()
    opt = torch.optim.Adam(cv.parameters(), lr=1e-2)
    for _ in range(300):
        s = rel.sample(theta.expand(256, 3))
        _, var = variance_loss(relax(f_bern(s.b), s.log_prob, s.z, s.z_tilde, cv), [theta])
        opt.zero_grad()
        var.backward(inputs=list(cv.parameters()))
        opt.step()
    after = estimator_variance(cv)
    assert after < 0.7 * before, f"variance {before:.4f} -> {after:.4f}"
    assert cv.temperature().item() != temperature_before, "the temperature is learnable and must move"
