"""Unbiasedness of every estimator that claims it, against exact gradients by enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from relax_rl.estimators import (
    BernoulliRelaxation,
    CategoricalRelaxation,
    FactorisedControlVariate,
    GaussianReparam,
    LinearControlVariate,
    MLPControlVariate,
    MultiCategoricalRelaxation,
    RebarControlVariate,
    SumControlVariate,
    Temperature,
    all_action,
    concrete,
    disarm,
    lax,
    rebar,
    reinforce,
    relax,
    relaxed_rebar,
)
from tests.helpers.estimator_problems import BERN_LOGITS, biased_categorical_conditional, f_bern
from tests.helpers.stats import N_SE, assert_unbiased, per_sample_gradients, z_scores

N = 20_000


def random_mlp_cv(relaxation, z_dim: int, seed: int = 1) -> MLPControlVariate:
    """A random, clearly non-zero control variate: unbiasedness must hold for any φ."""
    torch.manual_seed(seed)
    cv = MLPControlVariate(relaxation, z_dim, hidden=(32,), temperature=0.7)
    with torch.no_grad():
        for p in cv.net.parameters():
            p.add_(torch.randn_like(p))  # away from the zero-output initialisation
    return cv


# --- three independent Bernoullis (BERN_LOGITS, f_bern: tests/helpers/estimator_problems.py) -------


def exact_bernoulli_gradient() -> torch.Tensor:
    theta = BERN_LOGITS.clone().requires_grad_()
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    p = torch.sigmoid(theta)
    probs = (states * p + (1 - states) * (1 - p)).prod(-1)
    return torch.autograd.grad((probs * f_bern(states)).sum(), theta)[0]


def unbiased_surrogates(rel, sample, f, f_b: torch.Tensor, baseline: float) -> dict[str, torch.Tensor]:
    """Every estimator that claims unbiasedness, with non-trivial control variates; ``f`` takes relaxed values."""
    mlp_cv = random_mlp_cv(rel, sample.z.shape[-1])
    rebar_cv = RebarControlVariate(f, rel, temperature=0.4, eta=0.8)
    assert f_b.std() > 0.1 and mlp_cv(sample.z).std() > 0.1, "the test problem must not be trivial"
    return {
        "reinforce": reinforce(f_b, sample.log_prob),
        "reinforce+baseline": reinforce(f_b, sample.log_prob, baseline=torch.full_like(f_b, baseline)),
        "rebar": rebar(f_b, sample.log_prob, sample.z, sample.z_tilde, rebar_cv),
        "relax": relax(f_b, sample.log_prob, sample.z, sample.z_tilde, mlp_cv),
        "relaxed_rebar": relaxed_rebar(
            f_b, sample.log_prob, sample.z, sample.z_tilde, SumControlVariate(rebar_cv, mlp_cv)
        ),
    }


@pytest.mark.parametrize("given", [False, True], ids=["sampled", "stored-action"])
def test_bernoulli_estimators_are_unbiased(given: bool) -> None:
    torch.manual_seed(0)
    rel = BernoulliRelaxation()
    logits = BERN_LOGITS.expand(N, 3).clone().requires_grad_()
    sample = rel.sample(logits)
    if given:  # the agents' path: relaxations rebuilt for a b that was drawn earlier
        sample = rel.sample_given(logits, sample.b)
    exact = exact_bernoulli_gradient()
    for name, surrogate in unbiased_surrogates(rel, sample, f_bern, f_bern(sample.b), baseline=0.7).items():
        assert_unbiased(per_sample_gradients(surrogate, logits), exact, name)


def test_concrete_is_biased_on_bernoullis() -> None:
    torch.manual_seed(0)
    rel = BernoulliRelaxation()
    logits = BERN_LOGITS.expand(N, 3).clone().requires_grad_()
    sample = rel.sample(logits)
    grads = per_sample_gradients(concrete(f_bern(rel.relax(sample.z, 0.5))), logits)
    assert z_scores(grads, exact_bernoulli_gradient()).abs().max() > 3 * N_SE


def test_disarm_is_unbiased_on_bernoullis() -> None:
    torch.manual_seed(0)
    rel = BernoulliRelaxation()
    logits = BERN_LOGITS.expand(N, 3).clone().requires_grad_()
    sample = rel.sample(logits)
    b_anti = rel.hard((2 * logits - sample.z).detach())  # the antithetic draw, with 1 − u for u
    surrogate = disarm(f_bern(sample.b), f_bern(b_anti), logits, sample.b, b_anti)
    assert_unbiased(per_sample_gradients(surrogate, logits), exact_bernoulli_gradient(), "disarm")


# --- one 4-way categorical -----------------------------------------------------------------

CAT_LOGITS = torch.tensor([0.2, -1.0, 0.7, 0.0])
CAT_VALUES = torch.tensor([1.0, 3.0, -2.0, 0.5])


def f_cat(x: torch.Tensor) -> torch.Tensor:
    """An arbitrary function of a one-hot (or relaxed one-hot) vector."""
    v = x @ CAT_VALUES
    return v**2 / 4 + torch.sin(v)


def exact_categorical_gradient() -> torch.Tensor:
    theta = CAT_LOGITS.clone().requires_grad_()
    return torch.autograd.grad((torch.softmax(theta, -1) * f_cat(torch.eye(4))).sum(), theta)[0]


def categorical_surrogates(rel: CategoricalRelaxation, sample) -> dict[str, torch.Tensor]:
    return unbiased_surrogates(rel, sample, f_cat, f_cat(F.one_hot(sample.b, 4).float()), baseline=1.5)


@pytest.mark.parametrize("given", [False, True], ids=["sampled", "stored-action"])
def test_categorical_estimators_are_unbiased(given: bool) -> None:
    torch.manual_seed(0)
    rel = CategoricalRelaxation()
    logits = CAT_LOGITS.expand(N, 4).clone().requires_grad_()
    sample = rel.sample(logits)
    if given:
        sample = rel.sample_given(logits, sample.b)
    exact = exact_categorical_gradient()
    for name, surrogate in categorical_surrogates(rel, sample).items():
        assert_unbiased(per_sample_gradients(surrogate, logits), exact, name)


def test_concrete_is_biased_on_a_categorical() -> None:
    torch.manual_seed(0)
    rel = CategoricalRelaxation()
    logits = CAT_LOGITS.expand(N, 4).clone().requires_grad_()
    grads = per_sample_gradients(concrete(f_cat(rel.relax(rel.sample(logits).z, 0.5))), logits)
    assert z_scores(grads, exact_categorical_gradient()).abs().max() > 3 * N_SE


def test_the_biased_conditional_sampler_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unbiasedness check has the power to detect the known trap in the original code."""
    monkeypatch.setattr(CategoricalRelaxation, "conditional_z", biased_categorical_conditional)
    torch.manual_seed(0)
    rel = CategoricalRelaxation()
    logits = CAT_LOGITS.expand(N, 4).clone().requires_grad_()
    sample = rel.sample(logits)
    surrogate = categorical_surrogates(rel, sample)["rebar"]
    z = z_scores(per_sample_gradients(surrogate, logits), exact_categorical_gradient())
    assert z.abs().max() > N_SE


