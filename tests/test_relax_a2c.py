"""RelaxA2C on the Stable-Baselines3 API: shapes, persistence, determinism, callbacks, logging, unbiasedness."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

from relax_rl import RelaxA2C
from relax_rl.agents import UnsupportedActionSpaceError
from tests.helpers.model_state import parameters_and_optimiser_states
from tests.helpers.recording import record_theta_estimates
from tests.helpers.stats import assert_unbiased

ENVS = {
    "discrete": lambda: IdentityEnv(4),
    "multidiscrete": lambda: IdentityEnvMultiDiscrete(3),
    "multibinary": lambda: IdentityEnvMultiBinary(3),
}


def small_model(env_fn, n_envs: int = 2, **kwargs) -> RelaxA2C:
    return RelaxA2C("MlpPolicy", make_vec_env(env_fn, n_envs=n_envs, seed=0), seed=0, device="cpu", **kwargs)


@pytest.mark.parametrize("space", ENVS)
@pytest.mark.parametrize("objective", ["logits", "params"])
def test_learns_and_predicts_every_discrete_space(space: str, objective: str) -> None:
    model = small_model(ENVS[space], cv_objective=objective).learn(100)
    env = ENVS[space]()
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action) and state is None
    batch = np.stack([obs, obs, obs])
    actions, _ = model.predict(batch)
    assert actions.shape == (3, *env.action_space.shape)


def test_save_load_round_trip_is_bit_exact(tmp_path) -> None:
    model = small_model(
        ENVS["discrete"],
        cv_learning_rate=3e-3,
        cv_objective="regression+logits",  # not the default, so that loading has something to restore
        policy_kwargs={"cv_temperature": 0.3},
    )
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = RelaxA2C.load(tmp_path / "model.zip", device="cpu")
    before, after = parameters_and_optimiser_states(model), parameters_and_optimiser_states(loaded)
    assert before.keys() == after.keys()
    assert any(k.startswith("cv_opt.") for k in before), "the control-variate optimiser has state to carry"
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert loaded.policy.control_variate.temperature().item() == model.policy.control_variate.temperature().item()
    assert (loaded.cv_objective, loaded.cv_learning_rate) == ("regression+logits", 3e-3)
    obs = np.arange(5) % 4  # IdentityEnv observes a Discrete(4) value
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_the_control_variates_activation_and_per_bit_head_are_options_that_a_saved_model_keeps(tmp_path) -> None:
    head = {"cv_activation_fn": torch.nn.ReLU, "cv_sub_action_net_arch": [16, 8]}
    model = small_model(ENVS["multibinary"], policy_kwargs=head)  # bits: the per-bit head by default
    cv = model.policy.control_variate
    widths = [layer.out_features for layer in cv.block_net if isinstance(layer, torch.nn.Linear)]
    assert widths == [16, 8, cv.z_dim // cv.n_blocks + 1]
    activations = [type(layer) for layer in [*cv.block_net, *cv.net] if not isinstance(layer, torch.nn.Linear)]
    assert activations and set(activations) == {torch.nn.ReLU}
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = RelaxA2C.load(tmp_path / "model.zip", device="cpu")
    assert str(loaded.policy.control_variate) == str(cv)
    for key, value in model.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key


def test_same_seed_gives_bit_identical_learning() -> None:
    runs = []
    for _ in range(2):
        model = RelaxA2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=3), seed=3, device="cpu")
        model.learn(300)
        runs.append(parameters_and_optimiser_states(model))
    for key, value in runs[0].items():
        assert torch.equal(value, runs[1][key]), key


def test_callbacks_fire(tmp_path) -> None:
    model = small_model(ENVS["discrete"])
    eval_env = make_vec_env(ENVS["discrete"], n_envs=1, seed=1)
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1e9, verbose=0)  # met at the first evaluation
    evaluation = EvalCallback(
        eval_env,
        eval_freq=20,
        n_eval_episodes=2,
        callback_on_new_best=stop,
        best_model_save_path=str(tmp_path),
        verbose=0,
    )
    checkpoint = CheckpointCallback(save_freq=10, save_path=str(tmp_path / "ckpt"), name_prefix="m")
    model.learn(2000, callback=[checkpoint, evaluation])
    assert model.num_timesteps < 2000, "StopTrainingOnRewardThreshold should have stopped training"
    assert (tmp_path / "best_model.zip").exists()
    assert list((tmp_path / "ckpt").glob("m_*_steps.zip"))


def test_tensorboard_keys_are_logged(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = small_model(ENVS["discrete"], tensorboard_log=str(tmp_path))
    model.learn(200, log_interval=1, tb_log_name="run")
    (run_dir,) = tmp_path.iterdir()
    tags = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    expected = {
        "train/policy_loss",
        "train/value_loss",
        "train/entropy_loss",
        "train/explained_variance",
        "train/learning_rate",
        "train/cv_loss",
        "train/temperature",
        "train/policy_grad_var",
        "train/policy_grad_var_a2c",
        "rollout/ep_rew_mean",
        "time/fps",
    }
    assert expected <= tags, expected - tags


def test_vecnormalize_vecframestack_and_set_env() -> None:
    venv = VecFrameStack(VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0)), n_stack=2)
    model = RelaxA2C("MlpPolicy", venv, seed=0, device="cpu").learn(100)
    model.set_env(VecFrameStack(VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=1)), n_stack=2))
    model.learn(100, reset_num_timesteps=False)
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=2)
    assert np.isfinite(mean)


class TupleActions(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Tuple((spaces.Discrete(2), spaces.Box(-1, 1, (1,))))


def test_unsupported_action_space_gets_a_clear_error() -> None:
    with pytest.raises(UnsupportedActionSpaceError, match="supports Discrete, MultiDiscrete, MultiBinary, Box action"):
        RelaxA2C("MlpPolicy", DummyVecEnv([TupleActions]), device="cpu")


def test_bad_objective_is_rejected() -> None:
    with pytest.raises(ValueError, match="cv_objective"):
        small_model(ENVS["discrete"], cv_objective="variance")


def test_learns_the_identity_task() -> None:
    """SB3's own smoke test for learning: the agent must copy its observation."""
    model = RelaxA2C(
        "MlpPolicy", make_vec_env(lambda: IdentityEnv(2), n_envs=4, seed=0), seed=0, device="cpu", learning_rate=3e-3
    )
    model.learn(3000)
    mean, _ = evaluate_policy(model, make_vec_env(lambda: IdentityEnv(2), n_envs=1, seed=1), n_eval_episodes=5)
    assert mean >= 90, f"mean return {mean} on a task whose optimum is 100"


