"""train.py / evaluate.py end to end on tiny budgets, and every bad-input path (exit 2, one line)."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO

from relax_rl import RelaxA2C
from relax_rl.cli import evaluate_main, train_main
from relax_rl.run import detect_algo, read_model_data
from relax_rl.run.callbacks import SolveTracker
from relax_rl.run.saving import atomic_write
from relax_rl.safe_load import NORMALIZATION_ENTRY
from tests.helpers.cli_output import one_line_error

REPO = Path(__file__).resolve().parent.parent
ALGOS = ["a2c", "relax_a2c"]
TINY = ["--total-timesteps", "400", "--n-envs", "2", "--eval-freq", "100", "--checkpoint-freq", "200"]


@pytest.fixture(scope="module", params=ALGOS)
def trained(request, tmp_path_factory):
    """One tiny training run per algorithm: (algo, log_dir, run_dir, the arguments used)."""
    algo = request.param
    log_dir = tmp_path_factory.mktemp(algo)
    args = ["--algo", algo, "--env", "CartPole-v1", "--seed", "3", "--log-dir", str(log_dir), *TINY]
    assert train_main(args) == 0
    return algo, log_dir, log_dir / algo / "CartPole-v1_s3", args


def test_run_directory_holds_every_artifact(trained):
    algo, _, run_dir, _ = trained
    for name in ("config.yml", "metrics.json", "monitor.csv", "final_model.zip", "best_model.zip"):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "rl_model_200_steps.zip",
        "rl_model_400_steps.zip",
    ]
    assert list(run_dir.glob("tensorboard_*/events.out.tfevents.*"))
    assert not list(run_dir.rglob(".*.tmp-*")), "atomic saves left a temporary file"
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert (config["algo"], config["env"], config["seed"], config["total_timesteps"]) == (algo, "CartPole-v1", 3, 400)


def test_metrics_are_complete_and_consistent(trained):
    algo, _, run_dir, _ = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["algo"], metrics["env"], metrics["seed"], metrics["timesteps"]) == (algo, "CartPole-v1", 3, 400)
    assert metrics["solve_threshold"] == 475 and metrics["solve_window"] == 100
    monitor_rows = (run_dir / "monitor.csv").read_text().splitlines()[2:]
    assert metrics["episodes"] == len(monitor_rows) > 0
    assert metrics["final_mean_return"] == pytest.approx(np.mean([float(r.split(",")[0]) for r in monitor_rows]))
    for key in ("solved_at_episode", "solved_at_timestep", "solved_at_episode_195", "solved_at_timestep_195"):
        assert metrics[key] is None  # 400 steps cannot solve CartPole
    assert metrics["extra_thresholds"] == {"195": {"solved_at_episode": None, "solved_at_timestep": None}}
    assert metrics["sps"] > 0 and metrics["wall_s"] > 0


def test_existing_run_directory_is_refused(trained, capsys):
    _, _, run_dir, args = trained
    before = sorted(p.name for p in run_dir.iterdir())
    assert train_main(args) == 2
    assert "already holds a finished run" in one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in run_dir.iterdir()) == before


def _checkpoints_only(run_dir: Path, target: Path) -> Path:
    """``target``, a run directory holding only ``run_dir``'s checkpoints: a run interrupted before its end."""
    (target / "checkpoints").mkdir(parents=True)
    for checkpoint in (run_dir / "checkpoints").glob("*.zip"):
        (target / "checkpoints" / checkpoint.name).write_bytes(checkpoint.read_bytes())
    return target


def test_an_interrupted_run_in_the_way_is_pointed_to_resume(trained, tmp_path, capsys):
    _, _, run_dir, args = trained
    interrupted = _checkpoints_only(run_dir, tmp_path / "interrupted")
    assert train_main([*args, "--run-dir", str(interrupted)]) == 2
    assert f"continue it with --resume {interrupted}" in one_line_error(capsys.readouterr().err)


