"""φ's objective (docs/design.md §4): what one step of the control variate ``ĉ_φ`` trains on, and its loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch as th
import torch.nn.functional as F

if TYPE_CHECKING:  # for annotations only: the policy module does not import this one
    from relax_rl.agents.policies import RelaxActorCriticPolicy


class CvBatch(NamedTuple):
    """What one step of φ trains on, one row per step."""

    params: th.Tensor
    """The distribution parameters (logits, or ``[μ, log σ]``), connected to θ where an objective reads it."""
    actions: th.Tensor
    advantages: th.Tensor
    """What ``V`` leaves for ``ĉ`` to explain."""
    context: th.Tensor
    """``ĉ``'s input besides the action, fixed before the action was drawn."""
    g_params: th.Tensor | None = None
    """``ĝ^ℓ``, differentiable in φ; None: the variance objective draws it afresh at the current φ."""


class CvObjective(NamedTuple):
    """``cv_objective``, parsed once: a regression of ``ĉ`` on the advantage, a variance term, or both."""

    regression: bool
    variance: str | None
    """``"logits"``, ``"params"`` or None."""

    @classmethod
    def parse(cls, name: str) -> CvObjective:
        return cls(name.startswith("regression"), name.removeprefix("regression").removeprefix("+") or None)

    def backward(self, batch: CvBatch, policy: RelaxActorCriticPolicy) -> th.Tensor:
        """Accumulates the objective's gradient in φ on ``batch``; returns the objective's value.

        The regression leaves τ alone: fitting values pulls τ to 0, where the relaxation's gradients, and so
        the variance, blow up.
        """
        c_hat = policy.control_variate
        g_params = batch.g_params
        if self.variance is not None and g_params is None:  # ĝ at the current φ, with fresh z, z̃ if discrete
            _, g_params = policy.estimator.estimate(batch.params, batch.actions, batch.advantages, c_hat, batch.context)
        losses = []
        if self.regression:
            fitted = policy.estimator.control_variate_at_action(batch.params, batch.actions, c_hat, batch.context)
            regression = F.mse_loss(fitted, batch.advantages.detach())
            tau = {id(p) for p in c_hat.temperature.parameters()}
            retain = self.variance is not None
            regression.backward(inputs=[p for p in c_hat.parameters() if id(p) not in tau], retain_graph=retain)
            losses.append(regression)
        if self.variance is not None:
            variance = self._variance(g_params, batch.params, policy)
            variance.backward(inputs=list(c_hat.parameters()), retain_graph=True)
            losses.append(variance)
        return sum(loss.detach() for loss in losses)

    def _variance(self, g_params: th.Tensor, params: th.Tensor, policy: RelaxActorCriticPolicy) -> th.Tensor:
        """A single-sample estimate of the estimator's variance, up to a constant free of φ."""
        if self.variance == "logits":  # mean_t ‖ĝ_t^ℓ‖² over each step's distribution parameters
            return g_params.pow(2).sum(-1).mean()
        # ‖Σ_t ĝ_t‖² over the policy parameters: ĝ_θ = (∂params/∂θ)ᵀ ĝ^ℓ, by double backprop.
        theta = policy.actor_parameters()
        g_theta = th.autograd.grad(params, theta, g_params / len(params), create_graph=True, allow_unused=True)
        return sum(g.pow(2).sum() for g in g_theta if g is not None)
