"""Torch-native envs: gymnasium's dynamics exactly, SB3's autoreset, episode statistics, devices."""

import json
import shutil
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.monitor import load_results

from relax_rl.cli import train_main
from relax_rl.envs import make_vec_env
from relax_rl.envs.torch_envs import TORCH_ENVS, CartPoleTorchEnv
from tests.helpers.run_artifacts import assert_same_run, monitor_rows

CUDA = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA GPU")


def _balancing_actions(obs: np.ndarray, rng: np.random.Generator, n_random: int) -> np.ndarray:
    """A PD controller that keeps the pole up for 500 steps, except in the first n_random envs (random)."""
    actions = (obs[:, 2] + 0.5 * obs[:, 3] + 0.05 * obs[:, 1] > 0).astype(np.int64)
    actions[:n_random] = rng.integers(0, 2, n_random)
    return actions


@pytest.mark.parametrize("env_id", sorted(TORCH_ENVS))
def test_cartpole_matches_gymnasium_step_for_step(env_id):
    """From the same states with the same actions: the same observations (to the bit), rewards,
    terminations and time-limit truncations; gymnasium's episodes restart from gymnasium's draws."""
    n, limit = 12, gym.spec(env_id).max_episode_steps
    reference = [gym.make(env_id) for _ in range(n)]
    torch_env = make_vec_env(env_id, n, seed=0, backend="torch")
    torch_env.reset()
    for i, env in enumerate(reference):
        env.reset(seed=i)
    # Three episodes start at an edge, so that each threshold (x, and θ both ways) decides an episode's end.
    for env, edge in zip(
        reference, ([2.39, 0.5, 0.0, 0.0], [-2.39, -0.5, 0.0, 0.0], [0.0, 0.0, 0.2, 0.5]), strict=False
    ):
        env.unwrapped.state = np.array(edge)
    obs = np.array([env.unwrapped.state for env in reference], np.float32)
    torch_env.state[:] = th.tensor(np.array([env.unwrapped.state for env in reference]))
    rng = np.random.default_rng(0)
    seen = {"terminated": 0, "truncated": 0}
    for _ in range(limit + 50):
        actions = _balancing_actions(obs, rng, n_random=n // 2)
        _, rewards, dones, infos = torch_env.step(th.as_tensor(actions))
        steps = [env.step(int(a)) for env, a in zip(reference, actions, strict=True)]
        expected_obs = np.array([s[0] for s in steps])
        terminated, truncated = np.array([s[2] for s in steps]), np.array([s[3] for s in steps])
        np.testing.assert_array_equal(torch_env.terminal_obs.numpy(), expected_obs)
        np.testing.assert_array_equal(rewards.numpy(), [s[1] for s in steps])
        np.testing.assert_array_equal(dones.numpy(), terminated | truncated)
        np.testing.assert_array_equal(torch_env.truncated.numpy(), truncated & ~terminated)
        for i in np.flatnonzero(terminated | truncated):
            assert infos[i]["TimeLimit.truncated"] == bool(truncated[i] and not terminated[i])
            np.testing.assert_array_equal(infos[i]["terminal_observation"].numpy(), expected_obs[i])
            expected_obs[i] = reference[i].reset()[0]  # continue both from gymnasium's new state
            torch_env.state[i] = th.tensor(reference[i].unwrapped.state)
        seen["terminated"] += int(terminated.sum())
        seen["truncated"] += int((truncated & ~terminated).sum())
        obs = expected_obs
    assert seen["terminated"] > 0 and seen["truncated"] > 0, seen  # both ends were compared


def test_autoreset_and_episode_statistics(tmp_path):
    env = make_vec_env("CartPole-v1", 64, seed=3, backend="torch", monitor_dir=tmp_path)
    obs = env.reset()
    assert obs.dtype == th.float32 and obs.shape == (64, 4) and obs.abs().max() < 0.05
    lengths, episodes = np.zeros(64, int), []
    for _ in range(100):
        obs, _, dones, infos = env.step(th.zeros(64, dtype=th.long))  # always left: falls fast
        lengths += 1
        for i in np.flatnonzero(dones.numpy()):
            episode = infos[i]["episode"]
            assert episode["l"] == lengths[i] and episode["r"] == lengths[i]  # reward 1 per step
            assert not infos[i]["TimeLimit.truncated"]
            assert obs[i].abs().max() < 0.05  # the next episode's first observation
            assert infos[i]["terminal_observation"].abs().max() > 0.05
            episodes.append(episode)
            lengths[i] = 0
        assert all("episode" not in infos[i] for i in np.flatnonzero(~dones.numpy()))
    env.close()
    assert len(episodes) > 64
    monitor = load_results(str(tmp_path))
    assert list(monitor["r"]) == [e["r"] for e in episodes] and list(monitor["l"]) == [e["l"] for e in episodes]


def test_seeding_is_reproducible_and_seeds_differ():
    first, second, other = (make_vec_env("CartPole-v1", 8, seed=s, backend="torch").reset() for s in (1, 1, 2))
    assert th.equal(first, second) and not th.equal(first, other)


def test_sutton_barto_reward():
    env = CartPoleTorchEnv(4, sutton_barto_reward=True)
    env.reset()
    for _ in range(200):
        _, rewards, dones, _ = env.step(th.ones(4, dtype=th.long))
        np.testing.assert_array_equal(rewards.numpy(), -dones.float().numpy())


def test_cpu_tensors_stay_on_cpu():
    env = make_vec_env("CartPole-v1", 4, device="cpu", backend="torch")
    results = [env.reset(), *env.step(th.zeros(4, dtype=th.long))[:3]]
    assert all(t.device.type == "cpu" for t in results)


@CUDA
def test_cuda_env_returns_cuda_tensors_and_matches_cpu():
    cpu, cuda = (make_vec_env("CartPole-v1", 256, seed=0, device=d, backend="torch") for d in ("cpu", "cuda"))
    cpu.reset(), cuda.reset()
    cuda.state.copy_(cpu.state)
    for _ in range(20):
        actions = th.randint(0, 2, (256,))
        cpu.step(actions)
        cuda_out = cuda.step(actions.cuda())
        assert all(t.device.type == "cuda" for t in cuda_out[:3])
        # CUDA's float64 sin/cos may differ from the CPU's in the last bit; float32 observations agree to 1e-6.
        th.testing.assert_close(cuda.terminal_obs.cpu(), cpu.terminal_obs, atol=1e-6, rtol=0)
        cuda.state.copy_(cpu.state)  # the autoresets drew different numbers on each device


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env_id": "CartPole-v1", "n_envs": 0}, "n_envs must be an integer >= 1, got 0"),
        ({"env_id": "Acrobot-v1", "n_envs": 4, "backend": "torch"}, "no torch implementation of 'Acrobot-v1'"),
        ({"env_id": "CartPole-v1", "n_envs": 4, "backend": "torch", "frame_stack": 4}, "stack no frames"),
        ({"env_id": "CartPole-v1", "n_envs": 4, "backend": "torch", "gravity": 3}, "does not take these options"),
        ({"env_id": "CartPole-v1", "n_envs": 4, "device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_input_is_a_one_line_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        make_vec_env(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(th.cuda.is_available(), reason="checks the machine without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error():
    with pytest.raises(ValueError, match="requested, but torch sees no CUDA GPU"):
        make_vec_env("CartPole-v1", 4, device="cuda", backend="torch")


def test_auto_picks_torch_for_many_envs_only():
    assert isinstance(make_vec_env("CartPole-v1", 64), CartPoleTorchEnv)
    assert not isinstance(make_vec_env("CartPole-v1", 8), CartPoleTorchEnv)  # the default run is unchanged
    assert not isinstance(make_vec_env("Acrobot-v1", 64), CartPoleTorchEnv)


def test_cli_trains_on_a_torch_env_and_resumes_it_bit_exact(tmp_path, capsys):
    """``--n-envs 64`` picks the torch env; metrics, monitor file and checkpoints work as with gymnasium's."""
    reference = tmp_path / "reference"
    args = ["--env", "CartPole-v1", "--n-envs", "64", "--total-timesteps", "1920", "--eval-freq", "0"]
    assert train_main([*args, "--checkpoint-freq", "640", "--run-dir", str(reference)]) == 0
    metrics = json.loads((reference / "metrics.json").read_text())
    # The gymnasium evaluation env of a torch training env is served by evaluate_policy as it is.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train_main([*args, "--eval-freq", "640", "--run-dir", str(tmp_path / "evaluated")]) == 0
    assert not [w for w in caught if "not of the same type" in str(w.message)]
    assert metrics["timesteps"] == 1920 and metrics["episodes"] == len(monitor_rows(reference)) > 20
    checkpoints = sorted((reference / "checkpoints").glob("*.zip"), key=lambda p: p.stat().st_mtime)
    assert len(checkpoints) >= 2
    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    for path in ["metrics.json", "final_model.zip", *(f"checkpoints/{p.name}" for p in checkpoints[1:])]:
        (resumed / path).unlink()
    assert train_main(["--resume", str(resumed)]) == 0
    assert_same_run(reference, resumed)


def test_cli_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    if th.cuda.is_available():
        pytest.skip("checks the machine without a GPU")
    args = ["--env", "CartPole-v1", "--n-envs", "64", "--device", "cuda", "--log-dir", str(tmp_path)]
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA GPU" in err


def test_episodes_wait_on_the_device_until_popped_and_match_the_steps_infos(tmp_path):
    """step_on_device keeps finished episodes on the device; pop_episodes gives them per step, in env
    order, as step's infos would have (same returns, lengths and order), and writes the monitor rows then."""
    synced, deferred = (CartPoleTorchEnv(32, seed=4, max_episode_steps=9) for _ in range(2))
    deferred.episodes = type(deferred.episodes)(tmp_path / "monitor.csv", "CartPole-v1")
    for env in (synced, deferred):
        env.reset()
    expected, steps = [], 40
    for _ in range(steps):
        actions = th.randint(0, 2, (32,), generator=th.Generator().manual_seed(len(expected)))
        _, _, dones, infos = synced.step(actions)
        _, _, deferred_dones = deferred.step_on_device(actions)
        assert th.equal(dones, deferred_dones)
        expected.append([(info["episode"]["r"], info["episode"]["l"]) for info in infos if "episode" in info])
    assert load_results_rows(tmp_path) == 0  # nothing reached the host yet
    popped = deferred.pop_episodes()
    assert [[(e["r"], e["l"]) for e in step] for step in popped] == expected
    assert sum(map(len, expected)) > 32 and deferred.pop_episodes() == []
    deferred.close()
    assert load_results_rows(tmp_path) == sum(map(len, expected))


def test_a_caller_that_never_pops_keeps_a_bounded_device_log(monkeypatch):
    from relax_rl.envs.torch_envs import base

    monkeypatch.setattr(base, "MAX_PENDING_STEPS", 8)
    env = CartPoleTorchEnv(4, seed=0, max_episode_steps=3)
    env.reset()
    for _ in range(30):
        env.step_on_device(th.zeros(4, dtype=th.long))
        assert len(env._ended) < 8
    assert len(env.pop_episodes()) == 30  # every step's episodes, none lost


def load_results_rows(directory) -> int:
    path = directory / "monitor.csv"
    return len(path.read_text().splitlines()) - 2 if path.exists() else 0