@pytest.mark.parametrize("nvec", [[3, 2], [3, 3]], ids=["mixed sizes", "one size (batched)"])
def test_multicategorical_relax_is_unbiased(nvec: list[int]) -> None:
    torch.manual_seed(0)
    rel, size = MultiCategoricalRelaxation(nvec), sum(nvec)
    theta = torch.tensor([0.5, -0.2, 0.1, 1.0, -1.0, 0.4])[:size]
    values = torch.tensor([1.0, -1.0, 2.0, 0.5, -0.5, 0.8])[:size]

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.cos(2 * x @ values) + x[..., 0] * x[..., 3]

    exact_theta = theta.clone().requires_grad_()
    p1, p2 = torch.softmax(exact_theta[:3], -1), torch.softmax(exact_theta[3:], -1)
    eye1, eye2 = torch.eye(3), torch.eye(nvec[1])
    joint = sum(p1[i] * p2[j] * f(torch.cat([eye1[i], eye2[j]])) for i in range(3) for j in range(nvec[1]))
    exact = torch.autograd.grad(joint, exact_theta)[0]

    logits = theta.expand(N, size).clone().requires_grad_()
    sample = rel.sample(logits)
    assert sample.b.shape == (N, 2) and sample.z.shape == (N, size)
    onehot = torch.cat([F.one_hot(sample.b[:, i], n).float() for i, n in enumerate(nvec)], -1)
    surrogate = relax(f(onehot), sample.log_prob, sample.z, sample.z_tilde, random_mlp_cv(rel, size))
    assert_unbiased(per_sample_gradients(surrogate, logits), exact, "multicategorical relax")


