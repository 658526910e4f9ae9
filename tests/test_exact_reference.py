"""Exact references (relax_rl.envs.reference) and the critic fit measured against them."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from relax_rl import RelaxA2C
from relax_rl.agents.policies import params_values_features
from relax_rl.diagnose import CriticFitCallback, critic_fit, r_squared
from relax_rl.envs import TargetMatchingEnv, exact_reference


def indicator(env: TargetMatchingEnv, action: np.ndarray) -> torch.Tensor:
    if isinstance(env.action_space, spaces.MultiBinary):
        return torch.as_tensor(action, dtype=torch.float32)
    return torch.nn.functional.one_hot(torch.as_tensor(action), env.n_choices).float().flatten()


@pytest.mark.parametrize("n_choices", [2, 4], ids=["bits", "one-hot blocks"])
def test_the_reference_pays_what_the_env_pays(n_choices: int) -> None:
    """``w*(x) · ind(a) + c*(x)`` equals the env's reward for random contexts and actions."""
    env = TargetMatchingEnv(n_actions=12, n_choices=n_choices, episode_length=3)
    reference = exact_reference(env)
    assert reference is not None and not reference.one_step
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        action = env.action_space.sample()
        slopes, offset = reference.coefficients(torch.as_tensor(obs)[None])
        predicted = (slopes[0] * indicator(env, action)).sum() + offset[0]
        obs, reward, terminated, _, _ = env.step(action)
        assert predicted.item() == pytest.approx(reward, abs=1e-6)
        if terminated:
            obs, _ = env.reset()


def test_the_exact_state_value_is_the_mean_reward_under_the_policy() -> None:
    """V*(x) = E_π[r | x] for a product of Bernoullis: against a Monte Carlo mean of the env's rewards."""
    env = TargetMatchingEnv(n_actions=10)
    reference = exact_reference(env)
    obs, _ = env.reset(seed=1)
    p = torch.linspace(0.1, 0.9, 10)
    value = reference.state_values(torch.as_tensor(obs)[None], p[None]).item()
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(4000):
        env._context = obs.copy()  # the same context every time: a fresh action only
        rewards.append(env.step((rng.random(10) < p.numpy()).astype(np.int8))[1])
    assert abs(np.mean(rewards) - value) < 4 * np.std(rewards) / np.sqrt(len(rewards))
    with pytest.raises(ValueError, match="one-step"):
        exact_reference(TargetMatchingEnv(n_actions=4, episode_length=2)).state_values(torch.zeros(1, 8), p[None, :4])


def test_only_envs_with_a_closed_form_and_raw_observations_have_a_reference() -> None:
    assert exact_reference(gym.make("CartPole-v1")) is None
    assert exact_reference(make_vec_env("CartPole-v1", n_envs=1)) is None
    tm = DummyVecEnv([TargetMatchingEnv])
    assert exact_reference(tm) is not None
    assert exact_reference(VecMonitor(tm)) is not None
    assert exact_reference(VecNormalize(tm)) is None  # the reference reads raw contexts


def test_r_squared_is_one_at_the_truth_and_weights_pick_the_entries() -> None:
    true = torch.tensor([[1.0, -1.0, 2.0]])
    assert r_squared(true, true) == 1.0
    assert r_squared(torch.zeros_like(true), true) < 0.5
    learned = torch.tensor([[1.0, -1.0, 50.0]])  # wrong only where the weight is zero
    assert r_squared(learned, true, torch.tensor([[1.0, 1.0, 0.0]])) == 1.0


