"""V's replayed targets (docs/design.md §4b): recomputed λ-returns and V-trace, and the age-weighted replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from relax_rl.agents.critic_targets import vtrace
from relax_rl.agents.replay import ReplayRows, RolloutEnd, RolloutReplay

N_STEPS, N_ENVS, GAMMA, LAMBDA = 6, 3, 0.9, 0.8


def random_rollout(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "values": torch.randn(N_STEPS, N_ENVS, generator=g),
        "rewards": torch.randn(N_STEPS, N_ENVS, generator=g),
        "episode_starts": (torch.rand(N_STEPS, N_ENVS, generator=g) < 0.3).float(),
        "bootstrap": torch.randn(N_ENVS, generator=g),
        "last_dones": (torch.rand(N_ENVS, generator=g) < 0.5).float(),
    }


def test_without_ratios_the_targets_are_sb3s_lambda_returns() -> None:
    """With every ρ = 1, V-trace is GAE: the targets equal SB3's RolloutBuffer returns for the same values."""
    r = random_rollout(0)
    buffer = RolloutBuffer(N_STEPS, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), "cpu", LAMBDA, GAMMA, N_ENVS)
    for t in range(N_STEPS):
        buffer.add(
            np.zeros((N_ENVS, 1), np.float32),
            np.zeros((N_ENVS, 1)),
            r["rewards"][t].numpy(),
            r["episode_starts"][t].numpy(),
            r["values"][t],
            torch.zeros(N_ENVS),
        )
    buffer.compute_returns_and_advantage(r["bootstrap"], r["last_dones"].numpy())
    targets = vtrace(
        r["values"][None], r["bootstrap"][None], r["rewards"][None], r["episode_starts"][None],
        r["last_dones"][None], GAMMA, LAMBDA,
    )  # fmt: skip
    torch.testing.assert_close(targets[0], torch.as_tensor(buffer.returns, dtype=torch.float32))


def test_vtrace_by_hand_on_two_steps() -> None:
    """v_0 = V_0 + ρ_0 δ_0 + γ λ ρ_0 ρ_1 δ_1' with δ_t = r_t + γ V_{t+1} − V_t, and ρ = min(1, π/μ)."""
    values, bootstrap = torch.tensor([[[1.0], [2.0]]]), torch.tensor([[3.0]])
    rewards, starts, dones = torch.tensor([[[0.5], [-1.0]]]), torch.zeros(1, 2, 1), torch.zeros(1, 1)
    ratios = torch.tensor([[[0.5], [2.0]]])  # the second is clipped to 1
    gamma, lam = 0.9, 0.5
    delta0, delta1 = 0.5 + gamma * 2.0 - 1.0, -1.0 + gamma * 3.0 - 2.0
    v1 = 2.0 + delta1
    v0 = 1.0 + 0.5 * delta0 + gamma * lam * 0.5 * (v1 - 2.0)
    targets = vtrace(values, bootstrap, rewards, starts, dones, gamma, lam, ratios.log())
    torch.testing.assert_close(targets.flatten(), torch.tensor([v0, v1]))


def test_ratios_above_one_change_nothing_and_an_episode_end_cuts_the_trace() -> None:
    r = random_rollout(1)
    args = [r[k][None] for k in ("values", "bootstrap", "rewards", "episode_starts", "last_dones")]
    plain = vtrace(*args, GAMMA, LAMBDA)
    torch.testing.assert_close(vtrace(*args, GAMMA, LAMBDA, torch.full((1, N_STEPS, N_ENVS), 0.7)), plain)
    # A row's target ignores everything after its episode ends: the step before an episode start
    # bootstraps from nothing, so perturbing the later rewards leaves it alone.
    starts = torch.zeros(1, N_STEPS, N_ENVS)
    starts[0, 3] = 1.0
    args[3] = starts
    before = vtrace(*args, GAMMA, LAMBDA)
    args[2] = args[2].clone()
    args[2][0, 3:] += 10.0
    after = vtrace(*args, GAMMA, LAMBDA)
    torch.testing.assert_close(after[0, :3], before[0, :3])
    assert (after[0, 3:] - before[0, 3:]).abs().min() > 1.0


def replay_of(n_rollouts: int, capacity: int, rows: int = 4) -> RolloutReplay:
    replay = RolloutReplay(capacity)
    for k in range(n_rollouts):
        filled = torch.full((rows,), float(k))
        replay.add(
            ReplayRows(filled[:, None], filled, filled, filled, filled, filled, filled), RolloutEnd(filled, filled)
        )
    return replay


def test_the_replay_keeps_the_last_rollouts_oldest_first() -> None:
    replay = replay_of(5, capacity=3)
    assert len(replay) == 12
    assert replay.rows.returns.tolist() == [2.0] * 4 + [3.0] * 4 + [4.0] * 4
    assert replay.end.observations.tolist() == [2.0] * 4 + [3.0] * 4 + [4.0] * 4
    index = replay.sample_indices(5)
    assert len(index.unique()) == 5 and torch.equal(replay.take(index).returns, replay.rows.returns[index])
    assert sorted(replay.sample_indices(100).tolist()) == list(range(12))  # all rows, each once


@pytest.mark.parametrize("half_life", [1.0, 2.0])
def test_an_age_weighted_replay_draws_a_rollout_k_updates_old_with_weight_two_to_the_minus_k_over_h(
    half_life: float,
) -> None:
    replay = replay_of(3, capacity=3, rows=1000)
    torch.manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(40):
        counts += torch.bincount(replay.rows.returns[replay.sample_indices(30, half_life)].long(), minlength=3)
    weights = torch.exp2(-torch.tensor([2.0, 1.0, 0.0]) / half_life)
    expected = weights / weights.sum()
    observed = counts / counts.sum()
    se = (expected * (1 - expected) / counts.sum()).sqrt()
    assert ((observed - expected).abs() / se).max() < 4