def test_evaluate_json_prints_one_object(trained, capsys):
    algo, _, run_dir, _ = trained
    assert evaluate_main(["--model", str(run_dir / "final_model.zip"), "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON object
    assert result["episodes"] == 2 and result["algo"] == algo and result["env"] == "CartPole-v1"
    assert result["std_return"] >= 0 and result["mean_return"] == pytest.approx(np.mean(result["returns"]))


def test_evaluate_reads_a_checkpoint_with_the_env_from_its_run(trained, capsys):
    _, _, run_dir, _ = trained
    model = run_dir / "checkpoints" / "rl_model_200_steps.zip"
    assert evaluate_main(["--model", str(model), "--episodes", "1", "--deterministic"]) == 0
    assert "mean return" in capsys.readouterr().out


def test_algorithm_detection(trained, tmp_path):
    algo, _, run_dir, _ = trained
    assert detect_algo(read_model_data(run_dir / "best_model.zip")) == algo
    PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, device="cpu").save(tmp_path / "ppo.zip")
    assert detect_algo(read_model_data(tmp_path / "ppo.zip")) == "ppo"


def test_normalized_run_saves_and_reuses_statistics(tmp_path, capsys):
    args = ["--algo", "a2c", "--log-dir", str(tmp_path), *TINY, "--hyperparams", "normalize={norm_reward: false}"]
    assert train_main(args) == 0
    run_dir = tmp_path / "a2c" / "CartPole-v1_s0"
    for name in ("vecnormalize", "best_model_vecnormalize"):  # SB3's pickle, and JSON for the safe loader
        assert (run_dir / f"{name}.pkl").is_file() and (run_dir / f"{name}.json").is_file()
    evaluate = ["--model", str(run_dir / "final_model.zip"), "--episodes", "1"]
    assert evaluate_main(evaluate) == 0
    # A model saved before the statistics travelled inside it: only the files beside it hold them.
    _drop_entry(run_dir / "final_model.zip", NORMALIZATION_ENTRY)
    (run_dir / "vecnormalize.json").unlink()
    capsys.readouterr()
    assert evaluate_main(evaluate) == 2
    assert "exist only as a pickle; pass --unsafe-load only if you trust" in one_line_error(capsys.readouterr().err)
    assert evaluate_main([*evaluate, "--unsafe-load"]) == 0


def _drop_entry(path: Path, entry: str) -> None:
    with zipfile.ZipFile(path) as archive:
        kept = {name: archive.read(name) for name in archive.namelist() if name != entry}
    assert len(kept) == len(archive.namelist()) - 1
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in kept.items():
            archive.writestr(name, data)


def test_normalisation_statistics_travel_with_a_copied_model(tmp_path, capsys):
    """A normalised model copied out of its run directory evaluates as it does in place (issue 14)."""
    args = [
        "--algo",
        "a2c",
        "--env",
        "Acrobot-v1",
        "--log-dir",
        str(tmp_path),
        *TINY,
        "--hyperparams",
        "normalize=true",
    ]
    assert train_main(args) == 0
    model = tmp_path / "a2c" / "Acrobot-v1_s0" / "final_model.zip"
    elsewhere = tmp_path / "elsewhere" / "model.zip"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(model.read_bytes())
    capsys.readouterr()
    runs = []
    for path in (model, elsewhere):
        assert evaluate_main(["--model", str(path), "--env", "Acrobot-v1", "--episodes", "2", "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out)["returns"])
    assert runs[0] == runs[1]
    # Without them (the entry removed), the same policy on raw observations acts differently.
    _drop_entry(elsewhere, NORMALIZATION_ENTRY)
    assert evaluate_main(["--model", str(elsewhere), "--env", "Acrobot-v1", "--episodes", "2", "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)["returns"]
    assert raw != runs[0]


def test_progress_lines_when_not_on_a_terminal_and_a_bar_on_request(tmp_path, capsys):
    args = ["--algo", "a2c", *TINY, "--eval-freq", "0", "--checkpoint-freq", "0"]
    assert train_main([*args, "--run-dir", str(tmp_path / "lines")]) == 0  # capsys's stdout is no terminal
    out = capsys.readouterr().out
    # The summary gives both rates: with the evaluations (what the progress lines show) and without.
    assert re.search(
        r"\d+ timesteps, \d+ episodes, [\d.]+ s \([\d.]+ s of it evaluating\): \d+ SPS, \d+ SPS training only", out
    )
    lines = [line for line in out.splitlines() if line.startswith("timesteps ")]
    assert len(lines) == 1  # the final one: a tiny run ends before the first 30 s are up
    assert re.fullmatch(
        r"timesteps 400/400 \(100%\) \| episodes \d+ \| mean return [\d.]+ \| \d+ SPS \| ETA 0:00:00", lines[0]
    )
    assert train_main([*args, "--run-dir", str(tmp_path / "bar"), "--progress"]) == 0
    assert "timesteps 400/400" not in capsys.readouterr().out


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / script), *args], capture_output=True, text=True, cwd=REPO, check=False
    )


@pytest.mark.parametrize("content", [None, os.urandom(2048)], ids=["missing", "random-bytes"])
def test_evaluate_bad_model_file_exits_2_without_traceback(tmp_path, content):
    model = tmp_path / "model.zip"
    if content is not None:
        model.write_bytes(content)
    done = _run_script("evaluate.py", "--model", str(model), "--env", "CartPole-v1")
    assert done.returncode == 2 and done.stdout == ""
    assert str(model) in one_line_error(done.stderr)


def test_evaluate_refuses_another_algorithms_model(tmp_path, capsys):
    PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, device="cpu").save(tmp_path / "ppo.zip")
    assert evaluate_main(["--model", str(tmp_path / "ppo.zip"), "--env", "CartPole-v1"]) == 2
    assert "ppo model" in one_line_error(capsys.readouterr().err)


def test_evaluate_needs_an_env_without_a_run_config(tmp_path, trained, capsys):
    _, _, run_dir, _ = trained
    lonely = tmp_path / "lonely" / "model.zip"
    lonely.parent.mkdir()
    lonely.write_bytes((run_dir / "final_model.zip").read_bytes())
    assert evaluate_main(["--model", str(lonely)]) == 2
    assert "--env" in one_line_error(capsys.readouterr().err)


def test_evaluate_takes_a_run_directory_for_its_final_model(trained, capsys):
    _, _, run_dir, _ = trained
    assert evaluate_main(["--model", str(run_dir), "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1


def test_evaluate_on_a_run_directory_without_a_final_model_names_its_newest_checkpoint(trained, tmp_path, capsys):
    _, _, run_dir, _ = trained
    unfinished = _checkpoints_only(run_dir, tmp_path / "unfinished")
    assert evaluate_main(["--model", str(unfinished)]) == 2
    message = one_line_error(capsys.readouterr().err)
    assert "without a final_model.zip" in message and "rl_model_400_steps.zip" in message


def test_evaluate_on_another_env_than_the_runs_says_which_it_was_trained_on(trained, capsys):
    _, _, run_dir, _ = trained
    model = str(run_dir / "final_model.zip")
    assert evaluate_main(["--model", model, "--env", "CartPole-v0", "--episodes", "1"]) == 0
    assert "note: the model was trained on CartPole-v1; evaluated on CartPole-v0 as asked" in capsys.readouterr().err


class _TupleActions(gym.Env):
    """An env whose action space no A2C variant supports."""

    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


gym.register("relax-rl-test/TupleActions-v0", entry_point=_TupleActions, max_episode_steps=10)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--env", "CartPol-v1"], "CartPole-v0"),
        (["--env", "relax-rl-test/TupleActions-v0"], "cannot train on relax-rl-test/TupleActions-v0"),
        (["--hyperparams", "learning_rat=0.1"], "'learning_rat'"),
        (["--hyperparams", "gamma"], "key=value"),
        (["--resume", "runs/x"], "--resume continues runs/x with the settings in its config.yml; drop --"),
        (["--total-timesteps", "0"], "--total-timesteps must be >= 1"),
        (["--hyperparams", "learning_rate=fast"], "neither a number nor lin_<number>"),
        (["--max-bad-updates", "-1"], "--max-bad-updates must be >= 0"),
        (["--hyperparams", "checkpoint_freq=-5"], "checkpoint_freq must be an integer >= 0, not -5"),
        # What a newcomer typed (issue 14): each stops before anything is built.
        (["--hyperparams", "n_steps=five"], "n_steps must be an integer, not 'five'"),
        (["--hyperparams", "n_steps=0"], "n_steps must be in [1, inf), not 0"),
        (["--hyperparams", "gamma=2.5"], "gamma must be in (0, 1], not 2.5"),
        (["--hyperparams", "ent_coef=-0.1"], "ent_coef must be in [0, inf), not -0.1"),
        (["--hyperparams", "learning_rate=-1e-3"], "neither a number nor lin_<number>"),
        (["--hyperparams", "use_rms_prop=maybe"], "use_rms_prop must be true or false"),
        (["--hyperparams", "policy_kwargs={net_arc: [8]}"], "does not accept 'net_arc'; did you mean: net_arch"),
        (["--hyperparams", "policy_kwargs=dict(net_arch=[8"], "policy_kwargs: cannot read"),
        (["--hyperparams", "policy_kwargs=[8, 8]"], "policy_kwargs must be a mapping"),
        (["--total-timesteps", "10"], "less than one rollout (n_envs 8 x n_steps 5 = 40 timesteps)"),
        (["--n-envs", "100000", "--total-timesteps", "5e5"], "n_timesteps 500000 buys a single update"),
        (["--config", "missing.yml"], "cannot read config file missing.yml"),
    ],
    ids=[
        "unknown-env",
        "unsupported-action-space",
        "config-typo",
        "malformed-override",
        "resume-with-run-options",
        "bad-budget",
        "bad-schedule",
        "bad-max-bad-updates",
        "bad-checkpoint-freq-key",
        "n-steps-not-a-number",
        "n-steps-zero",
        "gamma-above-one",
        "negative-entropy-coefficient",
        "negative-learning-rate",
        "bool-not-a-bool",
        "policy-kwargs-typo",
        "zoo-syntax-unclosed",
        "policy-kwargs-not-a-mapping",
        "budget-below-one-rollout",
        "budget-of-one-update",
        "missing-config-file",
    ],
)
def test_train_bad_input_exits_2_with_one_line(algo, args, expected, tmp_path, capsys):
    assert train_main(["--algo", algo, "--log-dir", str(tmp_path), *args]) == 2
    assert expected in one_line_error(capsys.readouterr().err)
    assert not list(tmp_path.iterdir()), "a failed run left a directory"


def test_linear_learning_rate_schedule(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--algo", "relax_a2c", "--run-dir", str(run_dir), *TINY, "--eval-freq", "0", "--checkpoint-freq", "0"]
    assert train_main([*args, "--hyperparams", "learning_rate=lin_1e-3", "cv_learning_rate=lin_2e-3"]) == 0
    model = RelaxA2C.load(run_dir / "final_model.zip")
    assert (model.lr_schedule(1.0), model.lr_schedule(0.25)) == pytest.approx((1e-3, 2.5e-4))
    assert (model.cv_lr_schedule(1.0), model.cv_lr_schedule(0.5)) == pytest.approx((2e-3, 1e-3))


def test_a_run_that_fails_in_training_before_its_first_checkpoint_leaves_nothing(tmp_path, capsys):
    # A policy option that only the policy's constructor can refuse: the run directory was made by then.
    args = ["--algo", "relax_a2c", "--log-dir", str(tmp_path / "runs"), *TINY]
    assert train_main([*args, "--hyperparams", 'policy_kwargs=dict(cv_arch="lin")']) == 2
    assert "cv_arch must be one of" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
    assert train_main([*args, "--hyperparams", 'policy_kwargs=dict(cv_arch="linear", net_arch=[16])']) == 0


def test_yaml_errors_give_the_line(tmp_path, capsys):
    config = tmp_path / "bad.yml"
    config.write_text("CartPole-v1:\n  gamma: 0.9\n  n_steps: [5\n")
    assert train_main(["--algo", "a2c", "--config", str(config), "--log-dir", str(tmp_path / "runs")]) == 2
    assert re.search(r"bad.yml is not valid YAML \(line \d+, column \d+\)", one_line_error(capsys.readouterr().err))


def test_a_config_file_overlays_the_bundled_one(tmp_path):
    config = tmp_path / "lr.yml"
    config.write_text("CartPole-v1:\n  learning_rate: 0.002\n")  # nothing else: policy, n_envs come from configs/
    run_dir = tmp_path / "run"
    assert train_main(["--algo", "a2c", "--config", str(config), "--run-dir", str(run_dir), *TINY]) == 0
    saved = yaml.safe_load((run_dir / "config.yml").read_text())
    assert saved["algo_kwargs"]["learning_rate"] == 0.002 and saved["policy"] == "MlpPolicy"


def test_evaluate_takes_sb3_habits(trained, capsys):
    _, _, run_dir, _ = trained
    bare = str(run_dir / "final_model")  # SB3's load adds .zip
    assert evaluate_main(["--model", bare, "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["deterministic"] is True  # evaluate_policy's default
    assert evaluate_main(["--model", bare, "--episodes", "1", "--json", "--no-deterministic"]) == 0
    assert json.loads(capsys.readouterr().out)["deterministic"] is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_evaluate_refuses_cuda_without_a_gpu(trained, capsys):
    _, _, run_dir, _ = trained
    assert evaluate_main(["--model", str(run_dir / "final_model.zip"), "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU" in one_line_error(capsys.readouterr().err)


def test_evaluating_on_another_env_names_the_env_not_trust(trained, capsys):
    _, _, run_dir, _ = trained
    for extra in ([], ["--unsafe-load"]):
        assert evaluate_main(["--model", str(run_dir / "final_model.zip"), "--env", "Acrobot-v1", *extra]) == 2
        error = one_line_error(capsys.readouterr().err)
        assert "was not trained on" in error and "--env" in error and "trust" not in error and len(error) < 300


def test_unknown_algo_is_one_line(capsys):
    assert train_main(["--algo", "ppo2"]) == 2
    assert "invalid choice: 'ppo2'" in one_line_error(capsys.readouterr().err)


def test_video_records_every_episode(trained, tmp_path, capfd):
    _, _, run_dir, _ = trained
    videos = tmp_path / "videos"
    assert evaluate_main(["--model", str(run_dir / "final_model.zip"), "--episodes", "2", "--video", str(videos)]) == 0
    assert "XDG_RUNTIME_DIR" not in capfd.readouterr().err  # SDL's complaint when it looks for a display
    # Exactly those: the reset after the last episode starts no (nearly empty) third video.
    assert {p.name for p in videos.glob("*.mp4")} == {"rl-video-episode-0.mp4", "rl-video-episode-1.mp4"}


def test_solve_tracker_needs_a_full_window():
    tracker = SolveTracker(threshold=10.0, extra_thresholds=(5.0,), window=3)
    for step, episode_return in enumerate([6.0, 6.0, 6.0, 12.0, 12.0, 12.0], start=1):
        tracker.record(episode_return, timestep=step * 10)
    summary = tracker.summary()
    assert (summary["solved_at_episode_5"], summary["solved_at_timestep_5"]) == (3, 30)  # not at episode 1
    assert (summary["solved_at_episode"], summary["solved_at_timestep"]) == (5, 50)  # (6 + 12 + 12) / 3 = 10
    assert summary["final_mean_return"] == 12.0 and summary["episodes"] == 6


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "model.zip"

    def fail(path):
        Path(path).write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert list(tmp_path.iterdir()) == []
    atomic_write(target, lambda path: Path(path).write_text("done"))
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"] and target.read_text() == "done"


def test_relax_rl_help_lists_every_command(capsys):
    from relax_rl.cli import COMMANDS, main

    assert main(["--help"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.split("commands:")[1].strip().splitlines()]
    assert listed == list(COMMANDS) == ["train", "evaluate", "compare", "tune", "plot", "diagnose", "toy", "vae"]


@pytest.mark.parametrize("command", ["train", "evaluate", "compare", "tune", "plot", "diagnose", "toy", "vae"])
def test_every_command_runs_under_relax_rl_with_its_name(command, capsys):
    from relax_rl.cli import main

    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: relax-rl {command} ")


def test_an_unknown_command_names_the_closest_one(capsys):
    from relax_rl.cli import main

    assert main(["trian"]) == 2
    assert "unknown command 'trian'; did you mean 'train'?" in one_line_error(capsys.readouterr().err)
    assert main([]) == 2  # no command: the usage, on stderr


def test_the_console_script_is_installed_with_the_package():
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="relax-rl")
    assert script.value == "relax_rl.cli:main"
    installed = Path(sys.executable).parent / "relax-rl"
    done = subprocess.run([str(installed), "train", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage: relax-rl train ")
    # The shims keep their own name, so that what they print can be typed back.
    done = _run_script("train.py", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: python train.py ")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nowhere*", "nowhere* does not exist (a shell glob that matches nothing is passed on as written)"),
        ("file", "is a file; give the run directory that holds it"),
    ],
)
def test_plot_says_what_a_path_that_is_not_a_run_directory_is(target, message, tmp_path, capsys):
    from relax_rl.cli import main

    path = tmp_path / target
    if target == "file":
        path = tmp_path / "monitor.csv"
        path.write_text("")
    assert main(["plot", str(path), "--out", str(tmp_path / "x.png")]) == 2
    assert message in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("text", ["1000000", "1e6", "1.0e6", "1_000_000"])
def test_counts_are_read_as_the_configs_write_them(text):
    from relax_rl.cli.train import _parser

    assert _parser("relax-rl train").parse_args(["--total-timesteps", text]).total_timesteps == 1_000_000


def test_a_count_that_is_not_whole_is_one_line(tmp_path, capsys):
    assert train_main(["--total-timesteps", "1000.5", "--log-dir", str(tmp_path)]) == 2
    assert "expected a whole number (such as 500000 or 1e6), got '1000.5'" in one_line_error(capsys.readouterr().err)
