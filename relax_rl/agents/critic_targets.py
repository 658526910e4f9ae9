"""``V``'s regression targets for replayed rollouts, recomputed when ``V`` trains (docs/design.md §4b).

A stored λ-return is what an older policy earned, bootstrapped with an older ``V``: a replayed ``V`` trained on
it lags the current policy. Recomputing the targets with the current ``V`` (``recomputed``) renews the
bootstraps; V-trace (Espeholt et al., 2018) also reweights each step by ``min(1, π(a|s) / μ(a|s))`` for the
current policy ``π`` and the one that acted, ``μ``, so that the targets estimate the current policy's values.
"""

from __future__ import annotations

import torch as th


def vtrace(
    values: th.Tensor,
    bootstrap: th.Tensor,
    rewards: th.Tensor,
    episode_starts: th.Tensor,
    last_dones: th.Tensor,
    gamma: float,
    gae_lambda: float,
    log_ratios: th.Tensor | None = None,
) -> th.Tensor:
    """V-trace targets ``v_s`` for rollouts of shape ``(rollouts, n_steps, n_envs)``, with ``ρ̄ = c̄ = 1``.

    ``v_s = V(s) + δ_s + γ c_s (v_{s+1} − V(s_{s+1}))``, ``δ_s = ρ_s (r_s + γ V(s_{s+1}) − V(s))``, cut at
    episode ends, ``ρ_s = min(1, π/μ)`` and ``c_s = λ ρ_s``. ``bootstrap`` is ``V`` at each rollout's last
    observation ``(rollouts, n_envs)``. Without ``log_ratios`` every ``ρ`` is 1 and the targets are the λ-returns
    that SB3's ``RolloutBuffer`` computes, with the current ``V``.
    """
    rho = th.ones_like(values) if log_ratios is None else log_ratios.clamp(max=0.0).exp()
    next_values = th.cat([values[:, 1:], bootstrap.unsqueeze(1)], dim=1)
    next_non_terminal = 1.0 - th.cat([episode_starts[:, 1:], last_dones.unsqueeze(1)], dim=1)
    deltas = rho * (rewards + gamma * next_values * next_non_terminal - values)
    decay = gamma * gae_lambda * rho * next_non_terminal
    correction = th.zeros_like(bootstrap)
    corrections = []
    for step in reversed(range(values.shape[1])):
        correction = deltas[:, step] + decay[:, step] * correction
        corrections.append(correction)
    return values + th.stack(corrections[::-1], dim=1)
