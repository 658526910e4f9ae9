"""The vectorised env factory."""

import numpy as np
import pytest

from relax_rl.envs import UnknownEnvError, is_atari, make_vec_env


def _run_until_an_episode_ends(venv, max_steps=1000):
    venv.reset()
    for _ in range(max_steps):
        _, _, dones, infos = venv.step(np.zeros(venv.num_envs, dtype=int))
        if dones.any():
            return infos[int(np.argmax(dones))]
    raise AssertionError("no episode ended")


def test_gymnasium_env_is_monitored_to_a_file(tmp_path):
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=0, monitor_dir=tmp_path)
    info = _run_until_an_episode_ends(venv)
    venv.close()
    assert {"r", "l", "t"} <= set(info["episode"])
    lines = (tmp_path / "monitor.csv").read_text().splitlines()
    assert lines[1] == "r,l,t" and len(lines) >= 3


def test_seeding_is_reproducible():
    first, second = (make_vec_env("CartPole-v1", n_envs=2, seed=7).reset() for _ in range(2))
    np.testing.assert_array_equal(first, second)


def test_frame_stack():
    venv = make_vec_env("CartPole-v1", n_envs=1, frame_stack=3)
    assert venv.observation_space.shape == (12,)


def test_unknown_env_suggests_close_matches():
    with pytest.raises(UnknownEnvError) as info:
        make_vec_env("CartPol-v1")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "CartPol-v1" in message and "CartPole-v0" in message and "\n" not in message


def test_unknown_env_without_close_match_still_says_what_is_wrong():
    with pytest.raises(UnknownEnvError, match="'Zzyzx-v9'"):
        make_vec_env("Zzyzx-v9")


def test_backend_choice_is_checked():
    with pytest.raises(ValueError, match="unknown backend"):
        make_vec_env("CartPole-v1", backend="jax")
    for backend in ("ale", "sb3_atari"):
        with pytest.raises(ValueError, match="only serves Atari"):
            make_vec_env("CartPole-v1", backend=backend)


def test_atari_ids_are_recognised():
    assert is_atari("ALE/Pong-v5") and is_atari("PongNoFrameskip-v4")
    assert not is_atari("CartPole-v1")


def test_atari_gets_preprocessing_and_a_frame_stack(tmp_path):
    venv = make_vec_env("ALE/Pong-v5", n_envs=2, monitor_dir=tmp_path, backend="sb3_atari")
    assert venv.reset().shape == (2, 84, 84, 4)
    venv.close()


def test_a_missing_simulator_points_at_the_projects_extra():
    import gymnasium as gym

    from relax_rl.envs.factory import _install_hint

    advice = gym.error.DependencyNotInstalled(
        'Box2D is not installed, run `pip install swig` then `pip install "gymnasium[box2d]"`'
    )
    assert _install_hint("LunarLander-v3", advice) == (
        'LunarLander-v3 needs box2d, which is not installed: pip install -e ".[box2d]" (relax-rl\'s box2d extra)'
    )
    assert (
        _install_hint("X-v0", gym.error.DependencyNotInstalled("pygame is not installed")) == "pygame is not installed"
    )


@pytest.mark.parametrize("backend", ["gymnasium", "torch"])
def test_the_monitor_file_names_its_env(backend, tmp_path):
    import json

    venv = make_vec_env("CartPole-v1", n_envs=2, monitor_dir=tmp_path, backend=backend)
    venv.close()
    header = json.loads((tmp_path / "monitor.csv").read_text().splitlines()[0].removeprefix("#"))
    assert header["env_id"] == "CartPole-v1"  # was "None" for gymnasium's envs