class Bandit(gym.Env):
    """One step, three arms with known rewards, a constant observation."""

    REWARDS = np.array([1.0, -0.5, 2.0], dtype=np.float32)
    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([0.5, -0.5], dtype=np.float32), {}

    def step(self, action):
        return np.array([0.5, -0.5], dtype=np.float32), float(self.REWARDS[action]), True, False, {}


CORRECTED = {
    "pg_estimator": "all_action",
    "baseline": "value",
    "cv_data": "rollout",
    "critic_replay": 4,
    "critic_target": "corrected",
    "cv_objective": "regression",
    "normalize_advantage": False,
    "cv_steps": 2,
    "policy_kwargs": {"cv_arch": "per_sub_action"},
}

BANDIT_DESIGNS = {
    "relax-mlp": {"policy_kwargs": {"cv_arch": "mlp"}},
    "relax-linear": {"policy_kwargs": {"cv_arch": "linear"}},
    "relax-factorised": {"policy_kwargs": {"cv_arch": "factorised"}},
    "relax-replay-regression+logits-horizon": {
        "critic_replay": 4,
        "cv_steps": 3,
        "cv_objective": "regression+logits",
        "cv_horizon_input": True,
    },
    "relax-linear-reads-policy": {"policy_kwargs": {"cv_arch": "linear", "cv_reads_policy": True}},
    "all_action": {"pg_estimator": "all_action"},
    "all_action-replay-regression": {"pg_estimator": "all_action", "critic_replay": 4, "cv_objective": "regression"},
    "relax-centred": {"policy_kwargs": {"cv_arch": "centred"}},
    "relax-per_sub_action-phi-on-the-rollout": {
        "critic_replay": 4,
        "cv_data": "rollout",
        "policy_kwargs": {"cv_arch": "per_sub_action"},
    },
    "relax-vtrace-age-weighted": {"critic_replay": 4, "critic_target": "vtrace", "critic_half_life": 2.0},
    "all_action-centred-recomputed": {
        "pg_estimator": "all_action",
        "critic_replay": 4,
        "critic_target": "recomputed",
        "policy_kwargs": {"cv_arch": "centred"},
    },
    "all_action-per_sub_action-corrected": CORRECTED,
    "relax-the-control-variate-is-the-whole-baseline": {"baseline": "control_variate"},
}


