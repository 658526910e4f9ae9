"""One run's life cycle: build the envs, the model and the callbacks; learn; checkpoint; resume; write the
metrics. Every command (train.py, compare, tune) and the notebook go through :func:`train` and :func:`resume`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import signal
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from tqdm import TqdmExperimentalWarning

from relax_rl.config import RunConfig, check_config
from relax_rl.errors import UsageError
from relax_rl.run.build import make_env, make_model
from relax_rl.run.checkpoint import list_checkpoints
from relax_rl.run.control import Stop, bad_update_streak
from relax_rl.run.files import (
    CONFIG_FILE,
    FINAL_MODEL,
    METRICS_FILE,
    VECNORMALIZE_FILE,
    check_writable,
    read_run_config,
)
from relax_rl.run.saving import atomic_write, save_model
from relax_rl.run.session import Report, Session, load_newest_checkpoint

EXIT_DIVERGED = 3  # stopped after too many consecutive skipped updates; a signal exits with 128 + its number
EVALUATIONS_FILE = "evaluations.npz"  # SB3's EvalCallback writes it into its log_path


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished run: its directory, its ``metrics.json`` and its evaluations (timestep, mean return)."""

    run_dir: Path
    metrics: dict[str, Any]
    evaluations: tuple[tuple[int, float], ...]


class TrainingStopped(Exception):
    """Training ended before its budget (a signal, or too many skipped updates); a checkpoint was kept.

    ``str()`` is the one-line message for the user, ``exit_code`` the CLI's exit status, and ``run_dir`` the
    run that :func:`resume` continues; how to resume it is the caller's to say, in its own terms (a command
    line, a rerun of a study).
    """

    def __init__(self, message: str, exit_code: int, run_dir: Path) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = run_dir


