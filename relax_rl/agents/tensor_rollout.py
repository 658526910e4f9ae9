"""Rollout collection that stays on the device, for envs that step as tensors (:class:`TorchVecEnv`)."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from relax_rl.agents.buffers import TensorRolloutBuffer
from relax_rl.envs.torch_envs import TorchVecEnv


class TensorRolloutMixin(OnPolicyAlgorithm):
    """Collects rollouts from a :class:`TorchVecEnv` without leaving the device; any other env goes to SB3.

    This mirrors ``OnPolicyAlgorithm.collect_rollouts`` (the same callbacks, counters, ``ep_info_buffer``
    and bootstrapping of truncated episodes with the value of their terminal observation) into a
    :class:`TensorRolloutBuffer`, which the algorithm's ``train`` reads as it reads SB3's buffer: there is
    one update step for both paths. Inside the step loop nothing waits for the device: the finished
    episodes reach ``ep_info_buffer``, the monitor file and the callbacks at the rollout's end, as
    ``locals["rollout_episodes"]`` (``(timestep, episode)`` pairs) before ``on_rollout_end``, and each
    step's ``locals["infos"]`` holds empty dicts.
    """

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        if not isinstance(env, TorchVecEnv):
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        assert self._last_obs is not None, "No previous observation was provided"
        buffer = self._tensor_rollout_buffer()
        self.policy.set_training_mode(False)
        buffer.reset()
        callback.on_rollout_start()
        infos: list[dict[str, Any]] = [{} for _ in range(env.num_envs)]  # read by callbacks; see above
        step_timesteps: list[int] = []
        timeouts: list[tuple[th.Tensor, th.Tensor]] = []  # each step's truncated envs and last observations
        new_obs = dones = None
        for _ in range(n_rollout_steps):
            with th.no_grad():
                actions, values, log_probs = self.policy(self._last_obs.to(self.device))
            clipped_actions = self.policy.estimator.kind.to_env(actions)  # a Box's are stored as drawn
            new_obs, rewards, dones = env.step_on_device(clipped_actions)
            self.num_timesteps += env.num_envs
            step_timesteps.append(self.num_timesteps)
            callback.update_locals(locals())
            if not callback.on_step():
                self.ep_info_buffer.extend(episode for step in env.pop_episodes() for episode in step)
                return False
            timeouts.append((env.truncated.clone(), env.terminal_obs.clone()))
            buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs)
            self._last_obs = new_obs
            self._last_episode_starts = dones
        self._bootstrap_timeouts(buffer, timeouts)
        with th.no_grad():
            values = self.policy.predict_values(new_obs.to(self.device))
        buffer.compute_returns_and_advantage(last_values=values, dones=dones.to(self.device))
        rollout_episodes = [
            (timestep, episode)
            for timestep, episodes in zip(step_timesteps, env.pop_episodes(), strict=True)
            for episode in episodes
        ]
        # What _update_info_buffer does per step (torch envs report no is_success), once per rollout.
        self.ep_info_buffer.extend(episode for _, episode in rollout_episodes)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _bootstrap_timeouts(self, buffer: TensorRolloutBuffer, timeouts: list[tuple[th.Tensor, th.Tensor]]) -> None:
        """A timeout is no terminal state: add γ V(terminal observation) to its reward, for the whole
        rollout at once (V does not change during a rollout, so this is what a per-step bootstrap gives)."""
        truncated = th.stack([mask for mask, _ in timeouts])
        steps, envs = truncated.nonzero(as_tuple=True)  # the rollout's one wait for the device
        if len(steps):
            terminal_obs = th.stack([obs for _, obs in timeouts])[steps, envs]
            with th.no_grad():
                terminal_values = self.policy.predict_values(terminal_obs.to(self.device)).flatten()
            buffer.rewards[steps, envs] += self.gamma * terminal_values

    def _tensor_rollout_buffer(self) -> TensorRolloutBuffer:
        """The algorithm's buffer, replaced by a tensor one of the same size the first time it is needed."""
        if not isinstance(self.rollout_buffer, TensorRolloutBuffer):
            self.rollout_buffer = TensorRolloutBuffer(
                self.n_steps,
                self.observation_space,
                self.action_space,
                self.device,
                gamma=self.gamma,
                gae_lambda=self.gae_lambda,
                n_envs=self.n_envs,
            )
        return self.rollout_buffer
