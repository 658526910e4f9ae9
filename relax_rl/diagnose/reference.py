"""How well the critics fit, against an environment's exact values (:mod:`relax_rl.envs.reference`).

On an environment whose reward is known in closed form (target matching), the learned state value ``V̂``
is compared with ``V*`` and the learned slopes of an affine control variate with the true per-sub-action
effects ``w*``. :class:`CriticFitCallback` logs these during training.
"""

from __future__ import annotations

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from torch import Tensor

from relax_rl.agents.buffers import whole_rollout
from relax_rl.agents.pg_estimators import estimator_for
from relax_rl.agents.policies import params_values_features
from relax_rl.diagnose.estimates import cv_is_the_whole_baseline
from relax_rl.diagnose.report import random_state_kept
from relax_rl.envs.reference import AffineReward, exact_reference


def _block_centred(slopes: Tensor, probs: Tensor, block: int) -> Tensor:
    """One-hot blocks' slopes are defined up to a constant per block (the block sums to 1): centre each on
    its mean under the policy. Bits (blocks of one) are left as they are."""
    if block == 1:
        return slopes
    s, p = slopes.unflatten(-1, (-1, block)), probs.unflatten(-1, (-1, block))
    return (s - (s * p).sum(-1, keepdim=True)).flatten(-2)


def r_squared(learned: Tensor, true: Tensor, weights: Tensor | None = None) -> float:
    """``1 − Σ v (ŵ − w*)² / Σ v (w* − w̄*)²`` over every row and entry, with weights ``v`` (1 if None)."""
    v = th.ones_like(true) if weights is None else weights
    mean = (v * true).sum() / v.sum()
    total = (v * (true - mean).pow(2)).sum()
    return float(1 - (v * (learned - true).pow(2)).sum() / total) if total > 0 else float("nan")


@th.no_grad()
def critic_fit(model: BaseAlgorithm, reference: AffineReward, obs: Tensor, horizon: Tensor) -> dict[str, float]:
    """The fit of the model's critics at observations ``obs`` (rows with ``horizon`` steps to the bootstrap).

    - ``v_rmse``, ``v_mean_error``: ``V̂ − V*`` (one-step episodes only);
    - ``state_part_rmse``: ``V̂ + E_π[ĉ] − V*``, the baseline the control variate's estimator subtracts on
      average (one-step episodes, with a control variate; ``E_π[ĉ] − V*`` where ĉ is the whole baseline);
    - ``slope_r2``, ``slope_r2_weighted``: R² of an affine control variate's slopes against ``w*``, plainly and
      weighted by each entry's variance under the policy, ``p(1 − p)``: the entries still being decided.

    RELAX's ``E_π[ĉ]`` is estimated from fresh draws of ``z``, made on a forked random state: measuring the fit
    leaves the caller's (training's) random stream as it was.
    """
    policy = model.policy
    params, values, features = params_values_features(policy, obs)
    values = values.flatten()
    estimator = getattr(policy, "estimator", None) or estimator_for(model.action_space)
    probs = estimator.relaxation.mean_indicator(params)
    true_slopes, _ = reference.coefficients(obs)
    fit: dict[str, float] = {}
    context = policy.cv_context(features, params, horizon) if estimator.uses_control_variate else None
    if reference.one_step:
        error = values - reference.state_values(obs, probs)
        fit["v_rmse"], fit["v_mean_error"] = error.pow(2).mean().sqrt().item(), error.mean().item()
        if context is not None:
            with random_state_kept(model):
                state_part = estimator.mean_control_variate(params, policy.control_variate, context)
            state_part = state_part if cv_is_the_whole_baseline(model) else values + state_part
            fit["state_part_rmse"] = (state_part - reference.state_values(obs, probs)).pow(2).mean().sqrt().item()
    slopes_of = getattr(policy.control_variate, "slopes_and_offset", None)
    if context is not None and slopes_of is not None:
        block = probs.shape[-1] // estimator.kind.n_sub_actions
        learned = _block_centred(slopes_of(context)[0], probs, block)
        true = _block_centred(true_slopes, probs, block)
        fit["slope_r2"] = r_squared(learned, true)
        fit["slope_r2_weighted"] = r_squared(learned, true, probs * (1 - probs))
    return fit


class CriticFitCallback(BaseCallback):
    """Logs :func:`critic_fit` on each rollout's rows every ``interval`` timesteps, as ``reference/<key>``,
    for a model trained on an environment with an exact reference (nothing otherwise)."""

    def __init__(self, interval: int = 10_000):
        super().__init__()
        self.interval, self._next = interval, interval
        self.reference: AffineReward | None = None

    def _init_callback(self) -> None:
        self.reference = exact_reference(self.training_env)
        self._next = (self.num_timesteps // self.interval + 1) * self.interval

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.reference is None or self.num_timesteps < self._next:
            return
        self._next = (self.num_timesteps // self.interval + 1) * self.interval
        rollout, horizon = whole_rollout(self.model.rollout_buffer)
        for key, value in critic_fit(self.model, self.reference, rollout.observations, horizon).items():
            self.logger.record(f"reference/{key}", value)
