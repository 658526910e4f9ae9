"""Same seed and config on CPU, through the CLI: the same parameters, metrics, episodes and evaluations."""

import pytest

from relax_rl.cli import train_main
from tests.helpers.run_artifacts import assert_same_run, saved_state

RUN = ["--env", "CartPole-v1", "--total-timesteps", "400", "--n-envs", "2", "--eval-freq", "200", "--device", "cpu"]


def _train(run_dir, algo, seed):
    assert train_main([*RUN, "--algo", algo, "--seed", str(seed), "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.mark.parametrize("algo", ["relax_a2c", "a2c"])
def test_same_seed_same_run(algo, tmp_path):
    assert_same_run(_train(tmp_path / "first", algo, 7), _train(tmp_path / "second", algo, 7))


def test_another_seed_another_run(tmp_path):
    """The check above is not vacuous: the seed does reach the parameters."""
    first = saved_state(_train(tmp_path / "first", "relax_a2c", 7) / "final_model.zip")["policy.pth"]
    other = saved_state(_train(tmp_path / "other", "relax_a2c", 8) / "final_model.zip")["policy.pth"]
    assert any(not first[name].equal(other[name]) for name in first)
