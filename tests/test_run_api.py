"""The Run API (relax_rl.run): what train and resume return, the report hook, and a compare that resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from relax_rl.cli import compare as compare_cli
from relax_rl.config import resolve_config
from relax_rl.run import RunResult, finished_result, resume, train

TINY = {"total_timesteps": 400, "n_envs": 2, "eval_freq": 100, "checkpoint_freq": 0, "diagnose_freq": 0}


def test_train_returns_the_metrics_and_reports_every_evaluation(tmp_path):
    reports = []
    config = resolve_config("relax_a2c", "CartPole-v1", 1, device="cpu", **TINY)
    result = train(config, tmp_path / "run", report=lambda t, r: reports.append((t, r)))
    assert isinstance(result, RunResult) and result.run_dir == tmp_path / "run"
    assert result.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Every 100 timesteps over 2 envs: at 100, 200, 300, 400; the hook saw exactly what the result holds.
    assert [t for t, _ in reports] == [100, 200, 300, 400]
    assert tuple(reports) == result.evaluations
    assert all(9 <= r <= 500 for _, r in reports)  # CartPole returns of 5 evaluation episodes
    assert finished_result(result.run_dir) == result  # read back from the directory
    assert resume(result.run_dir) == result  # a finished run is left as it is


def test_what_the_report_hook_raises_ends_the_run_and_reaches_the_caller(tmp_path):
    class Prune(Exception):
        pass

    def report(timestep: int, mean_return: float) -> None:
        if timestep >= 200:
            raise Prune

    config = resolve_config("a2c", "CartPole-v1", 0, device="cpu", **TINY)
    with pytest.raises(Prune):
        train(config, tmp_path / "run", report=report)
    assert (tmp_path / "run" / "config.yml").is_file() and not (tmp_path / "run" / "metrics.json").exists()


def _compare_argv(out):
    return ["--env", "CartPole-v1", "--algos", "a2c", "relax_a2c", "--seeds", "2", "--workers", "1", "--out", str(out)]


def test_a_killed_compare_continues_where_it_stopped(tmp_path):
    """SIGKILL a compare after its first run finished; the same command again runs only what is missing."""
    out = tmp_path / "cmp"
    argv = [*_compare_argv(out), "--total-timesteps", "2000", "--n-envs", "2", "--checkpoint-freq", "500"]
    process = subprocess.Popen([sys.executable, "-m", "relax_rl.cli", "compare", *argv], start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("runs/*/*/metrics.json")):
        assert process.poll() is None and time.monotonic() < deadline, "the first run never finished"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the worker process too, mid-run
    process.wait()
    (first,) = out.glob("runs/*/*/metrics.json")
    finished_before = first.read_text()
    assert compare_cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["algo"], r["seed"], r["returncode"]) for r in results] == [
        ("relax_a2c", 0, 0),
        ("relax_a2c", 1, 0),
        ("a2c", 0, 0),
        ("a2c", 1, 0),
    ]
    assert all(r["metrics"]["timesteps"] == 2000 for r in results)
    assert first.read_text() == finished_before  # not run again
    # A second rerun has nothing left to do: no run directory changes.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/metrics.json")}
    assert compare_cli.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/metrics.json")} == stamps


def test_per_algorithm_hyperparameters_and_config_files(tmp_path, capsys):
    out = tmp_path / "cmp"
    tuned = tmp_path / "best.yml"
    tuned.write_text("CartPole-v1:\n  policy: MlpPolicy\n  n_envs: 2\n  n_timesteps: 200\n  learning_rate: 0.002\n")
    argv = [*_compare_argv(out), "--config", f"a2c={tuned}", "--hyperparams", "relax_a2c:cv_learning_rate=0.003"]
    assert compare_cli.main([*argv, "--total-timesteps", "200", "--n-envs", "2"]) == 0
    configs = {p.parent.parent.name: p.read_text() for p in out.glob("runs/*/*_s0/config.yml")}
    assert "learning_rate: 0.002" in configs["a2c"] and "cv_learning_rate: 0.003" in configs["relax_a2c"]
    capsys.readouterr()
    # The same out with other settings is refused, with one line.
    assert compare_cli.main([*_compare_argv(out), "--total-timesteps", "200", "--n-envs", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert "already exist with other settings" in error and "\n" not in error
    assert compare_cli.main([*_compare_argv(out), "--hyperparams", "ppo:gamma=0.9"]) == 2
    assert "'ppo' is not one of the compared --algos" in capsys.readouterr().err
    # A key only one of them has must be scoped to it (the README once showed this unscoped).
    assert compare_cli.main([*_compare_argv(out), "--hyperparams", "cv_learning_rate=1e-3"]) == 2
    error = capsys.readouterr().err.strip()
    assert "a2c has no cv_learning_rate; write relax_a2c:cv_learning_rate=VALUE" in error and "\n" not in error


WALL_CLOCK = ("wall_s", "eval_s", "sps")


def test_compare_on_ray_gives_the_runs_that_local_processes_give(tmp_path, ray_session):
    argv = ["--env", "CartPole-v1", "--algos", "a2c", "relax_a2c", "--seeds", "1", "--total-timesteps", "400"]
    argv += ["--n-envs", "2", "--eval-freq", "200"]
    assert compare_cli.main([*argv, "--workers", "2", "--out", str(tmp_path / "local")]) == 0
    assert compare_cli.main([*argv, "--ray", "local", "--out", str(tmp_path / "ray")]) == 0

    def runs(out):
        records = json.loads((out / "results.json").read_text())["runs"]
        return [(r["algo"], r["seed"], {k: v for k, v in r["metrics"].items() if k not in WALL_CLOCK}) for r in records]

    local, on_ray = runs(tmp_path / "local"), runs(tmp_path / "ray")
    assert len(local) == 2 and local == on_ray
    assert all(metrics["torch_threads"] == 1 for _, _, metrics in on_ray)


def test_compare_on_an_unreachable_ray_cluster_is_one_line_and_starts_nothing(tmp_path, capsys):
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    out = tmp_path / "cmp"
    assert compare_cli.main([*_compare_argv(out), "--total-timesteps", "200", "--ray", "127.0.0.1:9"]) == 2
    error = capsys.readouterr().err.strip()
    assert "cannot reach a Ray cluster" in error and "\n" not in error and "Traceback" not in error
    assert not out.exists()


def test_a_run_on_an_env_with_an_exact_reference_logs_its_critics_fit(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = resolve_config(
        "relax_a2c", "relax_rl/TargetMatching-D16-v0", 0, device="cpu", **{**TINY, "diagnose_freq": 200}
    )
    train(config, tmp_path / "run")
    (events,) = (tmp_path / "run").glob("tensorboard*/events.*")
    tags = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {"reference/v_rmse", "reference/v_mean_error", "reference/state_part_rmse"} <= set(tags), tags


class _SolvedAtOnce(gym.Env):
    """A one-step env whose every episode returns 1: solved (threshold 0.5) at episode 100."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 1.0, True, False, {}


gym.register("relax-rl-test/SolvedAtOnce-v0", entry_point=_SolvedAtOnce, reward_threshold=0.5)


@pytest.mark.parametrize("stop", [True, False], ids=["stop-at-solve", "train-on"])
def test_the_run_says_when_it_solves_and_stops_there_if_asked(stop, tmp_path, capsys):
    options = {**TINY, "total_timesteps": 1000, "eval_freq": 0}
    config = resolve_config(
        "relax_a2c", "relax-rl-test/SolvedAtOnce-v0", 0, device="cpu", stop_at_solve=stop, **options
    )
    metrics = train(config, tmp_path / "run").metrics
    assert metrics["solved_at_episode"] == 100
    out = capsys.readouterr().out
    assert out.count("solved at episode 100 (timestep 100): the mean of the last 100 returns reached 0.5") == 1
    assert ("stopping (stop_at_solve)" in out) == stop
    # Stopped in the rollout where it solved (2 envs x 5 steps), saved and reported as a finished run.
    assert metrics["timesteps"] == (100 if stop else 1000)
    assert (tmp_path / "run" / "final_model.zip").is_file()