# --- a diagonal Gaussian -------------------------------------------------------------------

MU = torch.tensor([0.3, -0.4])
LOG_STD = torch.tensor([-0.2, 0.1])


def f_gauss(a: torch.Tensor) -> torch.Tensor:
    """Non-quadratic black box with a closed-form Gaussian expectation."""
    return torch.cos(2 * a[..., 0]) * torch.exp(a[..., 1] / 2)


def exact_gaussian_gradient() -> torch.Tensor:
    mu, log_std = MU.clone().requires_grad_(), LOG_STD.clone().requires_grad_()
    s = log_std.exp()
    # E[cos(2a)] = cos(2μ) e^{−2σ²};  E[e^{a/2}] = e^{μ/2 + σ²/8}
    value = torch.cos(2 * mu[0]) * torch.exp(-2 * s[0] ** 2) * torch.exp(mu[1] / 2 + s[1] ** 2 / 8)
    return torch.cat(torch.autograd.grad(value, [mu, log_std]))


def test_gaussian_estimators_are_unbiased() -> None:
    torch.manual_seed(0)
    g = GaussianReparam()
    mu = MU.expand(N, 2).clone().requires_grad_()
    log_std = LOG_STD.expand(N, 2).clone().requires_grad_()
    std = log_std.exp()
    executed = g.sample(mu, std).detach()  # the action the environment saw
    a = g.rebuild(mu, std, g.recover_eps(executed, mu, std))
    assert torch.allclose(a, executed, atol=1e-6)
    log_prob = g.log_prob(mu, std, executed)
    f_b = f_gauss(executed)  # black box: evaluated without gradient
    cv = random_mlp_cv(g, 2)
    exact = exact_gaussian_gradient()
    for name, surrogate in {
        "reinforce": reinforce(f_b, log_prob),
        "lax": lax(f_b, log_prob, a, cv),
        "reparameterisation": f_gauss(a),
    }.items():
        grads = torch.autograd.grad(surrogate.sum(), [mu, log_std], retain_graph=True)
        assert_unbiased(torch.cat(grads, dim=-1), exact, name)


@pytest.mark.parametrize("estimator", ["relax", "lax"])
def test_without_the_phi_path_the_estimate_and_its_theta_gradient_are_the_same(estimator: str) -> None:
    """``phi_path=False`` evaluates c_φ at fewer rows; only the estimate's φ-gradient may differ (it is dropped)."""
    torch.manual_seed(0)
    if estimator == "relax":
        rel = CategoricalRelaxation()
        theta = torch.randn(64, 5).requires_grad_()
        sample = rel.sample(theta)
        cv = random_mlp_cv(rel, 5)
        f_b = sample.b.float().sin()

        def estimate(phi_path: bool) -> torch.Tensor:
            return relax(f_b, sample.log_prob, sample.z, sample.z_tilde, cv, phi_path=phi_path)

        thetas = [theta]
    else:
        g = GaussianReparam()
        mu, log_std = torch.randn(64, 2).requires_grad_(), torch.randn(64, 2).requires_grad_()
        executed = g.sample(mu, log_std.exp()).detach()
        a = g.rebuild(mu, log_std.exp(), g.recover_eps(executed, mu, log_std.exp()))
        cv = random_mlp_cv(g, 2)

        def estimate(phi_path: bool) -> torch.Tensor:
            return lax(f_gauss(executed), g.log_prob(mu, log_std.exp(), executed), a, cv, phi_path=phi_path)

        thetas = [mu, log_std]
    full, lean = estimate(True), estimate(False)
    torch.testing.assert_close(lean, full, rtol=0, atol=1e-6)
    for with_phi, without_phi in zip(
        torch.autograd.grad(full.sum(), thetas, retain_graph=True),
        torch.autograd.grad(lean.sum(), thetas, retain_graph=True),
        strict=True,
    ):
        torch.testing.assert_close(without_phi, with_phi, rtol=1e-5, atol=1e-6)
    phi = list(cv.net.parameters())
    # the coefficient's φ-path is what a variance objective differentiates: the lean estimate lacks it
    assert not torch.allclose(
        torch.autograd.grad(full.sum(), phi, retain_graph=True)[0], torch.autograd.grad(lean.sum(), phi)[0]
    )


