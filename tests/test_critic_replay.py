"""The critic's replay and the estimator options of RelaxA2C (docs/design.md §4b): the order that keeps θ's
gradient unbiased, A2C as the control, the objectives, and persistence."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvMultiBinary

from relax_rl import RelaxA2C
from relax_rl.agents.buffers import whole_rollout
from relax_rl.envs import make_vec_env as make_vec_env_fast


def cartpole(**kwargs) -> RelaxA2C:
    return RelaxA2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4, seed=0), seed=0, device="cpu", **kwargs)


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


SCHEDULES = {
    "no-replay": {"critic_replay": 0},
    "replay": {"critic_replay": 3},  # φ on this rollout, V on the replay (the default)
    "replay-phi-on-the-replay": {"critic_replay": 3, "cv_data": "replay"},
    "replay-phi-on-the-rollout-vtrace": {"critic_replay": 3, "cv_data": "rollout", "critic_target": "vtrace"},
    "replay-recomputed-age-weighted": {"critic_replay": 3, "critic_target": "recomputed", "critic_half_life": 1.0},
}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("pg_estimator", ["relax", "all_action"])
def test_theta_gradient_is_taken_before_v_and_phi_train_on_the_rollout(schedule: str, pg_estimator: str) -> None:
    """The rule of docs/design.md §4b, checked at every update: when θ's estimate is formed, φ and V are as they
    were before the update, and the advantages are the buffer's (made by the V of collection time)."""
    replay = SCHEDULES[schedule]["critic_replay"]
    model = cartpole(
        pg_estimator=pg_estimator, critic_steps=3, cv_steps=2, cv_objective="regression+logits", **SCHEDULES[schedule]
    )
    policy = model.policy
    value_modules = torch.nn.ModuleList([policy.mlp_extractor.value_net, policy.value_net])
    estimate, train = policy.estimator.estimate, model.train
    checks = {"updates": 0, "phi_moved": 0, "v_moved": 0}
    state: dict = {}

    def checking_estimate(params, actions, advantages, control_variate, context, **kwargs):
        if state.pop("first", False):
            assert same(state["phi"], snapshot(policy.control_variate)), "φ trained before θ's gradient"
            assert same(state["v"], snapshot(value_modules)), "V trained before θ's gradient"
            rollout, _ = whole_rollout(model.rollout_buffer)
            assert torch.equal(advantages, rollout.advantages), "advantages not from collection time"
        return estimate(params, actions, advantages, control_variate, context, **kwargs)

    def checking_train():
        state.update(first=True, phi=snapshot(policy.control_variate), v=snapshot(value_modules))
        train()
        assert "first" not in state, "the update formed no estimate"
        checks["updates"] += 1
        checks["phi_moved"] += not same(state["phi"], snapshot(policy.control_variate))
        checks["v_moved"] += not same(state["v"], snapshot(value_modules))

    policy.estimator.estimate, model.train = checking_estimate, checking_train
    model.learn(4 * 5 * 12)
    assert checks == {"updates": 12, "phi_moved": 12, "v_moved": 12}
    if replay:
        assert len(model.replay.rollouts) == replay and len(model.replay) == replay * 4 * 5


def test_the_a2c_estimator_without_replay_is_sb3_a2c() -> None:
    """pg_estimator="a2c" is the control: on the same rollout and weights, one update equals SB3's A2C's."""
    sb3 = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4, seed=0), seed=0, device="cpu")
    env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
    ours = RelaxA2C("MlpPolicy", env, pg_estimator="a2c", critic_replay=0, device="cpu")
    ours.policy.load_state_dict(sb3.policy.state_dict(), strict=False)  # every weight but φ's
    _, callback = sb3._setup_learn(20, None)
    ours._setup_learn(20, None)
    sb3.collect_rollouts(sb3.env, callback, sb3.rollout_buffer, n_rollout_steps=sb3.n_steps)
    ours.rollout_buffer = copy.deepcopy(sb3.rollout_buffer)  # SB3's train shuffles its buffer in place
    initial = snapshot(sb3.policy)
    sb3.train()
    ours.train()
    assert not same(initial, snapshot(sb3.policy)), "the update must move the weights"
    theirs, mine = sb3.policy.parameters(), ours.policy.actor_critic_parameters()
    for name, (a, b) in zip(dict(sb3.policy.named_parameters()), zip(theirs, mine, strict=True), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=name)


