"""Gradient estimators as surrogate losses (docs/design.md §1 and §3).

Each function returns a per-sample surrogate of shape ``(batch,)``. Its
gradient with respect to the distribution parameters ``θ`` is the
single-sample estimate ``ĝ``, so ``surrogate.mean()`` differentiates to the
batch-mean estimate. For the estimators with a control variate, ``ĝ`` stays a
differentiable function of ``φ``, which :func:`variance_loss` needs.

Signs: the surrogate estimates ``∇θ E[f]``. To *minimise* ``E[f]`` descend the
surrogate; to maximise a reward, descend its negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from relax_rl.estimators.control_variates import ControlVariate, RebarControlVariate, SumControlVariate


def reinforce(f_b: Tensor, log_prob: Tensor, baseline: Tensor | None = None) -> Tensor:
    """REINFORCE: ``[f(b) − baseline] ∇θ log p(b | θ)``.

    ``baseline`` must not depend on ``b``; it is detached here so it never
    carries gradient into ``θ``.
    """
    coef = f_b.detach()
    if baseline is not None:
        coef = coef - baseline.detach()
    return coef * log_prob


def concrete(f_relaxed: Tensor) -> Tensor:
    """Concrete / Gumbel-softmax: ``∇θ f(σ_λ(z))``. Biased for any positive temperature."""
    return f_relaxed


def relax(
    f_b: Tensor,
    log_prob: Tensor,
    z: Tensor,
    z_tilde: Tensor,
    control_variate: ControlVariate,
    context: Tensor | None = None,
    *,
    phi_path: bool = True,
) -> Tensor:
    """RELAX: ``[f(b) − c_φ(z̃)] ∇θ log p(b) + ∇θ c_φ(z) − ∇θ c_φ(z̃)``.

    The coefficient evaluates ``c_φ`` at a detached ``z̃``: that cuts the
    ``θ``-path but keeps the ``φ``-path, so the estimate is differentiable in ``φ``.
    Unbiased for any ``c_φ`` of ``z`` (and a context independent of ``b``).

    ``phi_path=False`` is for callers that never differentiate the estimate in ``φ``: the coefficient
    then reuses ``c_φ(z̃)``'s value, detached, so ``c_φ`` runs on 2 batches of rows instead of 3, and the
    estimate and its ``θ``-gradient are the same.
    """
    if not phi_path:
        c_z, c_z_tilde = evaluate_rows(control_variate, [z, z_tilde], context)
        return (f_b.detach() - c_z_tilde.detach()) * log_prob + c_z - c_z_tilde
    c_z_tilde_cut, c_z, c_z_tilde = evaluate_rows(control_variate, [z_tilde.detach(), z, z_tilde], context)
    return (f_b.detach() - c_z_tilde_cut) * log_prob + c_z - c_z_tilde


def evaluate_rows(control_variate: ControlVariate, zs: Sequence[Tensor], context: Tensor | None) -> tuple[Tensor, ...]:
    """``c_φ`` at several batches of ``z`` in one forward pass.

    Control variates act row by row, so stacking the batches gives the same values and
    gradients as separate calls, at a fraction of the per-call overhead that dominates
    small networks.
    """
    if context is not None:
        context = context.repeat(len(zs), *([1] * (context.dim() - 1)))
    return control_variate(torch.cat(list(zs)), context).split(zs[0].shape[0])


def all_action(
    f_b: Tensor,
    log_prob: Tensor,
    b_indicator: Tensor,
    mean_indicator: Tensor,
    control_variate: ControlVariate,
    context: Tensor | None = None,
) -> Tensor:
    """All-action form: ``[f(b) − q̂(b)] ∇θ log p(b) + ∇θ E_{b'~p}[q̂(b')]`` (docs/design.md §4b).

    ``q̂`` reads the hard sample's indicator vector (one-hot blocks, or the bits), and must be affine
    in it: then ``E[q̂(b)] = q̂(E[b])`` is exact and cheap, ``q̂`` at ``mean_indicator`` (the
    probabilities, carrying ``θ``). For a product of independent sub-variables an affine ``q̂`` is
    additive over them, so each one's score term gets the others' ``q̂`` as its baseline. Unbiased
    for any such ``q̂``, with no relaxation noise.
    """
    if not control_variate.affine:
        raise ValueError("the all-action estimator needs a control variate that is affine in its input")
    q_b, q_mean = evaluate_rows(control_variate, [b_indicator.detach(), mean_indicator], context)
    return (f_b.detach() - q_b) * log_prob + q_mean


def rebar(
    f_b: Tensor,
    log_prob: Tensor,
    z: Tensor,
    z_tilde: Tensor,
    control_variate: RebarControlVariate,
    context: Tensor | None = None,
) -> Tensor:
    """REBAR: RELAX with the fixed-form control variate ``η f(σ_λ(z))``."""
    if not isinstance(control_variate, RebarControlVariate):
        raise TypeError(f"REBAR needs a RebarControlVariate, got {type(control_variate).__name__}")
    return relax(f_b, log_prob, z, z_tilde, control_variate, context)


def relaxed_rebar(
    f_b: Tensor,
    log_prob: Tensor,
    z: Tensor,
    z_tilde: Tensor,
    control_variate: SumControlVariate,
    context: Tensor | None = None,
) -> Tensor:
    """relaxed-REBAR: RELAX with ``c(z) = η f(σ_λ(z)) + r_φ(z)``."""
    terms = getattr(control_variate, "terms", ())
    if not isinstance(control_variate, SumControlVariate) or not any(isinstance(t, RebarControlVariate) for t in terms):
        raise TypeError("relaxed-REBAR needs a SumControlVariate that includes a RebarControlVariate")
    return relax(f_b, log_prob, z, z_tilde, control_variate, context)


def lax(
    f_b: Tensor,
    log_prob: Tensor,
    b: Tensor,
    control_variate: ControlVariate,
    context: Tensor | None = None,
    *,
    phi_path: bool = True,
) -> Tensor:
    """LAX for a continuous ``b`` reparameterised in ``θ``: ``[f(b) − c_φ(b)] ∇θ log p(b) + ∇θ c_φ(b)``.

    ``b`` must be the sample whose ``f`` was observed, rebuilt as ``μ_θ + σ_θ ε``. ``phi_path=False``, for
    callers that never differentiate the estimate in ``φ``: ``c_φ`` runs once, its value detached in the
    coefficient; the same estimate and ``θ``-gradient.
    """
    c_b = control_variate(b, context)
    cut = control_variate(b.detach(), context) if phi_path else c_b.detach()
    return (f_b.detach() - cut) * log_prob + c_b


def variance_loss(surrogate: Tensor, params: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
    """The gradient estimate ``ĝ`` for ``params`` and the variance objective ``‖ĝ‖²``.

    ``ĝ`` is built with ``create_graph=True`` so ``‖ĝ‖²`` can be differentiated
    with respect to ``φ``. Because ``ĝ`` is unbiased for every ``φ``,
    ``∂/∂φ E‖ĝ‖² = ∂/∂φ Var(ĝ)``. ``surrogate`` may be per-sample; it is averaged.
    """
    grads = torch.autograd.grad(surrogate.mean(), list(params), create_graph=True)
    return list(grads), sum(g.pow(2).sum() for g in grads)


def apply_gradients(params: Iterable[Tensor], grads: Iterable[Tensor]) -> None:
    """Store detached gradients in ``.grad`` (accumulating), for a following optimiser step."""
    for p, g in zip(params, grads, strict=True):
        g = g.detach()
        p.grad = g.clone() if p.grad is None else p.grad + g


def disarm(f_b: Tensor, f_anti: Tensor, logits: Tensor, b: Tensor, b_anti: Tensor) -> Tensor:
    """DisARM (Dong, Mnih & Tucker, NeurIPS 2020) for independent Bernoullis, as a surrogate.

    ``b = H(ℓ + ε)`` and the antithetic ``b̃ = H(ℓ − ε)`` share logistic noise ``ε`` (uniforms
    ``u`` and ``1 − u``). The gradient of the returned row in ``ℓ`` is DisARM's estimate of
    ``∇_ℓ E[f(b)]``:

        ½ (f(b) − f(b̃)) · (−1)^b̃ · 1[b ≠ b̃] · σ(|ℓ|)

    (arXiv:2006.10680; the same factor as ``disarm_factor`` in the authors' code,
    google-research/google-research ``disarm/binary/networks.py``). It is exactly zero for
    the units where ``b = b̃``. Each estimate costs a second evaluation of ``f``.
    """
    sign = 1 - 2 * b_anti  # (−1)^b̃ for b̃ ∈ {0, 1}
    weight = 0.5 * (f_b - f_anti).unsqueeze(-1) * sign * (b != b_anti) * torch.sigmoid(logits.abs())
    return (weight.detach() * logits).sum(-1)