def test_lax_at_a_fresh_sample_would_be_caught() -> None:
    """Evaluating c at a fresh action instead of the executed one (the original bug) is biased."""
    torch.manual_seed(0)
    g = GaussianReparam()
    mu = MU.expand(N, 2).clone().requires_grad_()
    log_std = LOG_STD.expand(N, 2).clone().requires_grad_()
    std = log_std.exp()
    executed = g.sample(mu, std).detach()
    fresh = g.sample(mu, std)
    surrogate = lax(f_gauss(executed), g.log_prob(mu, std, executed), fresh, random_mlp_cv(g, 2))
    grads = torch.cat(torch.autograd.grad(surrogate.sum(), [mu, log_std]), dim=-1)
    assert z_scores(grads, exact_gaussian_gradient()).abs().max() > N_SE


def test_estimators_reject_the_wrong_control_variate() -> None:
    rel = BernoulliRelaxation()
    sample = rel.sample(torch.zeros(4, 3, requires_grad=True))
    mlp_cv = MLPControlVariate(rel, 3)
    with pytest.raises(TypeError, match="RebarControlVariate"):
        rebar(f_bern(sample.b), sample.log_prob, sample.z, sample.z_tilde, mlp_cv)
    with pytest.raises(TypeError, match="SumControlVariate"):
        relaxed_rebar(f_bern(sample.b), sample.log_prob, sample.z, sample.z_tilde, mlp_cv)


# --- every control-variate architecture ----------------------------------------------------


def make_cv(arch: str, relaxation, z_dim: int, n_blocks: int, relaxed_input: bool):
    kwargs = {"context_dim": 2, "temperature": 0.7, "relaxed_input": relaxed_input}
    if arch == "mlp":
        return MLPControlVariate(relaxation, z_dim, hidden=(16,), **kwargs)
    if arch == "linear":
        return LinearControlVariate(relaxation, z_dim, hidden=(16,), **kwargs)
    return FactorisedControlVariate(relaxation, z_dim, n_blocks, hidden=(16,), **kwargs)


@pytest.mark.parametrize("relaxed_input", [True, False], ids=["relaxed", "raw-z"])
@pytest.mark.parametrize("arch", ["mlp", "linear", "factorised"])
def test_every_control_variate_architecture_is_unbiased(arch: str, relaxed_input: bool) -> None:
    """RELAX with each architecture, fed a context independent of b, on Bernoullis and a product of categoricals."""
    torch.manual_seed(0)
    context = torch.randn(N, 2)
    cases = [
        (BernoulliRelaxation(), BERN_LOGITS, 3, f_bern, exact_bernoulli_gradient()),
        (
            CategoricalRelaxation(),
            CAT_LOGITS,
            1,
            lambda b: f_cat(F.one_hot(b, 4).float()),
            exact_categorical_gradient(),
        ),
    ]
    for rel, theta, n_blocks, f, exact in cases:
        cv = make_cv(arch, rel, len(theta), n_blocks, relaxed_input)
        with torch.no_grad():
            for p in cv.parameters():
                p.add_(torch.randn_like(p))  # far from the initialisation, far from zero
        logits = theta.expand(N, len(theta)).clone().requires_grad_()
        s = rel.sample(logits)
        assert cv(s.z, context).std() > 0.1, "the control variate must not be trivial"
        surrogate = relax(f(s.b), s.log_prob, s.z, s.z_tilde, cv, context)
        assert_unbiased(per_sample_gradients(surrogate, logits), exact, f"{arch} on {type(rel).__name__}")


def test_linear_control_variate_is_linear_in_the_relaxed_action() -> None:
    rel = BernoulliRelaxation()
    cv = LinearControlVariate(rel, 5, context_dim=3)
    context, z = torch.randn(4, 3), torch.randn(4, 5)
    x = rel.relax(z, cv.temperature())
    out = cv.net(context)
    assert torch.allclose(cv(z, context), (out[:, :5] * x).sum(-1) + out[:, 5])


