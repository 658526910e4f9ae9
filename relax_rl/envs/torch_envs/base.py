"""Batched environments written in torch: every env of the batch steps in one tensor operation.

A :class:`TorchVecEnv` is an SB3 ``VecEnv`` whose ``step`` and ``reset`` return tensors on its device,
so that an agent on the same device never copies observations, actions or rewards through numpy
(``RelaxA2C`` collects its rollouts as tensors for such an env). It follows SB3's conventions
otherwise: an env that ends is reset at once, ``infos[i]`` then holds ``terminal_observation``,
``TimeLimit.truncated`` and ``episode`` (as ``VecMonitor`` would set them), and episodes go to a
``monitor.csv`` when asked to.

``step`` reads the finished envs on the host to build ``infos``, a sync per step. A rollout on the device
steps with :meth:`TorchVecEnv.step_on_device` instead, which never leaves the device (autoreset, returns
and lengths are masked tensor operations), and collects the finished episodes once per rollout with
:meth:`TorchVecEnv.pop_episodes`.

A subclass supplies the dynamics only: :meth:`TorchVecEnv._reset_states` and
:meth:`TorchVecEnv._advance`; this class does the time limit, autoreset and episode statistics.
"""

from __future__ import annotations

import os
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from relax_rl.envs.native import EpisodeLog, NativeVecEnv

#: steps whose finished episodes wait on the device before they are copied to the host anyway
MAX_PENDING_STEPS = 1024