def test_regression_leaves_the_temperature_alone_and_the_variance_objective_moves_it() -> None:
    for objective, moves in (("regression", False), ("regression+logits", True), ("logits", True)):
        model = cartpole(cv_objective=objective)
        tau = model.policy.control_variate.temperature().item()
        model.learn(400)
        moved = model.policy.control_variate.temperature().item() != tau
        assert moved == moves, objective


def test_the_temperature_stays_in_its_bounds() -> None:
    model = cartpole(cv_learning_rate=0.5, policy_kwargs={"cv_temperature_bounds": (0.3, 0.8)})
    model.learn(2000)
    assert 0.3 <= model.policy.control_variate.temperature().item() <= 0.8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pg_estimator": "exact"}, "pg_estimator must be one of relax, all_action, a2c"),
        ({"critic_replay": -1}, "critic_replay must be an integer >= 0"),
        ({"critic_steps": 0}, "critic_steps must be an integer >= 1"),
        ({"critic_batch_size": 0}, "critic_batch_size must be a positive integer"),
        ({"cv_objective": "mse"}, "cv_objective must be one of"),
        ({"pg_estimator": "all_action", "policy_kwargs": {"cv_arch": "mlp"}}, "affine"),
        ({"cv_data": "buffer"}, "cv_data must be one of"),
        ({"cv_batch_size": 0}, "cv_batch_size must be a positive integer"),
        ({"critic_target": "td"}, "critic_target must be one of"),
        ({"critic_half_life": 0.0}, "critic_half_life must be a positive number"),
        ({"critic_replay": 0, "critic_target": "vtrace"}, "set critic_replay > 0"),
        ({"critic_target": "corrected"}, "cv_arch linear, centred"),
        (
            {"critic_target": "corrected", "normalize_advantage": True, "policy_kwargs": {"cv_arch": "centred"}},
            "set normalize_advantage=False",
        ),
        (
            {
                "pg_estimator": "a2c",
                "critic_target": "corrected",
                "cv_objective": "logits",
                "policy_kwargs": {"cv_arch": "centred"},
            },
            "by regression",
        ),
        ({"policy_kwargs": {"cv_arch": "conv"}}, "cv_arch"),
        ({"baseline": "q"}, "baseline must be one of"),
        ({"pg_estimator": "a2c", "baseline": "control_variate"}, "use pg_estimator 'relax' or 'all_action'"),
    ],
)
def test_bad_options_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cartpole(**kwargs)