def recorded_bandit_estimates(env: type[gym.Env], n_updates: int, **kwargs) -> tuple[RelaxA2C, torch.Tensor]:
    """ĝ^ℓ of ``n_updates`` updates with θ frozen and φ (and V) learning, from a policy far from uniform and a
    control variate far from its zero-initialised output, where every estimator would be A2C's."""
    model = RelaxA2C(
        "MlpPolicy",
        make_vec_env(env, n_envs=64, seed=0),
        n_steps=1,
        learning_rate=0.0,
        cv_learning_rate=1e-2,
        seed=0,
        device="cpu",
        **kwargs,
    )
    with torch.no_grad():
        model.policy.action_net.weight.normal_(0, 1.0)
        model.policy.action_net.bias.copy_(torch.tensor([0.5, -1.0, 0.2]))
        for p in model.policy.control_variate.parameters():
            p.add_(torch.randn_like(p))
    estimates = record_theta_estimates(model)
    cv_before = [p.detach().clone() for p in model.policy.control_variate.parameters()]
    model.learn(64 * n_updates)
    assert any(not torch.equal(a, b) for a, b in zip(cv_before, model.policy.control_variate.parameters(), strict=True))
    assert len(estimates) == n_updates
    return model, torch.cat(estimates)


def bandit_logits(model: RelaxA2C) -> torch.Tensor:
    with torch.no_grad():
        logits, *_ = model.policy.distribution_params_values_features(torch.tensor([[0.5, -0.5]]))
    return logits[0]


@pytest.mark.parametrize("design", BANDIT_DESIGNS)
def test_policy_gradient_estimate_is_unbiased_on_a_bandit(design: str) -> None:
    """Over many updates (φ learning, θ frozen), the mean ĝ^ℓ equals the exact ∇ E[r] for the logits."""
    model, estimates = recorded_bandit_estimates(Bandit, 300, **BANDIT_DESIGNS[design])
    p = torch.softmax(bandit_logits(model), -1)
    rewards = torch.as_tensor(Bandit.REWARDS)
    exact = p * (rewards - (p * rewards).sum())  # ∇_logits E[r]; the baseline V(s) adds no bias
    assert_unbiased(estimates, exact, f"RELAX-A2C, {design}")


class BitsBandit(Bandit):
    """One step, three bits, a reward with interactions: no control variate affine in the bits is right."""

    action_space = spaces.MultiBinary(3)

    @staticmethod
    def reward(bits: np.ndarray) -> float:
        a, b, c = (float(x) for x in bits)
        return 2.0 * a * b - 1.5 * b * c + 0.5 * a - c + 3.0 * a * b * c

    def step(self, action):
        return np.array([0.5, -0.5], dtype=np.float32), self.reward(action), True, False, {}


