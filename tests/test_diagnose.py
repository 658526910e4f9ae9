"""The variance decomposition: its estimators, and the tool end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import fault_envs  # noqa: F401  (registers the misbehaving envs)
import gymnasium as gym
import pytest
import torch

from relax_rl import RelaxA2C
from relax_rl.diagnose import decompose_variance, diagnose
from relax_rl.envs import make_vec_env


def test_components_recover_known_variances_and_add_up() -> None:
    """x_ijk = a_i + b_ij + c_ijk with known variances per coordinate: the nested estimators recover them."""
    torch.manual_seed(0)
    n, m, k = 400, 20, 6
    sd_state, sd_action, sd_residual = torch.tensor([1.0, 0.5]), torch.tensor([2.0, 1.0]), torch.tensor([0.5, 3.0])
    samples = (
        sd_state * torch.randn(n, 1, 1, 2)
        + sd_action * torch.randn(n, m, 1, 2)
        + sd_residual * torch.randn(n, m, k, 2)
        + 7.0  # a mean does not count as variance
    )
    d = decompose_variance(samples)
    expected = {"state": 1.25, "action": 5.0, "residual": 9.25}
    # Sampling error of each estimate, from the chi-square laws of the mean squares (generous: 4 SE).
    assert d.state == pytest.approx(expected["state"], abs=4 * 0.25)
    assert d.action == pytest.approx(expected["action"], abs=4 * 0.12)
    assert d.residual == pytest.approx(expected["residual"], abs=4 * 0.08)
    # The parts add up to the single-sample variance, computed directly over all samples.
    direct_total = samples.reshape(-1, 2).var(0).sum().item()
    assert d.total == pytest.approx(sum(expected.values()), abs=4 * 0.3)
    assert d.total == pytest.approx(direct_total, rel=0.05)
    assert d.action_fraction == pytest.approx(5.0 / 15.5, abs=0.05)


def test_decomposition_needs_replicates() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        decompose_variance(torch.zeros(4, 1, 3, 2))


def test_diagnose_on_a_one_step_task_has_no_state_or_residual_noise_left_to_chance() -> None:
    """Target matching: one step, deterministic reward given (x, a). The residual must vanish for
    REINFORCE and A2C (nothing follows the action), and RELAX must be the only one with relaxation noise."""
    env_id = "relax_rl/TargetMatching-D8-v0"
    model = RelaxA2C("MlpPolicy", make_vec_env(env_id, 2, 0), n_steps=1, seed=0, device="cpu")
    with torch.no_grad():  # a trained-looking control variate: its output layer starts at zero
        for p in model.policy.control_variate.parameters():
            p.add_(0.1 * torch.randn_like(p))
    results = diagnose(model, gym.make(env_id), n_states=6, n_actions=4, n_continuations=2)
    assert set(results) == {"none", "a2c", "relax"}
    for name in ("none", "a2c"):
        assert abs(results[name].residual) < 1e-9 * results[name].total
    assert results["relax"].residual > 0


def test_diagnose_on_box_actions_evaluates_the_control_variate_at_the_executed_action() -> None:
    """LAX's ĉ(s, a) is fixed once the action is: given (s, a) only the return varies, exactly as for
    A2C. A control variate at a fresh sample would add noise to the residual part."""
    from stable_baselines3 import A2C

    model = RelaxA2C("MlpPolicy", "Pendulum-v1", n_steps=2, seed=0, device="cpu")
    with torch.no_grad():
        for p in model.policy.control_variate.parameters():
            p.add_(0.1 * torch.randn_like(p))
    results = diagnose(model, gym.make("Pendulum-v1"), n_states=4, n_actions=3, n_continuations=2)
    assert set(results) == {"none", "a2c", "relax"}
    # float32 rounding leaves ~1e-3 relative; a fresh sample makes it ~30 times larger here
    assert results["relax"].residual == pytest.approx(results["a2c"].residual, rel=1e-2)
    assert results["relax"].action != pytest.approx(results["a2c"].action, rel=1e-3)
    sb3 = diagnose(A2C("MlpPolicy", "Pendulum-v1", seed=0, device="cpu"), gym.make("Pendulum-v1"), 4, 3, 2)
    assert set(sb3) == {"none", "a2c"} and sb3["a2c"].total > 0


def test_diagnose_cli_prints_one_json_object(tmp_path) -> None:
    run_dir = tmp_path / "run"
    train = [sys.executable, "train.py", "--total-timesteps", "200", "--n-envs", "2", "--run-dir", str(run_dir)]
    subprocess.run([*train, "--eval-freq", "0", "--checkpoint-freq", "0"], check=True, capture_output=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "relax_rl.diagnose",
            "--model",
            str(run_dir / "final_model.zip"),
            "--samples",
            "4",
            "--actions",
            "3",
            "--continuations",
            "2",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out)
    assert result["env"] == "CartPole-v1" and result["algo"] == "relax_a2c"
    for name in ("none", "a2c", "relax"):
        parts = result[name]
        assert parts["total"] == pytest.approx(parts["state"] + parts["action"] + parts["residual"])


def test_diagnose_cli_bad_input_is_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "relax_rl.diagnose", "--model", str(tmp_path / "missing.zip"), "--env", "CartPole-v1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_action_variance_fraction_is_logged_during_training() -> None:
    from relax_rl.diagnose import ActionVarianceCallback

    env_id = "relax_rl/TargetMatching-D8-v0"
    model = RelaxA2C("MlpPolicy", make_vec_env(env_id, 2, 0), n_steps=1, seed=0, device="cpu")
    callback = ActionVarianceCallback(env_id, interval=10, n_states=3, n_actions=3, n_continuations=2)
    model.learn(20, callback=callback)
    logged = model.logger.name_to_value
    assert 0 < logged["train/action_var_frac_a2c"] <= 1.5 and "train/action_var_frac" in logged


def test_the_logged_diagnostic_leaves_training_unchanged() -> None:
    from relax_rl.diagnose import ActionVarianceCallback

    def final_parameters(callback):
        model = RelaxA2C("MlpPolicy", make_vec_env("CartPole-v1", 2, 0), seed=0, device="cpu")
        model.learn(100, callback=callback)
        return torch.cat([p.detach().flatten() for p in model.policy.parameters()])

    with_diagnostic = ActionVarianceCallback("CartPole-v1", interval=20, n_states=2, n_actions=2, n_continuations=2)
    assert torch.equal(final_parameters(None), final_parameters(with_diagnostic))


@pytest.mark.parametrize(
    ("env_id", "reason"),
    [
        ("relax-rl-test/HollowCopyCartPole-v1", "cannot step"),
        ("relax-rl-test/DriftingCopyCartPole-v1", "does not continue"),
    ],
)
def test_an_env_that_does_not_copy_faithfully_is_refused(env_id: str, reason: str) -> None:
    from relax_rl.diagnose import EnvNotCopyableError, check_copyable

    check_copyable(gym.make("CartPole-v1"))  # a faithful copy passes
    with pytest.raises(EnvNotCopyableError, match=reason):
        check_copyable(gym.make(env_id))


def test_training_goes_on_without_the_diagnostic_when_the_env_cannot_be_copied() -> None:
    """LunarLander's deep copy cannot step; the training-time diagnostic must switch off, not crash."""
    from relax_rl.diagnose import ActionVarianceCallback

    env_id = "relax-rl-test/HollowCopyCartPole-v1"
    with pytest.warns(UserWarning, match="action_var_frac is off .* cannot step"):
        callback = ActionVarianceCallback(env_id, interval=10, n_states=2, n_actions=2, n_continuations=2)
    model = RelaxA2C("MlpPolicy", make_vec_env(env_id, 2, 0), seed=0, device="cpu")
    model.learn(40, callback=callback)
    assert model.num_timesteps == 40 and "train/action_var_frac" not in model.logger.name_to_value


def test_only_runs_that_see_the_raw_env_are_diagnosed() -> None:
    from relax_rl.config import parse_overrides, resolve_config
    from relax_rl.diagnose import observes_raw_env

    assert observes_raw_env(resolve_config("relax_a2c", "CartPole-v1", 0))
    assert not observes_raw_env(
        resolve_config("relax_a2c", "CartPole-v1", 0, overrides=parse_overrides(["normalize=true"]))
    )
    assert not observes_raw_env(resolve_config("relax_a2c", "ALE/Pong-v5", 0))  # preprocessed and frame-stacked