def test_all_action_needs_a_discrete_space() -> None:
    with pytest.raises(ValueError, match="needs a discrete action space"):
        RelaxA2C("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1, seed=0), pg_estimator="all_action", device="cpu")


@pytest.mark.parametrize(
    ("pg_estimator", "baseline"),
    [("relax", "value"), ("all_action", "value"), ("a2c", "value"), ("all_action", "control_variate")],
)
def test_every_estimator_learns_multibinary_and_round_trips(tmp_path, pg_estimator: str, baseline: str) -> None:
    env = make_vec_env(lambda: IdentityEnvMultiBinary(4), n_envs=4, seed=0)
    model = RelaxA2C(
        "MlpPolicy",
        env,
        pg_estimator=pg_estimator,
        baseline=baseline,
        critic_replay=2,
        cv_horizon_input=True,
        policy_kwargs={"cv_reads_policy": True},
        seed=0,
        device="cpu",
    )
    model.learn(400)
    model.save(tmp_path / "model")
    loaded = RelaxA2C.load(tmp_path / "model", env=env, device="cpu")
    assert (loaded.pg_estimator, loaded.baseline, loaded.critic_replay) == (pg_estimator, baseline, 2)
    assert loaded.cv_horizon_input
    assert loaded.policy.cv_horizon == model.n_steps and loaded.policy.cv_reads_policy
    obs = np.stack([IdentityEnvMultiBinary(4).reset(seed=s)[0] for s in range(5)])
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    for a, b in zip(snapshot(model.policy), snapshot(loaded.policy), strict=True):
        assert torch.equal(a, b)


def test_the_horizon_is_read_in_rollout_order() -> None:
    """Row j·n_envs + e is step j of env e, with h = n − j: the same rows SB3's buffer holds, unshuffled."""
    model = cartpole(n_steps=3, critic_replay=1)
    model.learn(12)
    rollout, horizon = whole_rollout(model.rollout_buffer)
    assert horizon.tolist() == [3] * 4 + [2] * 4 + [1] * 4
    buffer = model.rollout_buffer
    assert np.array_equal(rollout.observations.numpy(), buffer.observations.reshape(12, -1))
    assert np.array_equal(rollout.returns.numpy(), buffer.returns.reshape(12))


def test_the_replay_keeps_copies_of_a_tensor_rollout() -> None:
    """A tensor rollout buffer hands out views of storage the next rollout overwrites: the replay must
    hold copies, or every rollout in it would be the newest one."""
    env = make_vec_env_fast("CartPole-v1", 64, 0, backend="torch")
    model = RelaxA2C("MlpPolicy", env, critic_replay=3, seed=0, device="cpu")
    model.learn(3 * 64 * 5)
    observations = [rollout.observations for rollout in model.replay.rollouts]
    assert len(observations) == 3
    assert not torch.equal(observations[0], observations[1]) and not torch.equal(observations[1], observations[2])
    buffer = model.rollout_buffer.observations
    assert all(o.untyped_storage().data_ptr() != buffer.untyped_storage().data_ptr() for o in observations)


@pytest.mark.parametrize("baseline", ["value", "control_variate"])
@pytest.mark.parametrize("cv_data", ["rollout", "replay"])
def test_the_estimator_and_phi_read_the_return_where_the_control_variate_is_the_whole_baseline(
    baseline: str, cv_data: str
) -> None:
    """``baseline="value"``: θ's estimate reads A2C's advantage R̂ − V(s), and ĉ is fitted to what V leaves; with
    ``"control_variate"`` both read the return R̂ itself, so V (which still trains) is not in the baseline."""
    model = cartpole(critic_replay=2, cv_data=cv_data, baseline=baseline, cv_objective="regression")
    estimator, replay = model.policy.estimator, model.replay
    read: dict[str, list[torch.Tensor]] = {"estimate": [], "phi": [], "replay_rows": []}
    estimate, fit_phi, take = estimator.estimate, model._fit_phi, replay.take

    def recording_estimate(params, actions, f, *args, **kwargs):
        read["estimate"].append(f.clone())
        return estimate(params, actions, f, *args, **kwargs)

    def recording_fit_phi(batch_at):
        def recorded_batch_at(step):
            batch = batch_at(step)
            read["phi"].append(batch.advantages.clone())
            return batch

        return fit_phi(recorded_batch_at)

    def recording_take(indices):
        read["replay_rows"].append(indices)
        return take(indices)

    estimator.estimate, model._fit_phi, replay.take = recording_estimate, recording_fit_phi, recording_take
    model.learn(3 * 4 * model.n_steps)
    rollout, _ = whole_rollout(model.rollout_buffer)
    expected = rollout.returns if baseline == "control_variate" else rollout.advantages
    torch.testing.assert_close(read["estimate"][-1], expected)
    if cv_data == "rollout":
        torch.testing.assert_close(read["phi"][-1], expected)
        return
    # φ's last replay minibatch, with V as it was then (nothing trains after φ on the replay's schedule)
    rows = replay.rows
    with torch.no_grad():
        values = model.policy.predict_values(rows.observations).flatten()
    f = rows.returns if baseline == "control_variate" else rows.returns - values
    torch.testing.assert_close(read["phi"][-1], f[read["replay_rows"][-1]])
