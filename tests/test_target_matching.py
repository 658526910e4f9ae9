"""The target-matching environments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import relax_rl.envs  # noqa: F401  (registers the environments)
from relax_rl.envs import TargetMatchingEnv


@pytest.mark.parametrize(
    "env_id",
    [
        "relax_rl/TargetMatching-D16-v0",
        "relax_rl/TargetMatchingMultiDiscrete-D64-v0",
        "relax_rl/TargetMatchingSequential-D8-v0",
        "relax_rl/TargetMatchingTimed-D8-v0",
    ],
)
def test_registered_envs_pass_gymnasiums_checker(env_id: str) -> None:
    check_env(gym.make(env_id).unwrapped)


def test_action_spaces_and_dimensions() -> None:
    assert gym.make("relax_rl/TargetMatching-D1024-v0").action_space == gym.spaces.MultiBinary(1024)
    md = gym.make("relax_rl/TargetMatchingMultiDiscrete-D16-v0").action_space
    assert isinstance(md, gym.spaces.MultiDiscrete) and list(md.nvec) == [4] * 16


def test_reward_is_the_matched_fraction_and_the_target_earns_one() -> None:
    env = TargetMatchingEnv(n_actions=32)
    obs, _ = env.reset(seed=0)
    target = env.target(obs)
    _, reward, terminated, truncated, info = env.step(target)
    assert reward == 1.0 and terminated and not truncated and info["matched_fraction"] == 1.0
    obs, _ = env.reset(seed=1)
    flipped = 1 - env.target(obs)
    flipped[:8] = env.target(obs)[:8]
    assert env.step(flipped)[1] == pytest.approx(0.25)


def test_the_task_is_fixed_by_its_seed_and_episodes_have_their_length() -> None:
    a, b = TargetMatchingEnv(n_actions=16, task_seed=3), TargetMatchingEnv(n_actions=16, task_seed=3)
    x = np.ones(8, dtype=np.float32)
    np.testing.assert_array_equal(a.target(x), b.target(x))
    seq = TargetMatchingEnv(n_actions=4, episode_length=3)
    seq.reset(seed=0)
    ends = [seq.step(seq.action_space.sample())[2] for _ in range(3)]
    assert ends == [False, False, True]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="n_actions >= 1"):
        TargetMatchingEnv(n_actions=0)


def test_the_timed_version_observes_each_steps_place_and_its_reference_reads_the_context_only() -> None:
    env = gym.make("relax_rl/TargetMatchingTimed-D16-v0").unwrapped
    obs, _ = env.reset(seed=0)
    places, rewards = [obs[-1]], []
    for _ in range(4):
        target = env.target(obs)
        obs, reward, terminated, _, _ = env.step(target)
        places.append(obs[-1])
        rewards.append(reward)
    assert places == [0.0, 0.25, 0.5, 0.75, 1.0] and rewards == [1.0] * 4 and terminated
    reference = env.exact_reference()
    observations = np.stack([env.reset(seed=s)[0] for s in range(5)])
    slopes, _ = reference.coefficients(torch.as_tensor(observations))
    targets = np.stack([env.target(o) for o in observations])
    assert np.array_equal(slopes.numpy() > 0, targets == 1)  # w*_i = (2 t_i − 1)/D