def test_critic_fit_is_exact_for_a_critic_that_knows_the_reward(monkeypatch) -> None:
    """With V̂ = V* and ĉ's slopes = w*, the fit reads no error and R² 1."""
    env = make_vec_env(lambda: TargetMatchingEnv(n_actions=6), n_envs=2, seed=0)
    model = RelaxA2C(
        "MlpPolicy",
        env,
        pg_estimator="all_action",
        baseline="value",
        seed=0,
        device="cpu",
        policy_kwargs={"cv_arch": "centred"},
    )
    reference, policy = exact_reference(env), model.policy
    obs = torch.randn(32, 8)

    def exact_values(forwarded, o, **kwargs):  # the policy's forward pass, with V̂ = V*
        params, _, features = params_values_features(forwarded, o, **kwargs)
        return params, reference.state_values(o, torch.sigmoid(params)).detach().unsqueeze(-1), features

    monkeypatch.setattr("relax_rl.diagnose.reference.params_values_features", exact_values)
    policy.control_variate.slopes_and_offset = lambda context: (reference.coefficients(obs)[0], torch.zeros(32))
    fit = critic_fit(model, reference, obs, torch.ones(32))
    assert fit["v_rmse"] == pytest.approx(0.0, abs=1e-6) and fit["v_mean_error"] == pytest.approx(0.0, abs=1e-6)
    assert fit["slope_r2"] == pytest.approx(1.0) and fit["slope_r2_weighted"] == pytest.approx(1.0)
    assert fit["state_part_rmse"] == pytest.approx(0.0, abs=1e-6)  # E_π[ĉ] is its offset, 0
    policy.control_variate.slopes_and_offset = lambda context: (-reference.coefficients(obs)[0], torch.zeros(32))
    assert critic_fit(model, reference, obs, torch.ones(32))["slope_r2"] < 0


def test_training_on_an_env_with_a_reference_logs_the_critic_fit(tmp_path) -> None:
    env = make_vec_env(lambda: TargetMatchingEnv(n_actions=6), n_envs=4, seed=0)
    model = RelaxA2C("MlpPolicy", env, pg_estimator="relax", seed=0, device="cpu", policy_kwargs={"cv_arch": "centred"})
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(400, callback=CriticFitCallback(interval=100), log_interval=1)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [row for row in rows if row.get("reference/v_rmse")]
    assert logged, f"no reference/ keys in {list(rows[0])}"
    for key in ("v_rmse", "v_mean_error", "state_part_rmse", "slope_r2", "slope_r2_weighted"):
        assert np.isfinite(float(logged[-1][f"reference/{key}"])), key


def test_the_critic_fit_leaves_trainings_random_draws_alone() -> None:
    """Logging the fit must not change what is learned: RELAX's E_π[ĉ] draws z, on a forked generator."""

    def trained(callback):
        env = make_vec_env(lambda: TargetMatchingEnv(n_actions=6), n_envs=4, seed=0)
        model = RelaxA2C("MlpPolicy", env, pg_estimator="relax", seed=0, device="cpu").learn(200, callback=callback)
        return [p.detach().clone() for p in model.policy.parameters()]

    with_fit, without = trained(CriticFitCallback(interval=20)), trained(None)
    assert all(torch.equal(a, b) for a, b in zip(with_fit, without, strict=True))


@pytest.mark.parametrize("baseline", ["value", "control_variate"])
def test_the_state_part_is_the_control_variates_alone_where_it_is_the_whole_baseline(baseline: str) -> None:
    """A centred ĉ whose offset is V*: the baseline's state part is exact where ĉ is the whole baseline, whatever
    V̂ says; with ``baseline="value"`` it is V̂ + V*, off by V̂."""
    env = make_vec_env(lambda: TargetMatchingEnv(n_actions=6), n_envs=2, seed=0)
    model = RelaxA2C(
        "MlpPolicy",
        env,
        pg_estimator="all_action",
        baseline=baseline,
        seed=0,
        device="cpu",
        policy_kwargs={"cv_arch": "centred"},
    )
    reference, obs = exact_reference(env), torch.randn(32, 8)
    with torch.no_grad():
        model.policy.value_net.bias.fill_(1.0)  # V̂ far from V*
    model.policy.control_variate.slopes_and_offset = lambda context: (
        torch.zeros(32, 6),
        reference.state_values(context[:, :8], torch.sigmoid(context[:, -6:])),
    )
    fit = critic_fit(model, reference, obs, torch.ones(32))
    assert fit["v_rmse"] > 0.1
    assert (fit["state_part_rmse"] < 1e-6) == (baseline == "control_variate")