def train(config: RunConfig, run_dir: str | Path, *, report: Report | None = None, progress: bool = False) -> RunResult:
    """Train one run described by ``config`` into the new directory ``run_dir``.

    ``report(timestep, mean_return)`` is called after every evaluation (every ``config.eval_freq``
    timesteps); what it raises ends the run and propagates. ``progress``: SB3's progress bar, else a
    plain progress line every 30 s. Raises UsageError if ``run_dir`` exists or cannot be created, or
    the algorithm cannot be built for the env, and :class:`TrainingStopped` when training ends early
    (see :class:`relax_rl.run.control.RunControl`).
    """
    run_dir = Path(run_dir)
    check_config(config)  # a RunConfig built in Python has not been through resolve_config's checks
    created = [path for path in (run_dir, *run_dir.parents) if not path.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise UsageError(_existing_run_dir_message(run_dir)) from None
    except OSError as err:
        raise UsageError(f"cannot create run directory {run_dir}: {err.strerror}") from None
    try:
        check_writable(run_dir)
        (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        model = make_model(config, make_env(config, run_dir, training=True), run_dir)
        session = Session.create(config, run_dir, report)
    except BaseException:
        _remove(created)
        raise
    try:
        return _learn(model, config, run_dir, session, progress=progress, resumed=False)
    except BaseException as err:
        # Nothing in it can be resumed before the first checkpoint, and it would block the same command
        # with "already exists". A trial that a sweep stopped through `report` keeps its directory.
        if not list_checkpoints(run_dir) and err is not session.report_error():
            _remove(created)
        raise


def _remove(created: list[Path]) -> None:
    """Remove the run directory we just made, and the parents made for it that are left empty."""
    shutil.rmtree(created[0], ignore_errors=True)
    for parent in created[1:]:
        with contextlib.suppress(OSError):  # not empty: another run's
            parent.rmdir()


def resume(
    run_dir: str | Path, *, report: Report | None = None, progress: bool = False, device: str | None = None
) -> RunResult:
    """Continue the run in ``run_dir`` from its newest usable checkpoint to the end of its budget.

    On CPU the result is bit for bit the one the run would have had without the interruption (see the
    README). An unusable newest checkpoint (truncated, corrupt) is skipped, with a warning, for the one
    before it. ``device`` overrides the run's. A finished run is left as it is. Raises UsageError when
    there is nothing to resume from, and :class:`TrainingStopped` as :func:`train` does.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if device is not None:
        config = dataclasses.replace(config, device=device)
    if (run_dir / METRICS_FILE).is_file():
        print(f"{run_dir} finished already; nothing to resume")
        return finished_result(run_dir)
    check_writable(run_dir)
    for leftover in run_dir.rglob(".*.tmp-*"):  # atomic writes cut short by the kill
        leftover.unlink()
    session = Session.create(config, run_dir, report)
    model, checkpoint = load_newest_checkpoint(config, run_dir, session)
    if bad_update_streak(model) == 0:
        session.control.last_good = checkpoint
    model.tensorboard_log = str(run_dir)  # the directory may have moved since
    print(f"resuming {run_dir} from {checkpoint.name} (timestep {model.num_timesteps} of {config.total_timesteps})")
    return _learn(model, config, run_dir, session, progress=progress, resumed=True)


def finished_result(run_dir: Path) -> RunResult:
    """The :class:`RunResult` of a run that finished earlier, read back from its directory."""
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    evaluations: tuple[tuple[int, float], ...] = ()
    if (run_dir / EVALUATIONS_FILE).is_file():
        with np.load(run_dir / EVALUATIONS_FILE) as saved:
            evaluations = tuple(
                (int(t), float(np.mean(r))) for t, r in zip(saved["timesteps"], saved["results"], strict=True)
            )
    return RunResult(run_dir, metrics, evaluations)


def _learn(
    model: BaseAlgorithm, config: RunConfig, run_dir: Path, session: Session, *, progress: bool, resumed: bool
) -> RunResult:
    """Train to the end of the budget; then save the final model and write the metrics."""
    # A resumed run asks for the rest of its budget without resetting the counters: SB3 then sets the
    # total back to the full budget, so learning-rate schedules continue where they were.
    try:
        with session.control.signals, warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)  # SB3's bar uses tqdm.rich
            # A torch-backend training env is evaluated on a gymnasium one: evaluate_policy serves both.
            warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
            model.learn(
                config.total_timesteps - model.num_timesteps,
                callback=session.callbacks(progress),
                progress_bar=progress,
                tb_log_name="tensorboard",
                reset_num_timesteps=not resumed,
            )
    finally:
        model.get_env().close()
        if session.evaluator is not None:
            session.evaluator.eval_env.close()
    stop = session.control.stop
    if stop is not None:
        raise TrainingStopped(*_stop_message(stop), run_dir)
    save_model(model, run_dir / FINAL_MODEL, run_dir / VECNORMALIZE_FILE)
    wall_s = session.clock.seconds
    eval_s = 0.0 if session.evaluator is None else session.evaluator.eval_seconds
    metrics = {
        "algo": config.algo,
        "env": config.env,
        "seed": config.seed,
        "n_envs": config.n_envs,
        "timesteps": model.num_timesteps,
        **session.tracker.summary(),
        # Evaluation time grows with the policy's episode length; leaving it out keeps SPS a measure
        # of training throughput that is comparable between algorithms.
        "sps": model.num_timesteps / max(wall_s - eval_s, 1e-9),
        "wall_s": wall_s,
        "eval_s": eval_s,
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write(run_dir / METRICS_FILE, lambda path: Path(path).write_text(json.dumps(metrics, indent=2) + "\n"))
    return RunResult(run_dir, metrics, session.evaluations())


def _existing_run_dir_message(run_dir: Path) -> str:
    elsewhere = "pick another --seed, --log-dir or --run-dir, or remove it"
    if (run_dir / METRICS_FILE).is_file():
        return f"run directory {run_dir} already holds a finished run; {elsewhere}"
    if list_checkpoints(run_dir):
        return f"run directory {run_dir} holds an interrupted run: continue it with --resume {run_dir}, or {elsewhere}"
    return f"run directory {run_dir} already exists; {elsewhere}"


def _stop_message(stop: Stop) -> tuple[str, int]:
    """The one-line message and exit status of an early stop."""
    if stop.signum is not None:
        name = signal.Signals(stop.signum).name
        return (
            f"interrupted by {name} at timestep {stop.timestep}; checkpoint: {stop.checkpoint}",
            128 + stop.signum,  # the shell's convention for "killed by this signal"
        )
    kept = (
        "no checkpoint predates the streak, so saved the current state (its parameters are the last good ones)"
        if stop.saved_at_stop
        else "last good checkpoint"
    )
    return (
        f"error: stopped at timestep {stop.timestep}: {stop.bad_updates} consecutive updates were skipped for a "
        f"non-finite loss or gradient ({stop.skipped_updates} skipped in all); {kept}: {stop.checkpoint}",
        EXIT_DIVERGED,
    )
