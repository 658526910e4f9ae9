"""Resume after SIGKILL, SIGTERM and SIGINT is bit-exact on CPU; bad checkpoints and run directories fail
cleanly; a streak of skipped updates stops the run and keeps the last good checkpoint."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from stable_baselines3.common.env_util import make_vec_env

from relax_rl import RelaxA2C
from relax_rl.cli import evaluate_main, train_main
from relax_rl.cli.common import EXIT_IO_ERROR
from relax_rl.run import checkpoint as checkpoint_module
from relax_rl.run import torch_threads
from relax_rl.run.checkpoint import META_ENTRY, STATE_ENTRY
from relax_rl.run.control import RunControl
from relax_rl.run.signals import StopSignals
from tests.helpers.cli_output import one_line_error
from tests.helpers.fault_envs import TRIPWIRE
from tests.helpers.run_artifacts import assert_same_run

REPO = Path(__file__).resolve().parent.parent
ENV = "relax-rl-test/TripwireCartPole-v1"
# Every piece of state that resuming must carry: VecNormalize (reward normalisation included), a
# learning-rate schedule, evaluation, and checkpoints at 200 and 400 timesteps (rollouts of 10).
RUN = [
    *("--algo", "relax_a2c", "--env", ENV, "--seed", "5", "--total-timesteps", "600", "--n-envs", "2"),
    *("--eval-freq", "200", "--checkpoint-freq", "200"),
    *("--hyperparams", "normalize=true", "learning_rate=lin_1e-3"),
]
TRIP_STEP = 233  # per env, i.e. timestep ~466: in the middle of a rollout, after the checkpoint at 400


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    assert train_main([*RUN, "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture
def interrupted(reference, tmp_path) -> Path:
    """A copy of the reference run as if killed between its checkpoints at 400 and 600 timesteps."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    for name in ("metrics.json", "final_model.zip", "checkpoints/rl_model_600_steps.zip"):
        (run_dir / name).unlink()
    return run_dir


