"""What one RELAX-A2C update logs: SB3's A2C keys, the control variate's loss and temperature, and the gradient
variance beside A2C's, copied to the host together so that the logs wait for the device once per update."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch as th
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import RolloutBufferSamples

from relax_rl.agents.cv_objective import CvBatch

if TYPE_CHECKING:  # for annotations only
    from relax_rl.agents.policies import RelaxActorCriticPolicy


def log_update(
    logger: Logger,
    policy: RelaxActorCriticPolicy,
    rollout: RolloutBufferSamples,
    batch: CvBatch,
    a2c_advantages: th.Tensor,
    losses: dict[str, th.Tensor | None],
    cv_learning_rate: float,
) -> None:
    """Records the update's scalars under ``train/``; ``losses`` maps a name to its loss, None if it did not
    train (``cv_loss``: A2C's estimator, or a skipped update), and ``cv_learning_rate`` is φ's.

    ``policy_grad_var`` is the trace of the covariance of the per-step estimates ``ĝ_t^ℓ`` across the rollout:
    a cheap proxy for the policy gradient's variance; ``policy_grad_var_a2c`` is the same for A2C's estimate
    ``Â_t ∇ log π(a_t|s_t)`` on the same rollout, with ``a2c_advantages`` (``batch``'s are the estimator's ``f_t``,
    which are not A2C's where ``ĉ`` is the whole baseline)."""
    estimator, c_hat = policy.estimator, policy.control_variate
    params, actions, _, _, g_params = batch
    g_a2c = a2c_advantages.detach().unsqueeze(-1) * estimator.score(params.detach(), actions)
    scalars = {name: loss for name, loss in losses.items() if loss is not None}
    scalars |= {
        "policy_grad_var": g_params.detach().var(dim=0).sum(),
        "policy_grad_var_a2c": g_a2c.var(dim=0).sum(),
        "var_returns": rollout.returns.var(correction=0),  # for SB3's explained_variance, as numpy computes it
        "var_residual": (rollout.returns - rollout.old_values).var(correction=0),
    }
    if "cv_loss" in scalars and c_hat.relaxation.has_temperature and c_hat.relaxed_input:
        scalars["temperature"] = c_hat.temperature()
    scalars |= estimator.kind.logged(params)  # a Gaussian's σ
    host = th.stack([v.detach().float().reshape(()) for v in scalars.values()]).tolist()
    logged = dict(zip(scalars, host, strict=True))
    var_returns, var_residual = logged.pop("var_returns"), logged.pop("var_residual")
    logger.record("train/explained_variance", math.nan if var_returns == 0 else 1 - var_residual / var_returns)
    for key, value in logged.items():
        logger.record(f"train/{key}", value)
    if "cv_loss" in logged:
        logger.record("train/cv_learning_rate", cv_learning_rate)
