"""``relax-rl tune`` end to end on tiny CartPole studies: real Optuna, real Ray, real training."""

import csv
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from relax_rl.cli.tune import main
from relax_rl.config import resolve_config
from relax_rl.run import RunResult
from relax_rl.tune import default_space_file, load_space
from relax_rl.tune.liveness import STALE_AFTER_S, is_stale, this_worker
from relax_rl.tune.trial import SeedCurves, seed_value
from tests.helpers.cli_output import one_line_error

REPO = Path(__file__).resolve().parent.parent
STUDY = "a2c_CartPole-v1"
# A2C is the fastest algorithm; 1000 timesteps on 2 envs is 100 updates and 4 evaluations.
TINY = ["--algo", "a2c", "--hyperparams", "n_envs=2", "--total-timesteps", "1000", "--eval-freq", "250", "--seeds", "1"]


def _load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(out / "journal.log"))))


def _check_best_yml(out: Path, study: optuna.Study) -> None:
    """best.yml is a ready configs/ file holding the best trial's parameters."""
    config = resolve_config("a2c", "CartPole-v1", 100, config_file=out / "best.yml")
    assert config.n_envs == 2 and config.total_timesteps == 1000
    for key, value in study.best_trial.params.items():
        assert config.algo_kwargs[key] == pytest.approx(value), key