class TorchVecEnv(NativeVecEnv):
    """``num_envs`` copies of one environment, as a batch of tensors on ``device``.

    Tensors returned by :meth:`step_wait` and :meth:`step_on_device`: observations (``float32``), rewards
    (``float32``) and dones (``bool``), each with a leading ``num_envs`` dimension. After each step,
    :attr:`terminal_obs` holds every env's last observation before any reset and :attr:`truncated` says
    which episodes hit the time limit, so that a vectorised consumer need not scan ``infos``.

    :param max_episode_steps: the time limit (gymnasium's ``TimeLimit``); ``None`` for none
    :param monitor_file: write one ``r,l,t`` row per finished episode there
    """

    #: the gymnasium id whose dynamics this env reproduces
    env_id: str = ""

    def __init__(
        self,
        num_envs: int,
        observation_space: spaces.Box,
        action_space: spaces.Space,
        *,
        seed: int = 0,
        device: str | th.device = "cpu",
        max_episode_steps: int | None = None,
        monitor_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.device = th.device(device)
        super().__init__(num_envs, observation_space, action_space)
        self.max_episode_steps = max_episode_steps
        self.generator = th.Generator(self.device).manual_seed(seed)
        self.episode_returns = th.zeros(num_envs, dtype=th.float64, device=self.device)
        self.episode_lengths = th.zeros(num_envs, dtype=th.int64, device=self.device)
        self.terminal_obs = th.zeros((num_envs, *observation_space.shape), dtype=th.float32, device=self.device)
        self.truncated = th.zeros(num_envs, dtype=th.bool, device=self.device)
        self.episodes = EpisodeLog(monitor_file, self.env_id)
        # Per step: (dones, returns, lengths, host time) on the device, until pop_episodes copies them.
        self._ended: list[tuple[th.Tensor, th.Tensor, th.Tensor, float]] = []
        self._finished: list[list[dict[str, Any]]] = []
        self._actions: th.Tensor | None = None

    # ------------------------------------------------------------------------ what a subclass defines

    @abstractmethod
    def _reset_states(self, mask: th.Tensor) -> None:
        """Draw fresh initial states for the envs where ``mask`` (bool, ``num_envs``) is True."""

    @abstractmethod
    def _advance(self, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Step every env's state with ``actions``; return its rewards (``float32``) and terminations."""

    @abstractmethod
    def observe(self) -> th.Tensor:
        """The current observation of every env (``float32``)."""

    # --------------------------------------------------------------------------------- VecEnv API

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Reseed the batch's generator (one generator serves all envs, so one seed is enough)."""
        if seed is not None:
            self.generator.manual_seed(seed)
        return [seed] * self.num_envs

    def reset(self) -> th.Tensor:
        self._reset_states(th.ones(self.num_envs, dtype=th.bool, device=self.device))
        self.episode_returns.zero_()
        self.episode_lengths.zero_()
        return self.observe()

    def step_async(self, actions: np.ndarray | th.Tensor) -> None:
        self._actions = th.as_tensor(actions, device=self.device)

    def step_wait(self) -> tuple[th.Tensor, th.Tensor, th.Tensor, list[dict[str, Any]]]:
        """SB3's step, with ``infos``: it reads the finished envs on the host, so it syncs every step
        (a rollout on the device uses :meth:`step_on_device` and :meth:`pop_episodes` instead)."""
        assert self._actions is not None, "step_async must come first"
        obs, rewards, dones = self.step_on_device(self._actions)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        episodes = self.pop_episodes()[-1]  # this step's
        if episodes:
            done_ids = dones.nonzero().flatten()
            truncated = self.truncated[done_ids].tolist()
            terminal = self.terminal_obs[done_ids]
            for k, (i, episode) in enumerate(zip(done_ids.tolist(), episodes, strict=True)):
                infos[i] = {"terminal_observation": terminal[k], "TimeLimit.truncated": truncated[k]}
                infos[i]["episode"] = episode
        return obs, rewards, dones, infos

    def step_on_device(self, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Step every env and autoreset the finished ones, without a host sync: observations, rewards and
        dones. :attr:`terminal_obs` and :attr:`truncated` describe this step until the next one; the
        episodes that ended wait on the device for :meth:`pop_episodes`."""
        rewards, terminated = self._advance(actions.reshape(self.num_envs, *self.action_space.shape))
        self.episode_returns += rewards
        self.episode_lengths += 1
        if self.max_episode_steps is None:
            self.truncated.zero_()
        else:
            # As SB3's Monitor reports it: a step that both terminates and hits the limit is no truncation.
            th.logical_and(self.episode_lengths >= self.max_episode_steps, ~terminated, out=self.truncated)
        dones = terminated | self.truncated
        self.terminal_obs.copy_(self.observe())
        self._ended.append((dones, self.episode_returns.clone(), self.episode_lengths.clone(), time.time()))
        if len(self._ended) >= MAX_PENDING_STEPS:  # a caller that never pops: bound the device memory
            self._finished.extend(self._copy_ended_to_host())
        self._reset_states(dones)
        self.episode_returns.masked_fill_(dones, 0)
        self.episode_lengths.masked_fill_(dones, 0)
        return self.observe(), rewards, dones

    def pop_episodes(self) -> list[list[dict[str, Any]]]:
        """The ``episode`` dicts (``{"r", "l", "t"}``) of the envs that ended at each step since the last
        call, one list per step in env order, written to the monitor file too: one host copy for them all."""
        steps, self._finished = [*self._finished, *self._copy_ended_to_host()], []
        return steps

    def _copy_ended_to_host(self) -> list[list[dict[str, Any]]]:
        if not self._ended:
            return []
        dones, returns, lengths, times = zip(*self._ended, strict=True)
        self._ended = []
        # One copy of everything: dones and lengths are exact in float64, as returns are.
        ended = th.stack([th.stack(dones), th.stack(returns), th.stack(lengths)]).double().cpu().numpy()
        steps = []
        for done, episode_returns, episode_lengths, end_time in zip(*ended, times, strict=True):
            ids = np.flatnonzero(done)
            steps.append(self.episodes.finish(episode_returns[ids], episode_lengths[ids].astype(np.int64), end_time))
        return steps

    def close(self) -> None:
        self.episodes.close()
