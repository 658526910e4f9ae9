"""RelaxA2C's tensor rollout path: the same rollout as SB3's numpy path, kept on the device."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import VecEnvWrapper

from relax_rl.agents import RelaxA2C
from relax_rl.agents.buffers import TensorRolloutBuffer
from relax_rl.envs.torch_envs import CartPoleTorchEnv


class NumpyView(VecEnvWrapper):
    """A torch env seen through numpy, so that SB3's own collect_rollouts steps it."""

    def reset(self):
        return self.venv.reset().numpy()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = info["terminal_observation"].numpy()
        return obs.numpy(), rewards.numpy(), dones.numpy(), infos


def _collect(env, n_steps=16, seed=0):
    """One rollout of a fresh RelaxA2C on ``env`` (a short time limit, so that it bootstraps timeouts)."""
    model = RelaxA2C("MlpPolicy", env, n_steps=n_steps, gamma=0.9, gae_lambda=0.8, seed=seed, device="cpu")
    _, callback = model._setup_learn(n_steps * env.num_envs, callback=None)
    callback.init_callback(model)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_steps)
    return model


def test_tensor_rollout_equals_sb3s_numpy_rollout():
    """The same env, policy and seeds through both paths: the same observations, actions, rewards (with
    truncated episodes bootstrapped), episode starts, values, advantages and returns."""
    tensor_model = _collect(CartPoleTorchEnv(8, seed=1, max_episode_steps=7))
    numpy_model = _collect(NumpyView(CartPoleTorchEnv(8, seed=1, max_episode_steps=7)))
    tensor_buffer, numpy_buffer = tensor_model.rollout_buffer, numpy_model.rollout_buffer
    assert isinstance(tensor_buffer, TensorRolloutBuffer) and isinstance(numpy_buffer, RolloutBuffer)
    for name in ("observations", "actions", "rewards", "episode_starts", "log_probs", "advantages"):
        actual = getattr(tensor_buffer, name)
        expected = th.as_tensor(getattr(numpy_buffer, name)).reshape(actual.shape).to(actual.dtype)
        th.testing.assert_close(actual, expected, msg=name)
    np.testing.assert_allclose(tensor_buffer.values, numpy_buffer.values, rtol=1e-6)
    np.testing.assert_allclose(tensor_buffer.returns, numpy_buffer.returns, rtol=1e-6)
    assert (tensor_buffer.rewards != 1).any()  # some timeouts were bootstrapped: that part was compared too
    assert tensor_model.num_timesteps == numpy_model.num_timesteps == 16 * 8
    assert [e["l"] for e in tensor_model.ep_info_buffer] == [e["l"] for e in numpy_model.ep_info_buffer] != []
    assert th.equal(tensor_model._last_obs, th.as_tensor(numpy_model._last_obs))


def test_learn_on_a_torch_env_trains_with_the_one_update_step():
    env = CartPoleTorchEnv(64, seed=0)
    model = RelaxA2C("MlpPolicy", env, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64 * 5 * 4)
    assert model.num_timesteps == 64 * 5 * 4 and model._n_updates == 4
    assert (
        isinstance(model.rollout_buffer, TensorRolloutBuffer) and model.rollout_buffer.observations.device.type == "cpu"
    )
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    assert len(model.ep_info_buffer) > 0


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA GPU")
def test_learn_on_cuda_keeps_the_rollout_on_the_gpu():
    model = RelaxA2C("MlpPolicy", CartPoleTorchEnv(256, device="cuda"), seed=0, device="cuda")
    model.learn(256 * 5 * 2)
    assert model.rollout_buffer.observations.device.type == "cuda" and model._last_obs.device.type == "cuda"
