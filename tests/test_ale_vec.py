"""ale-py's AtariVectorEnv behind SB3's VecEnv interface: autoreset, truncation and unclipped returns."""

import numpy as np
import pytest

from relax_rl.agents import RelaxA2C
from relax_rl.envs import make_vec_env

ale_py = pytest.importorskip("ale_py")
from ale_py.vector_env import AtariVectorEnv  # noqa: E402

FRAMES = 400  # a 100-step game: every env is cut by the frame limit at the same step


def test_adapter_translates_gymnasium_autoreset_into_sb3s(tmp_path):
    """Against ale-py's own next-step autoreset from the same seed and actions: SB3 wants the next game's
    first observation at once, the last one in ``terminal_observation``, a cut game marked as truncated,
    clipped training rewards and unclipped scores in the episode statistics."""
    n = 2
    venv = make_vec_env(
        "ALE/SpaceInvaders-v5",
        n,
        seed=5,
        monitor_dir=tmp_path,
        max_num_frames_per_episode=FRAMES,
        wrapper_kwargs={"terminal_on_life_loss": False},  # ale-py's own dones; life losses: the next test
    )
    reference = AtariVectorEnv(
        "space_invaders", n, max_num_frames_per_episode=FRAMES, reward_clipping=False, repeat_action_probability=0.25
    )
    ref_obs, _ = reference.reset(seed=5)
    np.testing.assert_array_equal(venv.reset(), ref_obs)
    rng = np.random.default_rng(0)
    scores, done_steps = np.zeros(n), 0
    for _ in range(FRAMES // 4 + 20):  # into the second game
        actions = rng.integers(0, venv.action_space.n, n)
        obs, rewards, dones, infos = venv.step(actions)
        ref_obs, ref_rewards, terminated, truncated, _ = reference.step(actions)
        np.testing.assert_array_equal(rewards, np.clip(ref_rewards, -1, 1))
        scores += ref_rewards
        np.testing.assert_array_equal(dones, terminated | truncated)
        if dones.any():
            assert dones.all() and truncated.all() and not terminated.any()  # the frame limit, in both games
            for i in range(n):
                np.testing.assert_array_equal(infos[i]["terminal_observation"], ref_obs[i])
                assert infos[i]["TimeLimit.truncated"] is True
                assert infos[i]["episode"]["r"] == scores[i] and infos[i]["episode"]["l"] == FRAMES // 4
            ref_obs, *_ = reference.step(actions)  # ale-py's reset step: it ignores the actions
            done_steps += 1
        np.testing.assert_array_equal(obs, ref_obs)
        assert all("episode" not in info for info in infos) or dones.all()
    assert done_steps == 1 and (np.abs(scores) > 1).any()  # a game ended, and a score was above the clip
    monitor = (tmp_path / "monitor.csv").read_text().splitlines()
    assert len(monitor) == 2 + n
    venv.close()


def _games(venv, n_games: int, seed: int = 0) -> list[tuple[int, float]]:
    """Random play in env 0 until it has finished ``n_games`` whole games: for each, how many times the
    learner saw ``done`` during it, and its score (``infos[0]["episode"]["r"]``)."""
    rng = np.random.default_rng(seed)
    venv.reset()
    games, dones_in_game, clipped = [], 0, True
    while len(games) < n_games:
        _, rewards, dones, infos = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        clipped &= bool(np.all(np.abs(rewards) <= 1))
        dones_in_game += int(dones[0])
        if "episode" in infos[0]:
            assert dones[0]
            games.append((dones_in_game, infos[0]["episode"]["r"]))
            dones_in_game = 0
    assert clipped
    return games


@pytest.mark.parametrize("backend", ["ale", "sb3_atari"])
def test_both_atari_backends_end_the_learners_episode_at_each_life_and_report_whole_games(backend):
    """rl-baselines3-zoo's settings on both backends: Breakout's 5 lives are 5 dones for the learner,
    the episode statistics one whole game, with its unclipped score."""
    venv = make_vec_env("ALE/Breakout-v5", 2, seed=0, backend=backend)
    games = _games(venv, 2)
    venv.close()
    assert [dones for dones, _ in games] == [5, 5]
    assert all(score >= 0 for _, score in games)


def test_the_ale_backend_can_keep_whole_games_as_the_learners_episodes():
    venv = make_vec_env("ALE/Breakout-v5", 2, seed=0, backend="ale", wrapper_kwargs={"terminal_on_life_loss": False})
    assert [dones for dones, _ in _games(venv, 2)] == [1, 1]
    venv.close()


def test_observations_fit_the_cnn_policy():
    venv = make_vec_env("ALE/Pong-v5", 2, seed=0)
    assert venv.reset().shape == (2, 4, 84, 84) and venv.observation_space.dtype == np.uint8
    model = RelaxA2C("CnnPolicy", venv, n_steps=2, seed=0, device="cpu")
    model.learn(8)
    assert model.num_timesteps == 8
    venv.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "ale", "env_id": "CartPole-v1"}, "only serves Atari"),
        ({"backend": "ale", "env_id": "ALE/Pong-v5", "wrapper_kwargs": {"screen_size": 64}}, "sb3_atari"),
    ],
)
def test_bad_ale_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_vec_env(**kwargs)
