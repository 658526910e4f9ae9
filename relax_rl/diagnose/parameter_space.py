"""The decomposition in parameter space: each estimate ``ĝ^params`` pushed through ``(∂params/∂θ)ᵀ``, as the
update applies it to θ and ψ."""

from __future__ import annotations

import dataclasses

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import Tensor

from relax_rl.agents.policies import params_values_features
from relax_rl.diagnose.estimates import RowSamples
from relax_rl.diagnose.sampling import Observations
from relax_rl.diagnose.statistics import StateStatistics, nested_statistics

SCORE = "_score"


def _take(obs: Observations, index: Tensor | slice) -> Observations:
    return {key: value[index] for key, value in obs.items()} if isinstance(obs, dict) else obs[index]


def _theta_psi(policy: ActorCriticPolicy) -> list[Tensor]:
    """``θ`` and ``ψ``, those that take a gradient: the policy's own list (every parameter but the control
    variate's ``φ``, which the update leaves alone), or all of a plain SB3 policy's."""
    getter = getattr(policy, "actor_critic_parameters", policy.parameters)
    return [p for p in getter() if p.requires_grad]


def _row_vjp(params: Tensor, theta: list[Tensor], vectors: Tensor) -> Tensor:
    """``(∂params_c / ∂θ)ᵀ v`` for each row ``c`` of ``params`` and each of its vectors ``v``: ``vectors``
    ``(C, B, P)`` → ``(C, B, D)``, by one batched backward pass (block-diagonal output gradients)."""
    c, b, p = vectors.shape
    outputs = vectors.new_zeros(c, b, c, p)
    rows = th.arange(c)
    outputs[rows, :, rows] = vectors
    grads = th.autograd.grad(
        params, theta, outputs.view(c * b, c, p), retain_graph=True, is_grads_batched=True, allow_unused=True
    )
    return th.cat([g.reshape(c * b, -1) for g in grads if g is not None], dim=1).view(c, b, -1)


def parameter_space_statistics(model: BaseAlgorithm, rows: RowSamples) -> dict[str, StateStatistics]:
    """The nested-ANOVA statistics of ``ĝ_θ = (∂params/∂θ)ᵀ ĝ^params``, the update's estimate, per estimator.

    Works through the states in chunks, holding ``ĝ_θ`` for one chunk at a time; what it keeps is one
    mean vector per state and estimator (``N · E · D`` floats).
    """
    # The score rides along as one more "estimator" (the same for every continuation): the Monte Carlo
    # baseline's noise is its variance times the score's squared norm in parameter space.
    estimates = {**rows.estimates, SCORE: rows.score.unsqueeze(2).expand_as(rows.estimates["a2c"])}
    names = list(estimates)
    g = th.stack([estimates[name] for name in names], dim=1)  # (N, E, M, K, P)
    n, e, m, k, p = g.shape
    theta = _theta_psi(model.policy)
    size = sum(t.numel() for t in theta)
    # With fewer distribution parameters than samples per state, build J = ∂params/∂θ once per state
    # and work in params space with the metric J Jᵀ; otherwise push each sample through J directly.
    use_jacobian = p < e * m * k
    vectors = p if use_jacobian else e * m * k  # backward products per state
    chunk = max(1, min(n, 2**22 // (vectors * size), 2**12 // vectors))
    within_pair, within_state, means, mean_norms = [], [], [], []
    reference = None
    for start in range(0, n, chunk):
        index = slice(start, min(start + chunk, n))
        params, _, _ = params_values_features(model.policy, _take(rows.obs, index), with_values=False)
        c = len(params)
        if use_jacobian:
            eye = th.eye(p, dtype=params.dtype, device=params.device).expand(c, p, p).contiguous()
            jacobian = _row_vjp(params, theta, eye).double()  # (C, P, D)
            wp, ws, mu = nested_statistics(g[index], jacobian @ jacobian.transpose(1, 2))
            mu = mu @ jacobian
        else:
            x = _row_vjp(params, theta, g[index].flatten(1, 3).to(params.dtype).contiguous())
            wp, ws, mu = nested_statistics(x.view(c, e, m, k, -1))
        # Held relative to the first state's mean, in float32: a large common mean would otherwise eat
        # the precision of their spread.
        reference = mu[0] if reference is None else reference
        within_pair.append(wp)
        within_state.append(ws)
        means.append((mu - reference).float())
        mean_norms.append(mu.pow(2).sum(-1))
    wp, ws, mu, norms = (th.cat(parts) for parts in (within_pair, within_state, means, mean_norms))
    stats = {name: StateStatistics(wp[:, i], ws[:, i], mu[:, i], norms[:, i], m, k) for i, name in enumerate(names)}
    # The baseline b̂ is shared by a state's actions but independent of them: (V − b̂) ∇log π adds
    # Var(b̂|s) E‖J ∇log π‖² to the action part and nothing else (E[∇log π] = 0), which is taken out.
    noise = rows.baseline_noise.to(wp.dtype) * stats.pop(SCORE).mean_squared_norms()
    stats["mc_v"] = dataclasses.replace(stats["mc_v"], action_noise=noise)
    return stats
