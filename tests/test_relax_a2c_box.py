"""RelaxA2C on Box action spaces: LAX unbiasedness, the fresh-sample bug, persistence, logging, CLI, bad input."""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from relax_rl import RelaxA2C
from relax_rl.agents import UnsupportedActionSpaceError
from relax_rl.cli import evaluate_main, train_main
from tests.helpers.cli_output import one_line_error
from tests.helpers.model_state import parameters_and_optimiser_states
from tests.helpers.recording import record_theta_estimates
from tests.helpers.stats import N_SE, assert_unbiased, z_scores

OBS = np.array([0.5, -0.5], dtype=np.float32)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small networks run fastest on one thread (as train.py runs them); on shared cores, many times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class GaussianBandit(gym.Env):
    """One step, a constant observation, reward ``cos(2 a₀) e^{a₁/2}``: its Gaussian mean is closed form."""

    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Box(-50, 50, (2,), np.float32)  # so wide that clipping never happens

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return OBS, {}

    def step(self, action):
        return OBS, float(np.cos(2 * action[0]) * np.exp(action[1] / 2)), True, False, {}


def exact_bandit_gradient(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``∇ E[r]`` for ``(μ, log σ)``: ``E[cos 2a] = cos(2μ) e^{−2σ²}``, ``E[e^{a/2}] = e^{μ/2 + σ²/8}``."""
    mean, log_std = mean.clone().requires_grad_(), log_std.clone().requires_grad_()
    var = (2 * log_std).exp()
    value = torch.cos(2 * mean[0]) * torch.exp(-2 * var[0]) * torch.exp(mean[1] / 2 + var[1] / 8)
    return torch.cat(torch.autograd.grad(value, [mean, log_std]))


def bandit_estimates(
    objective: str, log_std_head: bool, fresh_sample: bool = False, critic_replay: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step ĝ for (μ, log σ) over many updates with θ frozen and φ learning, and the exact gradient."""
    model = RelaxA2C(
        "MlpPolicy",
        make_vec_env(GaussianBandit, n_envs=64, seed=0),
        n_steps=1,
        learning_rate=0.0,
        cv_learning_rate=1e-2,
        cv_objective=objective,
        critic_replay=critic_replay,
        policy_kwargs={"log_std_head": log_std_head},
        seed=0,
        device="cpu",
    )
    policy = model.policy
    with torch.no_grad():  # a policy away from the origin, and a control variate far from zero
        policy.action_net.bias.copy_(torch.tensor([0.3, -0.4]))
        (policy.log_std_net.bias if log_std_head else policy.log_std).copy_(torch.tensor([-0.2, 0.1]))
        for p in policy.control_variate.net.parameters():
            p.add_(torch.randn_like(p))  # away from the zero-output initialisation
    if fresh_sample:  # the known bug: evaluate ĉ at a fresh draw instead of the executed action
        policy.estimator.relaxation.recover_eps = lambda action, mean, std: torch.randn_like(mean)
    estimates = record_theta_estimates(model)
    cv_before = [p.detach().clone() for p in policy.control_variate.parameters()]
    model.learn(64 * 250)
    assert any(not torch.equal(a, b) for a, b in zip(cv_before, policy.control_variate.parameters(), strict=True))
    with torch.no_grad():
        params, *_ = policy.distribution_params_values_features(torch.as_tensor(OBS)[None])
    mean, log_std = params[0].chunk(2)
    return torch.cat(estimates), exact_bandit_gradient(mean, log_std)


@pytest.mark.parametrize(
    ("objective", "log_std_head", "critic_replay"),
    [("logits", False, 0), ("params", True, 0), ("regression+logits", False, 32)],
    ids=["logits-state-independent", "params-head", "replay-regression+logits"],
)
def test_lax_policy_gradient_is_unbiased_on_a_continuous_bandit(
    objective: str, log_std_head: bool, critic_replay: int
) -> None:
    """The mean per-step ĝ equals the exact ∇ E[r] for (μ, log σ); the baseline V(s) adds no bias."""
    estimates, exact = bandit_estimates(objective, log_std_head, critic_replay=critic_replay)
    assert_unbiased(estimates, exact, f"RELAX-A2C on a Box ({objective})")


def test_control_variate_at_a_fresh_sample_fails_the_same_check() -> None:
    """The check above has power: ĉ at a fresh sample, not the executed action, is caught as biased.

    The bias is ``∇ E[ĉ(s, a)]``. With the per-step objective, minimising ``E‖ĝ_t‖²`` also shrinks
    that mean, so φ learns to hide part of the bug; the ``params`` objective leaves it plain to see
    (10 to 14 standard errors over seeds 0-3, against 1 to 4 for ``logits``).
    """
    estimates, exact = bandit_estimates("params", log_std_head=True, fresh_sample=True)
    assert z_scores(estimates, exact).abs().max() > N_SE


def test_rollout_buffer_holds_the_unclipped_action() -> None:
    """ε must be rebuilt from the sampled action; SB3 clips only the copy sent to the env."""
    model = RelaxA2C("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=4, seed=0), n_steps=8, seed=0, device="cpu")
    with torch.no_grad():
        model.policy.log_std.fill_(1.5)  # σ ≈ 4.5 against bounds of ±2: most actions are clipped
    model.learn(32)
    stored = model.rollout_buffer.actions
    assert np.abs(stored).max() > 2.0


@pytest.mark.parametrize("log_std_head", [False, True], ids=["state-independent", "head"])
def test_box_save_load_round_trip_and_predict(tmp_path, log_std_head: bool) -> None:
    model = RelaxA2C(
        "MlpPolicy",
        make_vec_env("Pendulum-v1", n_envs=2, seed=0),
        cv_learning_rate=3e-3,
        policy_kwargs={"log_std_head": log_std_head, "log_std_init": -0.5},
        seed=0,
        device="cpu",
    ).learn(200)
    model.save(tmp_path / "model.zip")
    loaded = RelaxA2C.load(tmp_path / "model.zip", device="cpu")
    before, after = parameters_and_optimiser_states(model), parameters_and_optimiser_states(loaded)
    assert before.keys() == after.keys() and any(k.startswith("cv_opt.") for k in before)
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert ("policy.log_std_net.weight" in before) == log_std_head and ("policy.log_std" in before) != log_std_head

    obs = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -3.0], [-1.0, 0.0, 8.0]], dtype=np.float32)
    actions, state = loaded.predict(obs, deterministic=True)
    assert actions.shape == (3, 1) and state is None
    np.testing.assert_array_equal(actions, model.predict(obs, deterministic=True)[0])
    space = loaded.action_space
    sampled, _ = loaded.predict(np.repeat(obs, 100, axis=0))
    assert ((sampled >= space.low) & (sampled <= space.high)).all(), "predict clips to the bounds"
    assert len(np.unique(sampled)) > 100, "stochastic actions"