def test_factorised_control_variate_needs_equal_blocks() -> None:
    with pytest.raises(ValueError, match="equal sub-actions"):
        FactorisedControlVariate(CategoricalRelaxation(), 7, 2)


# --- the all-action form ---------------------------------------------------------------------


def random_affine_q(relaxation, z_dim: int, context_dim: int = 2) -> LinearControlVariate:
    """A random q̂ affine in the hard sample's indicator (a linear head on raw inputs), far from zero."""
    torch.manual_seed(3)
    q_hat = LinearControlVariate(relaxation, z_dim, context_dim=context_dim, hidden=(8,), relaxed_input=False)
    with torch.no_grad():
        for p in q_hat.parameters():
            p.add_(torch.randn_like(p))
    return q_hat


@pytest.mark.parametrize(
    "relaxation, theta, f",
    [
        (BernoulliRelaxation(), BERN_LOGITS, f_bern),
        (CategoricalRelaxation(), CAT_LOGITS, f_cat),
        (MultiCategoricalRelaxation([3, 2]), torch.tensor([0.5, -0.2, 0.1, 1.0, -1.0]), lambda x: torch.cos(x.sum(-1))),
    ],
    ids=["bernoulli", "categorical", "multicategorical"],
)
def test_all_action_is_exactly_unbiased_by_enumeration(relaxation, theta: torch.Tensor, f) -> None:
    """Σ_b p(b) ĝ(b) equals ∇θ E[f] to float precision: the all-action form has no noise but b's."""
    if isinstance(relaxation, BernoulliRelaxation):
        outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=len(theta))))
    elif isinstance(relaxation, MultiCategoricalRelaxation):
        outcomes = torch.tensor(list(itertools.product(*[range(n) for n in relaxation.nvec])))
    else:
        outcomes = torch.arange(len(theta))
    context = torch.tensor([[0.3, -1.2]]).expand(len(outcomes), 2)
    q_hat = random_affine_q(relaxation, len(theta))
    logits = theta.double().expand(len(outcomes), -1).clone().requires_grad_()
    q_hat.double()
    indicators = relaxation.indicator(logits, outcomes)
    f_b = f(indicators.float()).double()
    assert q_hat(indicators, context.double()).std() > 0.1, "q̂ must not be trivial"
    surrogate = all_action(
        f_b,
        relaxation.log_prob(logits, outcomes),
        indicators,
        relaxation.mean_indicator(logits),
        q_hat,
        context.double(),
    )
    per_outcome = per_sample_gradients(surrogate, logits)
    probs = relaxation.log_prob(logits, outcomes).exp().detach()
    estimate = (probs.unsqueeze(-1) * per_outcome).sum(0)

    exact_theta = theta.double().clone().requires_grad_()
    exact_probs = relaxation.log_prob(exact_theta.expand(len(outcomes), -1), outcomes).exp()
    exact = torch.autograd.grad((exact_probs * f_b.detach()).sum(), exact_theta)[0]
    torch.testing.assert_close(estimate, exact, rtol=1e-9, atol=1e-9)
    # ... and the q̂ correction is doing real work: without it the estimate is off.
    without = surrogate - q_hat(relaxation.mean_indicator(logits), context.double())
    biased = (probs.unsqueeze(-1) * per_sample_gradients(without, logits)).sum(0)
    assert (biased - exact).abs().max() > 1e-3


@pytest.mark.parametrize(
    "make_q",
    [lambda rel: random_mlp_cv(rel, 4), lambda rel: LinearControlVariate(rel, 4)],
    ids=["mlp", "linear-on-softmax(z/τ)"],  # a linear head on a relaxation is not affine in z either
)
def test_all_action_refuses_a_control_variate_that_is_not_affine(make_q) -> None:
    rel = CategoricalRelaxation()
    logits, b = CAT_LOGITS.expand(4, 4), torch.arange(4)
    indicator, mean = rel.indicator(logits, b), rel.mean_indicator(logits)
    with pytest.raises(ValueError, match="affine"):
        all_action(torch.zeros(4), rel.log_prob(logits, b), indicator, mean, make_q(rel))


