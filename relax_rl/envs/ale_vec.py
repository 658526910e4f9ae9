"""Atari through ale-py's multithreaded C++ ``AtariVectorEnv``, as an SB3 ``VecEnv``.

The C++ side does the standard preprocessing (84x84 grayscale, max-pool over the last two frames,
frameskip 4, up to 30 no-op starts, FIRE on reset, a 4-frame stack) for all envs in parallel threads.
This adapter adds what SB3 expects on top:

* gymnasium's autoreset becomes SB3's: ale-py runs in ``SameStep`` mode, so the observation of an env
  that ended is already its next game's first one, and the last frame of the ended game, which ale-py
  puts in ``info["final_obs"]``, goes to ``infos[i]["terminal_observation"]``; a game cut at the frame
  limit (ale-py's truncation, not a termination) sets ``infos[i]["TimeLimit.truncated"]``;
* rewards are clipped to [-1, 1] for training here, not in ale-py, so that ``infos[i]["episode"]``
  and the monitor file report the real, unclipped score of each full game;
* a life lost ends the episode the learner sees (``done``, with no bootstrap), while the game goes on,
  as SB3's ``AtariWrapper`` (``terminal_on_life_loss=True``) and rl-baselines3-zoo's Atari settings do;
  the episode statistics still count whole games. Unlike ``AtariWrapper``, no no-op step and no FIRE
  follow a lost life (ale-py presses FIRE at a game's start only): the agent presses FIRE itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from relax_rl.envs.native import EpisodeLog, NativeVecEnv

FRAMESKIP = 4
NOOP_MAX = 30


class AleVecEnv(NativeVecEnv):
    """``num_envs`` Atari games of ``env_id`` (an ``ALE/...`` or ``...NoFrameskip-v4`` id).

    Observations are ``uint8`` of shape ``(frame_stack, 84, 84)``, channels first (what SB3's
    ``CnnPolicy`` reads without a transpose). Sticky actions and the frame limit come from the id's
    gymnasium spec (v5: repeat probability 0.25, 108000 frames).

    :param game: ale-py's ROM name (``spec.kwargs["game"]``)
    :param clip_reward: clip training rewards to [-1, 1]; episode statistics are never clipped
    :param terminal_on_life_loss: a life lost is a terminal state for the learner (``AtariWrapper``'s option)
    :param num_threads: ale-py's worker threads (0: one per core)
    """

    def __init__(
        self,
        env_id: str,
        game: str,
        num_envs: int,
        *,
        seed: int = 0,
        frame_stack: int = 4,
        clip_reward: bool = True,
        terminal_on_life_loss: bool = True,
        repeat_action_probability: float = 0.25,
        full_action_space: bool = False,
        max_num_frames_per_episode: int = 108_000,
        num_threads: int = 0,
        monitor_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.env_id = env_id
        self._settings = {
            "game": game,
            "num_envs": num_envs,
            "stack_num": frame_stack,
            "repeat_action_probability": repeat_action_probability,
            "full_action_space": full_action_space,
            "max_num_frames_per_episode": max_num_frames_per_episode,
            "num_threads": num_threads,
        }
        self.ale_env = self._make()
        super().__init__(
            num_envs,
            spaces.Box(0, 255, self.ale_env.single_observation_space.shape, np.uint8),
            spaces.Discrete(int(self.ale_env.single_action_space.n)),
        )
        self.clip_reward = clip_reward
        self.terminal_on_life_loss = terminal_on_life_loss
        self.lives = np.zeros(num_envs, dtype=np.int64)
        self.next_seed: int | None = seed
        self.episode_returns = np.zeros(num_envs, dtype=np.float64)
        self.episode_lengths = np.zeros(num_envs, dtype=np.int64)
        self.episodes = EpisodeLog(monitor_file, env_id)
        self._actions: np.ndarray | None = None

    def _make(self) -> Any:
        from ale_py.vector_env import AtariVectorEnv

        return AtariVectorEnv(
            **self._settings,
            autoreset_mode="SameStep",
            frameskip=FRAMESKIP,
            noop_max=NOOP_MAX,
            use_fire_reset=True,
            episodic_life=False,
            reward_clipping=False,  # done here, so that returns stay real scores
        )

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Env ``i`` gets ``seed + i`` at the next :meth:`reset`."""
        self.next_seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def reset(self) -> np.ndarray:
        obs, info = self.ale_env.reset(seed=self.next_seed)
        self.lives = np.asarray(info["lives"], dtype=np.int64)
        self.next_seed = None  # later resets continue the games' random streams
        self.episode_returns[:] = 0
        self.episode_lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async must come first"
        obs, rewards, terminated, truncated, info = self.ale_env.step(self._actions)
        rewards = rewards.astype(np.float32)
        self.episode_returns += rewards
        self.episode_lengths += 1
        game_over = terminated | truncated
        lives = np.asarray(info["lives"], dtype=np.int64)  # after a game over: the next game's
        life_lost = (lives < self.lives) & ~game_over
        self.lives = lives
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        dones = game_over
        if self.terminal_on_life_loss:
            dones = game_over | life_lost
            for i in np.flatnonzero(life_lost):  # the game goes on: its observation is the terminal one
                infos[i] = {"terminal_observation": obs[i], "TimeLimit.truncated": False}
        done_ids = np.flatnonzero(game_over)
        if len(done_ids):
            episodes = self.episodes.finish(self.episode_returns[done_ids], self.episode_lengths[done_ids])
            for i, episode in zip(done_ids, episodes, strict=True):
                infos[i] = {
                    "terminal_observation": info["final_obs"][i],
                    "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                    "episode": episode,
                }
            self.episode_returns[done_ids] = 0
            self.episode_lengths[done_ids] = 0
        if self.clip_reward:
            rewards = np.clip(rewards, -1.0, 1.0)
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.ale_env.close()
        self.episodes.close()

    def __getstate__(self) -> dict[str, Any]:
        # The C++ env cannot be pickled (checkpoints pickle the env): a restored one starts new games.
        return {key: value for key, value in self.__dict__.items() if key != "ale_env"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.ale_env = self._make()
        self.lives = np.asarray(self.ale_env.reset(seed=None)[1]["lives"], dtype=np.int64)
        self.episode_returns[:] = 0
        self.episode_lengths[:] = 0