def test_box_logging_keys() -> None:
    model = RelaxA2C("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), seed=0, device="cpu").learn(20)
    logged = set(model.logger.name_to_value)
    expected = {"policy_loss", "value_loss", "entropy_loss", "cv_loss", "std", "policy_grad_var", "policy_grad_var_a2c"}
    assert {f"train/{key}" for key in expected} <= logged
    assert "train/temperature" not in logged, "a Gaussian has no temperature"
    assert all(np.isfinite(model.logger.name_to_value[f"train/{key}"]) for key in expected)


def test_cli_trains_and_evaluates_pendulum(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    args = ["--algo", "relax_a2c", "--env", "Pendulum-v1", "--run-dir", str(run_dir), "--total-timesteps", "400"]
    assert train_main([*args, "--n-envs", "2", "--eval-freq", "200", "--checkpoint-freq", "0"]) == 0
    assert (run_dir / "best_model.zip").is_file() and (run_dir / "vecnormalize.pkl").is_file()
    assert evaluate_main(["--model", str(run_dir / "final_model.zip"), "--episodes", "1"]) == 0
    assert "relax_a2c on Pendulum-v1: mean return" in capsys.readouterr().out


class _BoxActions(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,), np.float32)

    def __init__(self, action_space: spaces.Box):
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


@pytest.mark.parametrize(
    ("space", "problem", "fix"),
    [
        (spaces.Box(-np.inf, np.inf, (2,), np.float32), "need finite bounds", "finite low and high"),
        (spaces.Box(-1, 1, (2, 2), np.float32), "must be flat, got shape (2, 2)", "reshape the actions"),
    ],
    ids=["infinite-bounds", "not-flat"],
)
def test_unusable_box_gets_a_clear_error(space: spaces.Box, problem: str, fix: str) -> None:
    with pytest.raises(UnsupportedActionSpaceError) as info:
        RelaxA2C("MlpPolicy", _BoxActions(space), device="cpu")
    assert problem in str(info.value) and fix in str(info.value)


@pytest.mark.parametrize(
    ("env", "kwargs", "expected"),
    [
        (
            "Pendulum-v1",
            {"policy_kwargs": {"cv_temperature": 0.3}},
            "cv_temperature is for discrete action spaces only",
        ),
        (
            "Pendulum-v1",
            {"policy_kwargs": {"cv_temperature": 0.3, "learn_temperature": False}},
            "cv_temperature and learn_temperature are for discrete action spaces only",
        ),
        ("CartPole-v1", {"policy_kwargs": {"log_std_head": True}}, "log_std_head only applies to Box action spaces"),
        ("Pendulum-v1", {"use_sde": True}, "does not support use_sde"),
        # The README says cv_reads_policy is for discrete actions; it was accepted on a Box without a word.
        ("Pendulum-v1", {"policy_kwargs": {"cv_reads_policy": True}}, "cv_reads_policy is for discrete action"),
        # The algorithm owns the estimator: a different one in policy_kwargs was silently overridden.
        ("Pendulum-v1", {"policy_kwargs": {"pg_estimator": "a2c"}}, "policy_kwargs pg_estimator='a2c' conflicts"),
        ("CartPole-v1", {"policy_kwargs": {"cv_horizon": 3}}, "policy_kwargs cv_horizon=3 conflicts"),
    ],
    ids=[
        "temperature",
        "both-temperature-options",
        "log-std-head-on-discrete",
        "sde",
        "reads-policy-on-box",
        "conflicting-estimator",
        "conflicting-horizon",
    ],
)
def test_options_for_the_other_kind_of_space_are_refused(env: str, kwargs: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        RelaxA2C("MlpPolicy", env, device="cpu", **kwargs)


def test_cli_refuses_a_discrete_only_option_in_one_line(tmp_path, capsys) -> None:
    args = ["--algo", "relax_a2c", "--env", "Pendulum-v1", "--log-dir", str(tmp_path)]
    assert train_main([*args, "--hyperparams", "policy_kwargs={cv_temperature: 0.3}"]) == 2
    message = one_line_error(capsys.readouterr().err)
    assert message.startswith("error: relax_a2c cannot train on Pendulum-v1: policy_kwargs cv_temperature"), message
