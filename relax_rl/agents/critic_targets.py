"""``V``'s regression targets for replayed rollouts, recomputed when ``V`` trains (docs/design.md §4b).

A stored λ-return is what an older policy earned, bootstrapped with an older ``V``: a replayed ``V`` trained on
it lags the current policy. Recomputing the targets with the current ``V`` (``recomputed``) renews the
bootstraps; V-trace (Espeholt et al., 2018) also reweights each step by ``min(1, π(a|s) / μ(a|s))`` for the
current policy ``π`` and the one that acted, ``μ``, so that the targets estimate the current policy's values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch as th

from relax_rl.agents.replay import Observations, ReplayRows, RolloutReplay

if TYPE_CHECKING:  # for annotations only: the policy module does not import this one
    from relax_rl.agents.policies import RelaxActorCriticPolicy


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


@th.no_grad()
def replay_targets(
    policy: RelaxActorCriticPolicy, replay: RolloutReplay, n_envs: int, gamma: float, gae_lambda: float, weighted: bool
) -> th.Tensor:
    """The replay's λ-returns with the current ``V``, V-trace-weighted for the current π if ``weighted``, per row."""
    rows, end = replay.rows, replay.end
    shape = (len(replay.rollouts), len(rows.returns) // (len(replay.rollouts) * n_envs), n_envs)
    values = policy.predict_values(rows.observations).view(shape)
    bootstrap = policy.predict_values(end.observations).view(shape[0], shape[2])
    log_ratios = None
    if weighted:
        params, *_ = policy.distribution_params_values_features(rows.observations, with_values=False)
        actions = policy.estimator.kind.to_relaxation(rows.actions)
        log_ratios = (policy.estimator.log_prob(params, actions) - rows.log_probs).view(shape)
    targets = vtrace(
        values,
        bootstrap,
        rows.rewards.view(shape),
        rows.episode_starts.view(shape),
        end.dones.view(shape[0], shape[2]),
        gamma,
        gae_lambda,
        log_ratios,
    )
    return targets.flatten()


@th.no_grad()
def action_effect(policy: RelaxActorCriticPolicy, rows: ReplayRows) -> th.Tensor:
    """``q̂(s, a) − E_π[q̂(s, ·)] = w(s) · (ind(a) − π(s))`` at each replayed row, at the current π and φ: what
    ``critic_target="corrected"`` takes out of the stored return."""
    params, _, _, features = policy.distribution_params_values_features(rows.observations, with_values=False)
    slopes, _ = policy.control_variate.slopes_and_offset(policy.cv_context(features, params, rows.horizon))
    relaxation = policy.estimator.relaxation
    actions = policy.estimator.kind.to_relaxation(rows.actions)
    return (slopes * (relaxation.indicator(params, actions) - relaxation.mean_indicator(params))).sum(-1)


class ValueTargets:
    """``V``'s regression targets on the replay for one update, by ``critic_target`` (see
    :data:`~relax_rl.agents.relax_options.CRITIC_TARGETS`): recomputed once per update where they read the
    current ``V`` or π, then drawn minibatch by minibatch."""

    def __init__(
        self,
        critic_target: str,
        policy: RelaxActorCriticPolicy,
        replay: RolloutReplay,
        n_envs: int,
        gamma: float,
        gae_lambda: float,
    ):
        self.critic_target, self.policy, self.replay = critic_target, policy, replay
        self.recomputed = None
        if critic_target in ("recomputed", "vtrace"):
            weighted = critic_target == "vtrace"
            self.recomputed = replay_targets(policy, replay, n_envs, gamma, gae_lambda, weighted)

    def sample(self, batch_size: int, half_life: float | None) -> tuple[Observations, th.Tensor]:
        """The observations of a replay minibatch of ``batch_size`` rows (age-weighted with ``half_life``), and
        their targets. Only what ``V``'s step reads is gathered: at many envs the other fields cost time."""
        index = self.replay.sample_indices(batch_size, half_life)
        if self.critic_target == "corrected":
            rows = self.replay.take(index)
            return rows.observations, rows.returns - action_effect(self.policy, rows)
        targets = self.replay.rows.returns if self.recomputed is None else self.recomputed
        return self.replay.observations_at(index), targets[index]
