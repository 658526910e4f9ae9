"""RelaxA2C's tensor rollout path: the same rollout as SB3's numpy path, kept on the device."""

import inspect
import warnings

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import VecEnvWrapper

from relax_rl.agents import RelaxA2C
from relax_rl.agents.buffers import TensorRolloutBuffer
from relax_rl.agents.update_log import log_update
from relax_rl.envs.torch_envs import CartPoleTorchEnv
from relax_rl.run.callbacks import SolveTracker
from tests.helpers.host_syncs import HostSyncs


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


def _collect(env, n_steps=16, seed=0, callback=None, device="cpu"):
    """One rollout of a fresh RelaxA2C on ``env`` (a short time limit, so that it bootstraps timeouts)."""
    model = RelaxA2C("MlpPolicy", env, n_steps=n_steps, gamma=0.9, gae_lambda=0.8, seed=seed, device=device)
    _, callback = model._setup_learn(n_steps * env.num_envs, callback=callback)
    callback.init_callback(model)
    callback.on_training_start(locals(), globals())
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_steps)
    return model, callback


def test_tensor_rollout_equals_sb3s_numpy_rollout():
    """The same env, policy and seeds through both paths: the same observations, actions, rewards (with
    truncated episodes bootstrapped), episode starts, values, advantages and returns."""
    trackers = SolveTracker(None), SolveTracker(None)
    tensor_model, _ = _collect(CartPoleTorchEnv(8, seed=1, max_episode_steps=7), callback=trackers[0])
    numpy_model, _ = _collect(NumpyView(CartPoleTorchEnv(8, seed=1, max_episode_steps=7)), callback=trackers[1])
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
    # Episodes reach the callbacks at the rollout's end on the device, each with the timestep it ended at.
    assert trackers[0].returns == trackers[1].returns and trackers[0].timesteps == trackers[1].timesteps
    assert len(set(trackers[0].timesteps)) > 1
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


CUDA = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA GPU")


@CUDA
def test_learn_on_cuda_keeps_the_rollout_on_the_gpu():
    model = RelaxA2C("MlpPolicy", CartPoleTorchEnv(256, device="cuda"), seed=0, device="cuda")
    model.learn(256 * 5 * 2)
    assert model.rollout_buffer.observations.device.type == "cuda" and model._last_obs.device.type == "cuda"


def _rollout_syncs(n_steps: int) -> tuple[HostSyncs, RelaxA2C]:
    """The host waits in the second rollout of a model on a torch env with a short time limit (both kinds
    of episode end happen)."""
    model, callback = _collect(CartPoleTorchEnv(16, seed=1, max_episode_steps=7), n_steps=n_steps)
    with HostSyncs() as syncs:
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_steps)
    return syncs, model


def test_the_rollout_waits_for_the_device_a_fixed_number_of_times_not_once_per_step():
    """No .item(), .cpu(), nonzero or branch on a tensor inside the step loop: a rollout of 40 steps waits
    as often as one of 5 (once for the timeouts to bootstrap, once to copy the finished episodes)."""
    (short, _), (long, model) = _rollout_syncs(5), _rollout_syncs(40)
    assert long.count == short.count and long.total <= 3, long.count
    buffer = model.rollout_buffer
    assert (buffer.rewards != 1).any() and buffer.episode_starts.sum() > 16  # timeouts and terminations
    assert len(model.ep_info_buffer) > 16


def test_the_update_logs_with_one_wait_for_the_device():
    model, _ = _collect(CartPoleTorchEnv(16, seed=1, max_episode_steps=7))
    lines, first = inspect.getsourcelines(log_update)
    in_log_update = range(first, first + len(lines))
    with HostSyncs() as syncs:
        model.train()
    logging = sum(
        n
        for where, n in syncs.count.items()
        if where.startswith("update_log.py:") and int(where.split(":")[1]) in in_log_update
    )
    assert logging == 1, syncs.count
    logged = model.logger.name_to_value
    assert {"train/policy_grad_var_a2c", "train/explained_variance", "train/cv_loss", "train/value_loss"} <= set(logged)


@CUDA
def test_the_rollout_on_cuda_syncs_per_rollout_not_per_step():
    """CUDA's own account: with sync debugging on, a rollout of 40 steps warns as often as one of 5."""
    counts = []
    for n_steps in (5, 40):
        model, callback = _collect(
            CartPoleTorchEnv(256, seed=1, max_episode_steps=7, device="cuda"), n_steps, device="cuda"
        )
        th.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            th.cuda.set_sync_debug_mode("warn")
            try:
                assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_steps)
            finally:
                th.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    assert counts[0] == counts[1] <= 4, counts