BITS_DESIGNS = {
    "default": {},  # bits' own: the all-action form, the per-bit q̂ as the whole baseline, fitted on the replay
    "relax-mlp": {"policy_kwargs": {"cv_arch": "mlp"}},
    "relax-per_sub_action": {"pg_estimator": "relax", "policy_kwargs": {"cv_arch": "per_sub_action"}},
    "all_action-linear": {"pg_estimator": "all_action", "baseline": "value", "policy_kwargs": {"cv_arch": "linear"}},
    "all_action-centred-phi-on-the-rollout": {
        "pg_estimator": "all_action",
        "baseline": "value",
        "critic_replay": 4,
        "cv_data": "rollout",
        "cv_steps": 1,
        "policy_kwargs": {"cv_arch": "centred"},
    },
    "all_action-per_sub_action-corrected": CORRECTED,
    "a2c-corrected": {**CORRECTED, "pg_estimator": "a2c"},
    "all_action-per_sub_action-the-control-variate-is-the-whole-baseline": {
        "pg_estimator": "all_action",
        "baseline": "control_variate",
        "critic_replay": 4,
        "cv_data": "replay",
        "cv_objective": "regression",
        "cv_steps": 2,
        "policy_kwargs": {"cv_arch": "per_sub_action"},
    },
}


@pytest.mark.parametrize("design", BITS_DESIGNS)
def test_policy_gradient_estimate_is_unbiased_on_bits_with_a_reward_that_is_not_additive(design: str) -> None:
    """A factored action whose reward has interactions: the exact gradient by enumerating the 8 actions."""
    model, estimates = recorded_bandit_estimates(BitsBandit, 300, **BITS_DESIGNS[design])
    p = torch.sigmoid(bandit_logits(model)).double()
    actions = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.double)
    probs = (actions * p + (1 - actions) * (1 - p)).prod(-1)
    rewards = torch.tensor([BitsBandit.reward(a.numpy()) for a in actions], dtype=torch.double)
    exact = (probs * rewards) @ (actions - p)  # ∇_logits E[r] = E[r (a − p)]
    assert_unbiased(estimates, exact, f"RELAX-A2C on bits, {design}")


class NaNRewardsAfter(gym.Wrapper):
    """Returns NaN rewards from step ``start`` on: a broken simulator, or a bug in a reward wrapper."""

    def __init__(self, env: gym.Env, start: int):
        super().__init__(env)
        self.start, self.t = start, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return obs, float("nan") if self.t > self.start else reward, terminated, truncated, info


def test_non_finite_updates_are_skipped_and_counted() -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, wrapper_class=NaNRewardsAfter, wrapper_kwargs={"start": 50})
    model = RelaxA2C("MlpPolicy", env, seed=0, device="cpu")
    model.learn(40)  # 4 healthy updates (n_steps=5, 2 envs)
    assert model.skipped_updates == 0
    model.learn(200, reset_num_timesteps=False)
    assert model.skipped_updates > 0 and model.bad_update_streak > 0
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    assert model.logger.name_to_value["train/skipped_updates"] == model.skipped_updates


def test_training_an_mlp_policy_on_several_cpu_threads_warns(recwarn):
    from relax_rl.run import torch_threads

    model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=4, device="cpu", seed=0)
    with torch_threads(2), pytest.warns(UserWarning, match="MLP policy on the CPU with 2 torch threads"):
        model.learn(4)
    with torch_threads(1):
        recwarn.clear()
        model.learn(4)
    assert not [w for w in recwarn if "torch threads" in str(w.message)]


def test_a_replay_that_runs_a_cnn_warns(recwarn):
    frames = make_vec_env(lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), n_envs=2, seed=0)
    with pytest.warns(UserWarning, match="critic replay runs the CNN on 4 x 256 replayed frames"):
        RelaxA2C("CnnPolicy", frames, n_steps=2, device="cpu").learn(4)
    vectors = make_vec_env(lambda: IdentityEnv(4), n_envs=2, seed=0)
    for policy, env, replay in (("CnnPolicy", frames, 0), ("MlpPolicy", vectors, 32)):
        recwarn.clear()
        RelaxA2C(policy, env, n_steps=2, critic_replay=replay, device="cpu").learn(4)
        assert not [w for w in recwarn if "CNN" in str(w.message)]