def test_a_bounded_temperature_stays_in_its_bounds_and_can_leave_them() -> None:
    """Driven into a bound for long, τ stays inside; driven back, it moves off again (a clamp would stick)."""
    tau = Temperature(0.5, bounds=(0.1, 2.0))
    assert tau().item() == pytest.approx(0.5)
    optimiser = torch.optim.Adam(tau.parameters(), lr=0.1)
    for direction, bound in ((1.0, 0.1), (-1.0, 2.0)):  # minimise ±τ: into the lower, then the upper bound
        for _ in range(300):
            optimiser.zero_grad()
            (direction * tau()).backward()
            optimiser.step()
            assert 0.1 <= tau().item() <= 2.0
        assert tau().item() == pytest.approx(bound, rel=0.05)
    with pytest.raises(ValueError, match="bounds"):
        Temperature(0.05, bounds=(0.1, 2.0))


# --- the centred and per-sub-action affine control variates -------------------------------------------


def affine_cv(relaxation, theta: torch.Tensor, n_blocks: int, design: str, relaxed_input: bool):
    """A centred or per-sub-action linear head reading [2 free columns, θ detached], far from zero."""
    torch.manual_seed(4)
    cv = LinearControlVariate(
        relaxation,
        len(theta),
        context_dim=2 + len(theta),
        hidden=(8,),
        relaxed_input=relaxed_input,
        params_dim=len(theta),
        centred=True,
        n_blocks=n_blocks,
        per_sub_action=design == "per_sub_action",
    )
    with torch.no_grad():
        for p in cv.parameters():
            p.add_(torch.randn_like(p))
    return cv