def test_sigkill_mid_rollout_then_resume_is_bit_exact(reference, tmp_path, capsys):
    run_dir, paused = tmp_path / "run", tmp_path / "paused"
    # Run from the repository root, whose tests package `python -c` imports as pytest does.
    launcher = "import sys; import tests.helpers.fault_envs; from relax_rl.cli import train_main"
    process = subprocess.Popen(
        [sys.executable, "-c", f"{launcher}; sys.exit(train_main(sys.argv[1:]))", *RUN, "--run-dir", str(run_dir)],
        cwd=REPO,
        env={**os.environ, TRIPWIRE: f"{TRIP_STEP}:pause:{paused}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not paused.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert paused.exists(), process.stderr.read() if process.poll() is not None else "never paused"
    finally:
        process.kill()  # SIGKILL: no handler runs, nothing is flushed
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.zip")) == [
        "rl_model_200_steps.zip",
        "rl_model_400_steps.zip",
    ]

    assert train_main(["--resume", str(run_dir)]) == 0
    assert "resuming" in capsys.readouterr().out
    assert_same_run(reference, run_dir)


@pytest.mark.parametrize(
    ("signum", "prog"),
    [(signal.SIGTERM, "relax-rl train"), (signal.SIGINT, "python train.py")],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_checkpoints_at_the_next_boundary_then_resume_is_bit_exact(
    signum, prog, reference, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    monkeypatch.setenv(TRIPWIRE, f"{TRIP_STEP}:{signum.name}")
    assert train_main([*RUN, "--run-dir", str(run_dir)], prog=prog) == 128 + signum
    message = one_line_error(capsys.readouterr().err)
    checkpoint = run_dir / "checkpoints" / "rl_model_470_steps.zip"  # the end of the rollout it came in
    # The hint is the command the run was started with: the console script, or the train.py shim.
    assert message == (
        f"interrupted by {signum.name} at timestep 470; checkpoint: {checkpoint}; "
        f"resume with: {prog} --resume {run_dir}"
    )
    assert checkpoint.is_file() and not (run_dir / "metrics.json").exists()
    assert signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler), "handler left installed"

    monkeypatch.delenv(TRIPWIRE)
    assert train_main(["--resume", str(run_dir)]) == 0
    assert_same_run(reference, run_dir)


@pytest.mark.parametrize("damage", ["truncate", "flip-bytes"])
def test_damaged_newest_checkpoint_falls_back_to_the_older_one(damage, reference, interrupted, capsys):
    newest = interrupted / "checkpoints" / "rl_model_400_steps.zip"
    content = bytearray(newest.read_bytes())
    if damage == "truncate":  # a copy cut short, a full disk
        del content[len(content) // 2 :]
    else:  # bit rot inside the resume state
        with zipfile.ZipFile(newest) as archive:
            start = archive.getinfo(STATE_ENTRY).header_offset + 200
        content[start : start + 16] = bytes(b ^ 0xFF for b in content[start : start + 16])
    newest.write_bytes(content)
    assert train_main(["--resume", str(interrupted)]) == 0
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"warning: skipped {newest} is ") and "corrupt" in line
    if damage == "truncate":  # not "a model but not a resumable checkpoint", as zipfile's older directory said
        assert line.endswith("is truncated or corrupt (it does not end with its zip directory)")
    assert_same_run(reference, interrupted)  # resumed from 200 instead, and still exact


def test_no_usable_checkpoint_is_one_line_exit_2(interrupted, capsys):
    for checkpoint in (interrupted / "checkpoints").glob("*.zip"):
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    assert train_main(["--resume", str(interrupted)]) == 2
    error = one_line_error(capsys.readouterr().err)
    assert error.startswith("error: no usable checkpoint:") and "(and 1 older unusable)" in error


def test_run_directory_without_checkpoint_is_one_line_exit_2(interrupted, tmp_path, capsys):
    shutil.rmtree(interrupted / "checkpoints")
    assert train_main(["--resume", str(interrupted)]) == 2
    assert "has no checkpoint to resume from" in one_line_error(capsys.readouterr().err)
    assert train_main(["--resume", str(tmp_path / "nowhere")]) == 2
    assert "is not a run directory (no config.yml)" in one_line_error(capsys.readouterr().err)


@pytest.fixture(scope="module")
def a2c_checkpoint(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("a2c") / "run"
    args = ["--algo", "a2c", "--env", ENV, "--seed", "5", "--total-timesteps", "20", "--n-envs", "2"]
    assert train_main([*args, "--checkpoint-freq", "20", "--eval-freq", "0", "--run-dir", str(run_dir)]) == 0
    return run_dir / "checkpoints" / "rl_model_20_steps.zip"


@pytest.mark.parametrize("other", ["algorithm", "env"])
def test_checkpoint_of_another_run_is_refused(other, interrupted, a2c_checkpoint, capsys):
    if other == "algorithm":
        shutil.copy(a2c_checkpoint, interrupted / "checkpoints" / "rl_model_500_steps.zip")
    else:
        config = yaml.safe_load((interrupted / "config.yml").read_text())
        (interrupted / "config.yml").write_text(yaml.safe_dump({**config, "env": "CartPole-v1"}))
    assert train_main(["--resume", str(interrupted)]) == 2
    assert "belongs to another run" in one_line_error(capsys.readouterr().err)


def test_resuming_a_finished_run_changes_nothing(reference, capsys):
    before = (reference / "metrics.json").read_text()
    assert train_main(["--resume", str(reference)]) == 0
    assert "finished already; nothing to resume" in capsys.readouterr().out
    assert (reference / "metrics.json").read_text() == before


def test_unwritable_log_directory_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert train_main([*RUN, "--log-dir", str(blocker / "runs")]) == 2
    assert "cannot create run directory" in one_line_error(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == [blocker]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_log_directory_fails_before_training(tmp_path, capsys):
    tmp_path.chmod(0o500)
    try:
        assert train_main([*RUN, "--log-dir", str(tmp_path / "runs")]) == 2
    finally:
        tmp_path.chmod(0o700)
    assert "cannot create run directory" in one_line_error(capsys.readouterr().err)


def test_a_full_disk_is_one_line_and_the_run_resumes_from_the_last_whole_checkpoint(
    reference, tmp_path, capsys, monkeypatch
):
    real_save = checkpoint_module.save_model

    def disk_fills_at_400(model, path, stats_path, write):
        def write_then_fail(tmp: str) -> None:
            write(tmp)  # a partial file exists when the error strikes
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)

        real_save(model, path, stats_path, write_then_fail if "_400_" in Path(path).name else write)

    monkeypatch.setattr(checkpoint_module, "save_model", disk_fills_at_400)
    run_dir = tmp_path / "run"
    assert train_main([*RUN, "--run-dir", str(run_dir)]) == EXIT_IO_ERROR
    line = one_line_error(capsys.readouterr().err)
    assert os.strerror(errno.ENOSPC) in line and line.endswith(f"--resume {run_dir}")
    written = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    # No half-written file is left; the statistics of 400, written before the model, are orphans that
    # nothing reads (a checkpoint is its .zip).
    assert [name for name in written if name.endswith(".zip")] == ["rl_model_200_steps.zip"]
    assert all(name.startswith(("rl_model_200_steps", "rl_model_400_steps_vecnormalize")) for name in written)

    monkeypatch.undo()
    assert train_main(["--resume", str(run_dir)]) == 0
    assert_same_run(reference, run_dir)


# ------------------------------------------------------------------------------ skipped updates

NAN_ENV = "relax-rl-test/NaNRewardCartPole-v1"


def test_bad_update_streak_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # Rewards turn NaN at env step 61 (timestep 122): the update at 130 is the first bad one, and the
    # third, at 150, stops the run; the checkpoint due at 160 is never written.
    args = ["--env", NAN_ENV, "--total-timesteps", "400", "--n-envs", "2", "--eval-freq", "0"]
    assert train_main([*args, "--checkpoint-freq", "40", "--max-bad-updates", "3", "--run-dir", str(run_dir)]) == 3
    last_good = run_dir / "checkpoints" / "rl_model_120_steps.zip"
    assert one_line_error(capsys.readouterr().err) == (
        "error: stopped at timestep 150: 3 consecutive updates were skipped for a non-finite loss or gradient "
        f"(3 skipped in all); last good checkpoint: {last_good}"
    )
    written = {p.name for p in (run_dir / "checkpoints").glob("*.zip")}
    assert written == {f"rl_model_{timestep}_steps.zip" for timestep in (40, 80, 120)}
    assert not (run_dir / "metrics.json").exists()


def test_nan_rewards_never_reach_the_parameters(tmp_path):
    model = RelaxA2C("MlpPolicy", make_vec_env(NAN_ENV, 2, seed=0), n_steps=5, seed=0, device="cpu")
    saved = []
    control = RunControl(lambda m: saved.append(m.num_timesteps) or tmp_path, 0, 4, StopSignals())
    with torch_threads(1):
        model.learn(1000, callback=control)
    assert control.stop is not None and control.stop.bad_updates == 4 and control.stop.timestep == 160
    assert model.bad_update_streak == 4 and model.skipped_updates >= 4
    assert saved == [160]  # no periodic checkpoint, so the state at the stop was saved
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    optimiser_state = [*model.policy.optimizer.state.values(), *model.cv_optimizer.state.values()]
    assert all(torch.isfinite(v).all() for state in optimiser_state for v in state.values() if torch.is_tensor(v))


def test_checkpoint_is_a_model_that_sb3_and_evaluate_read(reference):
    checkpoint = reference / "checkpoints" / "rl_model_400_steps.zip"
    with zipfile.ZipFile(checkpoint) as archive:
        meta = json.loads(archive.read(META_ENTRY))
    assert meta == {"format": 1, "algo": "relax_a2c", "env": ENV, "seed": 5, "timesteps": 400}
    assert RelaxA2C.load(checkpoint).num_timesteps == 400
    assert evaluate_main(["--model", str(checkpoint), "--episodes", "1"]) == 0


@pytest.mark.parametrize(
    ("env_id", "hyperparams"),
    [
        ("CartPole-v1", ["critic_steps=2", "cv_objective=regression+logits", "cv_horizon_input=true"]),
        ("relax_rl/TargetMatching-D8-v0", []),  # bits' own default: φ also trains on the replay
    ],
    ids=["cartpole", "bits-default"],
)
def test_a_run_with_a_critic_replay_resumes_bit_exactly(env_id, hyperparams, tmp_path, capsys):
    """The replay is not in the model file; the checkpoint carries it, or the resumed V and φ would
    train on less data than the uninterrupted run's."""
    replay = [
        *("--algo", "relax_a2c", "--env", env_id, "--seed", "3", "--total-timesteps", "400", "--n-envs", "2"),
        *("--eval-freq", "0", "--checkpoint-freq", "200", "--diagnose-freq", "0"),
        *("--hyperparams", "critic_replay=8", *hyperparams),
    ]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert train_main([*replay, "--run-dir", str(reference)]) == 0
    shutil.copytree(reference, resumed)
    for name in ("metrics.json", "final_model.zip", "checkpoints/rl_model_400_steps.zip"):
        (resumed / name).unlink()
    assert train_main(["--resume", str(resumed)]) == 0
    assert "resuming" in capsys.readouterr().out
    assert_same_run(reference, resumed)