def test_local_study_writes_its_outputs_and_counts_trials_in_total(tmp_path, capsys):
    out = tmp_path / "study"
    assert main([*TINY, "--trials", "3", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 3 and all("COMPLETE" in line for line in lines), lines
    for name in ("journal.log", "best.yml", "trials.md", "trials.csv", "optimization_history.png"):
        assert (out / name).is_file(), name
    assert (out / "param_importances.png").stat().st_size > 0
    study = _load(out)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for trial in study.trials:
        metrics = json.loads((out / "trials" / str(trial.number) / "s0" / "metrics.json").read_text())
        assert metrics["timesteps"] == 1000
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(row["number"]) for row in rows] == [0, 1, 2]
    assert {"learning_rate", "ent_coef", "vf_coef"} <= set(rows[0])
    assert (out / "trials.md").read_text().count("| COMPLETE |") == 3
    _check_best_yml(out, study)
    first = [(t.number, t.params, t.value) for t in study.trials]

    # --trials is the total: the same command again runs nothing, a larger N only what is missing.
    assert main([*TINY, "--trials", "3", "--out", str(out)]) == 0
    assert len(_load(out).trials) == 3
    assert main([*TINY, "--trials", "4", "--out", str(out)]) == 0
    study = _load(out)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert [(t.number, t.params, t.value) for t in study.trials[:3]] == first


def test_a_study_killed_with_sigkill_resumes_to_exactly_n_trials(tmp_path, capsys):
    out = tmp_path / "study"
    args = [*TINY, "--trials", "4", "--pruner", "none", "--out", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "relax_rl.cli", "tune", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Kill it once a trial has finished and the next one has started writing its run.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if not (out / "journal.log").is_file():
            continue
        trials = _load(out).trials
        running = [t for t in trials if t.state == TrialState.RUNNING]
        started = running and (out / "trials" / str(running[0].number) / "s0").is_dir()
        if started and any(t.state == TrialState.COMPLETE for t in trials):
            break
    assert process.poll() is None, process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _load(out).trials
    killed = next(t for t in before if t.state == TrialState.RUNNING)
    finished = [t for t in before if t.state == TrialState.COMPLETE]

    assert main(args) == 0  # the same command again, in-process
    assert f"trial {killed.number} was left RUNNING" in capsys.readouterr().out
    after = _load(out).trials
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    # Nothing finished was lost or run again, and the killed trial's configuration ran again, once.
    assert [(t.number, t.params, t.value) for t in complete[: len(finished)]] == [
        (t.number, t.params, t.value) for t in finished
    ]
    assert after[killed.number].state == TrialState.FAIL
    retries = [t for t in complete if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4
    assert not (out / "trials" / str(killed.number)).exists(), "the killed trial's half-written run was left"
    for trial in complete:
        assert (out / "trials" / str(trial.number) / "s0" / "metrics.json").is_file()
    _check_best_yml(out, _load(out))


def test_pruned_trials_count_and_stop_early(tmp_path):
    out = tmp_path / "study"
    assert main([*TINY, "--trials", "4", "--pruner", "halving", "--out", str(out)]) == 0
    trials = _load(out).trials
    assert len(trials) == 4 and {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    for trial in trials:
        finished_run = (out / "trials" / str(trial.number) / "s0" / "metrics.json").is_file()
        if trial.state == TrialState.PRUNED:
            assert len(trial.intermediate_values) < 4 and not finished_run
        else:
            assert sorted(trial.intermediate_values) == [0, 1, 2, 3] and finished_run


def test_sigint_stops_the_study_and_the_rerun_runs_the_interrupted_trial_again(tmp_path):
    out = tmp_path / "study"
    # Long enough a run (4000 timesteps) that the signal finds it training.
    args = [*TINY, "--total-timesteps", "4000", "--eval-freq", "1000", "--trials", "1", "--out", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "relax_rl.cli", "tune", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "trials" / "0" / "s0" / "monitor.csv").is_file():
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    assert "trial 0 will run again" in stdout.decode()
    # One instruction: rerun the study; not also the trial's own `train --resume` (the study owns its trials).
    assert "--resume" not in stdout.decode() + stderr.decode()
    interrupted = _load(out).trials[0]
    assert interrupted.state == TrialState.FAIL and not (out / "trials" / "0").exists()

    assert main(args) == 0
    trials = _load(out).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == interrupted.params and trials[1].user_attrs["retry_of"] == 0


def test_each_trial_averages_its_seeds(tmp_path):
    out = tmp_path / "study"
    args = ["--algo", "a2c", "--hyperparams", "n_envs=2", "--total-timesteps", "500", "--eval-freq", "250"]
    assert main([*args, "--seeds", "2", "--seed", "5", "--trials", "1", "--objective", "auc", "--out", str(out)]) == 0
    (trial,) = _load(out).trials
    curves = []  # each seed's evaluation returns, as SB3's EvalCallback saved them
    for seed in (5, 6):
        with np.load(out / "trials" / "0" / f"s{seed}" / "evaluations.npz") as saved:
            curves.append(saved["results"].mean(axis=1))
    assert [len(curve) for curve in curves] == [2, 2]
    assert trial.value == pytest.approx(statistics.fmean([curve.mean() for curve in curves]))
    assert trial.user_attrs["seed_values"] == pytest.approx([curve.mean() for curve in curves])
    # Steps 0, 1: seed 5's evaluations; 2, 3: the mean over both seeds of each evaluation.
    (first, second) = curves
    expected = [first[0], first[1], (first[0] + second[0]) / 2, (first[1] + second[1]) / 2]
    assert [trial.intermediate_values[step] for step in range(4)] == pytest.approx(expected)


def test_episodes_to_solve_is_censored_at_the_episodes_of_the_budget():
    evaluations = ((250, 20.0), (500, 40.0))
    unsolved = RunResult(Path("run"), {"solved_at_episode": None, "episodes": 40}, evaluations)
    solved = RunResult(Path("run"), {"solved_at_episode": 12, "episodes": 40}, evaluations)
    assert seed_value("episodes_to_solve", unsolved) == 40 and seed_value("episodes_to_solve", solved) == 12
    assert seed_value("final_return", solved) == 40.0 and seed_value("auc", solved) == 30.0


def test_seed_curves_give_running_means_at_consecutive_steps():
    curves = SeedCurves(sign=-1.0)
    curves.start_seed()
    assert [curves.add(v) for v in (10.0, 20.0)] == [(0, -10.0), (1, -20.0)]
    curves.start_seed()
    assert [curves.add(v) for v in (30.0, 40.0)] == [(2, -20.0), (3, -30.0)]


def test_stale_trials_are_those_whose_process_is_gone():
    def running(worker: dict, heartbeat: float) -> optuna.trial.FrozenTrial:
        attrs = {"worker": worker, "heartbeat": heartbeat}
        return optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=attrs)

    now = time.time()
    me = this_worker()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = {**me, "pid": int(finished.stdout)}
    elsewhere = {**me, "host": "another-host"}
    assert not is_stale(running(me, now), now)
    assert is_stale(running(gone, now), now)  # same host: known at once, heartbeat or not
    assert is_stale(running({**me, "started": "0"}, now), now)  # our pid, but a process started at another time
    assert not is_stale(running(elsewhere, now - 60), now)
    assert is_stale(running(elsewhere, now - STALE_AFTER_S - 1), now)


def test_the_bundled_spaces_give_both_algorithms_the_same_shared_keys():
    a2c = load_space(default_space_file("a2c"), "a2c", "CartPole-v1")
    relax = load_space(default_space_file("relax_a2c"), "relax_a2c", "CartPole-v1")
    assert "learning_rate" in a2c and set(a2c) < set(relax)
    assert {key: relax[key] for key in a2c} == a2c  # the paper's protocol: one shared space, plus each one's own


SPACE_TYPOS = {
    "learning_rat: {type: loguniform, low: 1.0e-4, high: 1.0e-2}": "learning_rat",
    "learning_rate: {type: normal, low: 1.0e-4, high: 1.0e-2}": "unknown type 'normal'",
    "learning_rate: {type: loguniform, low: 1.0e-4}": "loguniform needs high",
    "learning_rate: {type: uniform, low: 0.1, high: 0.5, step: 0.1}": "remove step",
    "learning_rate: {type: uniform, low: 0.5, high: 0.1}": "must be below high",
    "n_steps: {type: int, low: 0, high: 8, log: true}": "log scale needs low > 0",
    "n_timesteps: {type: int, low: 1000, high: 2000}": "--total-timesteps",
    "use_rms_prop: {type: categorical, choices: []}": "non-empty list",
    "n_steps: {type: categorical, choices: [5, -1]}": "n_steps=-1",
}


@pytest.mark.parametrize("entry", list(SPACE_TYPOS))
def test_search_space_mistakes_are_one_line_naming_the_key(tmp_path, capsys, entry):
    space = tmp_path / "space.yml"
    space.write_text(f"default:\n  {entry}\n")
    out = tmp_path / "study"
    assert main([*TINY, "--trials", "2", "--search-space", str(space), "--out", str(out)]) == 2
    message = one_line_error(capsys.readouterr().err)
    assert SPACE_TYPOS[entry] in message and entry.split(":")[0] in message, message
    assert not out.exists()


def test_bad_input_is_one_line_exit_2_and_leaves_no_study(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory")
    cases = {
        "--trials must be >= 1": [*TINY, "--trials", "0"],
        "--seeds must be >= 1": [*TINY, "--trials", "2", "--seeds", "0"],
        "CartPole-v9": ["--algo", "a2c", "--env", "CartPole-v9", "--trials", "2"],
        "one rollout": [*TINY, "--trials", "2", "--total-timesteps", "8"],
        "leaves no evaluation": [*TINY, "--trials", "2", "--eval-freq", "5000"],
        "does not accept key 'n_step'": [*TINY, "--trials", "2", "--hyperparams", "n_step=4"],
        "cannot write the study's journal": [*TINY, "--trials", "2", "--out", str(a_file / "study")],
        "give --storage a writable path": [*TINY, "--trials", "2", "--storage", str(a_file / "journal.log")],
        "--storage sqlite:": [*TINY, "--trials", "2", "--storage", f"sqlite:///{a_file}/x.db"],
        "--resume: there is no study": [*TINY, "--trials", "2", "--resume"],
    }
    for expected, args in cases.items():
        out = tmp_path / "study"
        argv = args if "--out" in args else [*args, "--out", str(out)]
        assert main(argv) == 2, expected
        message = one_line_error(capsys.readouterr().err)
        assert expected in message, message
        assert "--out" not in message or "--storage" not in args, message  # the option that is wrong, only
        assert not out.exists(), expected


def test_an_unreachable_ray_address_is_one_line_before_any_work(tmp_path, capsys):
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    out = tmp_path / "study"
    assert main([*TINY, "--trials", "2", "--out", str(out), "--ray", "127.0.0.1:1"]) == 2
    assert "cannot reach a Ray cluster" in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def test_without_ray_installed_ray_is_one_line_saying_how_to_install_it(tmp_path):
    out = tmp_path / "study"
    without_ray = (
        "import sys; sys.modules['ray'] = None\n"  # what `import ray` does where the extra is not installed
        "from relax_rl.cli.tune import main\n"
        f"raise SystemExit(main({[*TINY, '--trials', '2', '--out', str(out), '--ray', 'local']!r}))"
    )
    result = subprocess.run([sys.executable, "-c", without_ray], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and 'pip install -e ".[ray]"' in one_line_error(result.stderr)
    assert not out.exists()


def test_the_same_study_on_ray(ray_session, tmp_path, capsys):
    out = tmp_path / "study"
    args = [*TINY, "--trials", "3", "--out", str(out), "--ray", "local"]  # local: reuses the session's Ray
    assert main(args) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 3, lines
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [row["state"] for row in rows] == ["COMPLETE"] * 3
    for row in rows:
        trial_dir = out / row["note"]
        assert (trial_dir / "s0" / "metrics.json").is_file()
        assert json.loads((trial_dir / "s0" / "metrics.json").read_text())["torch_threads"] == 1
    assert (out / "optimization_history.png").is_file() and (out / "ray" / STUDY).is_dir()
    config = resolve_config("a2c", "CartPole-v1", 100, config_file=out / "best.yml")
    best = max(rows, key=lambda row: float(row["value"]))
    assert config.algo_kwargs["learning_rate"] == pytest.approx(float(best["learning_rate"]))

    # Rerunning (here with --resume) restores the experiment: nothing runs again.
    assert main([*args, "--resume"]) == 0
    assert list(csv.DictReader((out / "trials.csv").open())) == rows
    assert main([*TINY, "--trials", "4", "--out", str(out), "--ray", "local"]) == 2
    assert "cannot change num_samples" in capsys.readouterr().err


def test_the_default_evaluations_scale_with_the_budget():
    from relax_rl.tune.trial import default_eval_freq

    # A fixed 20 evaluations of 5 episodes took 19% of a 100k-timestep CartPole run (8.0 of 42.4 s), and more
    # of smaller ones; the 4 it gets now took 5% (1.5 of 32.1 s), side by side on this machine.
    assert [default_eval_freq(n) for n in (1_000, 100_000, 250_000, 500_000, 10_000_000)] == [
        250,
        25_000,
        25_000,
        25_000,
        500_000,
    ]