def with_params(free: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return torch.cat([free, logits.detach()], dim=-1)


AFFINE_CASES = [
    (BernoulliRelaxation(), BERN_LOGITS, 3, f_bern),
    (CategoricalRelaxation(), CAT_LOGITS, 1, f_cat),
    (MultiCategoricalRelaxation([3, 3]), torch.tensor([0.5, -0.2, 0.1, 1.0, -1.0, 0.3]), 2, None),
]


@pytest.mark.parametrize("design", ["centred", "per_sub_action"])
@pytest.mark.parametrize("case", range(len(AFFINE_CASES)), ids=["bernoulli", "categorical", "multicategorical"])
def test_a_centred_affine_control_variate_averages_to_its_offset(design: str, case: int) -> None:
    """``E_θ[c(ind(b))] = b(context)`` exactly: the slopes multiply ``ind − E[ind]`` and cannot move the state part."""
    relaxation, theta, n_blocks, _ = AFFINE_CASES[case]
    cv = affine_cv(relaxation, theta, n_blocks, design, relaxed_input=False)
    logits = theta.expand(5, -1) + torch.randn(5, len(theta))
    context = with_params(torch.randn(5, 2), logits)
    slopes, offset = cv.slopes_and_offset(context)
    assert slopes.shape == (5, len(theta)) and offset.shape == (5,)
    assert slopes.std() > 0.1, "the slopes must not be trivial"
    torch.testing.assert_close(cv(relaxation.mean_indicator(logits), context), offset)


@pytest.mark.parametrize("design", ["centred", "per_sub_action"])
def test_centred_and_per_sub_action_relax_is_unbiased(design: str) -> None:
    """RELAX with a ĉ that reads θ (detached) through its centre and its per-sub-action heads."""
    torch.manual_seed(0)
    for relaxation, theta, n_blocks, f in AFFINE_CASES[:2]:
        cv = affine_cv(relaxation, theta, n_blocks, design, relaxed_input=True)
        logits = theta.expand(N, len(theta)).clone().requires_grad_()
        context = with_params(torch.randn(N, 2), logits)
        s = relaxation.sample(logits)
        f_b = f(s.b) if isinstance(relaxation, BernoulliRelaxation) else f(F.one_hot(s.b, 4).float())
        assert cv(s.z, context).std() > 0.1, "the control variate must not be trivial"
        surrogate = relax(f_b, s.log_prob, s.z, s.z_tilde, cv, context)
        exact = exact_bernoulli_gradient() if n_blocks == 3 else exact_categorical_gradient()
        assert_unbiased(per_sample_gradients(surrogate, logits), exact, f"{design} on {type(relaxation).__name__}")


@pytest.mark.parametrize("design", ["centred", "per_sub_action"])
def test_centred_and_per_sub_action_all_action_is_exact_by_enumeration(design: str) -> None:
    """The all-action form with these heads is exactly unbiased on a product of categoricals with a reward
    that is not additive over them, where no affine q̂ is right."""
    relaxation, theta, n_blocks, _ = AFFINE_CASES[2]
    outcomes = torch.tensor(list(itertools.product(range(3), range(3))))
    logits = theta.double().expand(len(outcomes), -1).clone().requires_grad_()
    q_hat = affine_cv(relaxation, theta, n_blocks, design, relaxed_input=False).double()
    context = with_params(torch.tensor([[0.3, -1.2]], dtype=torch.double).expand(len(outcomes), 2), logits)
    indicators = relaxation.indicator(logits, outcomes)
    f_b = torch.cos(3.0 * outcomes[:, 0] * outcomes[:, 1]).double()  # an interaction of the two sub-actions
    assert q_hat(indicators, context).std() > 0.1, "q̂ must not be trivial"
    surrogate = all_action(
        f_b, relaxation.log_prob(logits, outcomes), indicators, relaxation.mean_indicator(logits), q_hat, context
    )
    probs = relaxation.log_prob(logits, outcomes).exp().detach()
    estimate = (probs.unsqueeze(-1) * per_sample_gradients(surrogate, logits)).sum(0)
    exact_theta = theta.double().clone().requires_grad_()
    exact_probs = relaxation.log_prob(exact_theta.expand(len(outcomes), -1), outcomes).exp()
    exact = torch.autograd.grad((exact_probs * f_b).sum(), exact_theta)[0]
    torch.testing.assert_close(estimate, exact, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("free", [2, 0], ids=["with-a-projection", "params-only"])
@pytest.mark.parametrize("case", [0, 2], ids=["bits", "blocks-of-3"])
def test_the_per_sub_action_head_is_its_block_network_on_each_sub_actions_own_input(free: int, case: int) -> None:
    """``(w_i, b_i) = g([θ_i, e_i, P_i(context)])`` as the docstring writes it, one sub-action at a time: the
    head computes it without building that input, and must stay the same function, gradients included."""
    relaxation, theta, n_blocks, _ = AFFINE_CASES[case]
    torch.manual_seed(1)
    cv = LinearControlVariate(
        relaxation, len(theta), free + len(theta), (8,), params_dim=len(theta), n_blocks=n_blocks, per_sub_action=True
    ).double()
    with torch.no_grad():
        for p in cv.parameters():
            p.add_(torch.randn_like(p))
    context = torch.randn(6, free + len(theta), dtype=torch.double)
    params = context[:, free:].unflatten(1, (n_blocks, -1))
    by_sub_action = []
    for i in range(n_blocks):
        parts = [params[:, i], cv.embedding.weight[i].expand(6, -1)]
        if free:
            parts.append(cv.projection(context[:, :free]).unflatten(1, (n_blocks, -1))[:, i])
        by_sub_action.append(cv.block_net(torch.cat(parts, dim=-1)))
    out = torch.stack(by_sub_action, dim=1)
    expected = (out[..., :-1].flatten(1), out[..., -1].sum(-1) + cv.net(context).squeeze(-1))
    slopes, offset = cv.slopes_and_offset(context)
    torch.testing.assert_close((slopes, offset), expected)
    weights = [p for name, p in cv.named_parameters() if not name.startswith("temperature")]  # τ: not read here
    grads = torch.autograd.grad((slopes.sin().sum() + offset.cos().sum()), weights)
    expected_grads = torch.autograd.grad((expected[0].sin().sum() + expected[1].cos().sum()), weights)
    torch.testing.assert_close(grads, expected_grads)


def test_centred_and_per_sub_action_heads_name_what_they_need() -> None:
    with pytest.raises(ValueError, match="params_dim > 0"):
        LinearControlVariate(BernoulliRelaxation(), 4, context_dim=4, centred=True)
    with pytest.raises(ValueError, match="params_dim > 0"):
        LinearControlVariate(GaussianReparam(), 4, context_dim=8, params_dim=8, centred=True)
    with pytest.raises(ValueError, match="equal sub-actions"):
        LinearControlVariate(BernoulliRelaxation(), 4, context_dim=4, params_dim=4, n_blocks=3, per_sub_action=True)
    with pytest.raises(ValueError, match="larger than the context"):
        LinearControlVariate(BernoulliRelaxation(), 4, context_dim=2, params_dim=4, centred=True)
