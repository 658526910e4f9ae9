"""The batched multi-categorical is SB3's MultiCategoricalDistribution, computed at once."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces
from scipy.stats import chisquare
from stable_baselines3.common.distributions import MultiCategoricalDistribution

from relax_rl import RelaxA2C
from relax_rl.agents.distributions import BatchedMultiCategoricalDistribution, batched

NVEC = [4, 4, 4]


def test_values_are_sb3s() -> None:
    torch.manual_seed(0)
    logits = torch.randn(32, sum(NVEC), requires_grad=True)
    actions = torch.randint(0, 4, (32, len(NVEC))).float()  # as SB3's rollout buffer stores them
    ours = BatchedMultiCategoricalDistribution(NVEC).proba_distribution(logits)
    sb3 = MultiCategoricalDistribution(NVEC).proba_distribution(logits)
    for name, value, expected in [
        ("log_prob", ours.log_prob(actions), sb3.log_prob(actions)),
        ("entropy", ours.entropy(), sb3.entropy()),
    ]:
        assert value.shape == expected.shape == (32,), name
        assert torch.allclose(value, expected, atol=1e-6), name
        grad, expected_grad = (torch.autograd.grad(v.sum(), logits, retain_graph=True)[0] for v in (value, expected))
        assert torch.allclose(grad, expected_grad, atol=1e-6), name
    assert torch.equal(ours.mode(), sb3.mode())
    assert ours.get_actions(deterministic=True).shape == (32, len(NVEC))


def test_samples_follow_each_sub_actions_probabilities() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, -3.0, 0.0, 0.0, 1.0, 0.2, 0.4, 0.6, 0.8]]).expand(20_000, -1)
    sample = BatchedMultiCategoricalDistribution(NVEC).proba_distribution(logits).sample()
    assert sample.shape == (20_000, 3)
    for i, block in enumerate(logits[0].split(4)):
        observed = torch.bincount(sample[:, i], minlength=4).numpy()
        expected = torch.softmax(block.double(), -1).numpy() * observed.sum()
        assert chisquare(observed, expected).pvalue > 1e-3, i


def test_only_sub_actions_of_one_size_are_batched() -> None:
    assert isinstance(batched(MultiCategoricalDistribution([3, 3])), BatchedMultiCategoricalDistribution)
    mixed = MultiCategoricalDistribution([3, 2])
    assert batched(mixed) is mixed
    with pytest.raises(ValueError, match="one size"):
        BatchedMultiCategoricalDistribution([3, 2])


def test_relax_a2c_acts_through_the_batched_distribution() -> None:
    import gymnasium as gym

    class Matching(gym.Env):
        observation_space = spaces.Box(-1, 1, (2,))
        action_space = spaces.MultiDiscrete([4, 4, 4])

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), float((action == 1).mean()), True, False, {}

    model = RelaxA2C("MlpPolicy", Matching(), n_steps=4, seed=0, device="cpu")
    assert isinstance(model.policy.action_dist, BatchedMultiCategoricalDistribution)
    model.learn(16)
    action, _ = model.predict(Matching().observation_space.sample())
    assert action.shape == (3,) and Matching.action_space.contains(action)


SPACES = {
    "discrete": spaces.Discrete(5),
    "multidiscrete": spaces.MultiDiscrete([4, 4, 4]),
    "multidiscrete-mixed": spaces.MultiDiscrete([3, 5, 2]),  # a draw per block, in SB3's order
    "multibinary": spaces.MultiBinary(6),
    "box": spaces.Box(-1.0, 1.0, (3,)),
}


@pytest.mark.parametrize("name", SPACES)
def test_the_policy_acts_with_sb3s_distributions_random_numbers(name: str) -> None:
    """The policy draws its actions from the distribution parameters without SB3's distribution objects: the
    same actions and log-probabilities as those objects, for the same generator state."""
    space = SPACES[name]
    policy = RelaxA2C("MlpPolicy", _one_step_env(space), seed=0, device="cpu").policy
    obs = torch.randn(64, 2)
    for deterministic in (False, True):
        torch.manual_seed(1)
        actions, values, log_prob = policy(obs, deterministic=deterministic)
        torch.manual_seed(1)
        with torch.no_grad():  # what ActorCriticPolicy.forward does, through the distribution objects
            distribution = policy.get_distribution(obs)
            expected = distribution.get_actions(deterministic=deterministic)
            expected_log_prob = distribution.log_prob(expected)
        assert torch.equal(actions, expected.reshape((-1, *space.shape))), deterministic
        torch.testing.assert_close(log_prob, expected_log_prob)
        assert values.shape == (64, 1)
        # predict's path: the same actions, and the env's dtype and shape
        torch.manual_seed(1)
        predicted = policy._predict(obs, deterministic=deterministic)
        assert torch.equal(predicted.reshape(actions.shape), actions)


def _one_step_env(space: spaces.Space):
    import gymnasium as gym

    class OneStep(gym.Env):
        observation_space = spaces.Box(-1, 1, (2,))
        action_space = space

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, True, False, {}

    return OneStep()
