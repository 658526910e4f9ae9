"""Command line: ``train`` and ``evaluate`` (``python train.py``, ``python evaluate.py``, ``python -m relax_rl.cli``).

Bad input (unknown env, algorithm or config key, unusable model file, existing run directory, nothing
to resume, ...) ends with a one-line message on stderr and exit status 2, never a traceback. A run
stopped early says how on one line too: 130 (SIGINT) or 143 (SIGTERM) after writing a checkpoint, 3
after too many consecutive skipped updates.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from tqdm import TqdmExperimentalWarning

from relax_rl.callbacks import (
    ProgressLog,
    RunControl,
    SaveModelCallback,
    SolveTracker,
    Stop,
    StopSignals,
    TimedEvalCallback,
    WallClock,
    atomic_write,
    save_model,
    stats_path_for,
)
from relax_rl.checkpoint import (
    CHECKPOINT_DIR,
    Checkpointer,
    CheckpointError,
    Resumable,
    list_checkpoints,
    load_checkpoint,
    read_meta,
)
from relax_rl.config import ALGOS, ConfigError, RunConfig, load_algo_class, parse_overrides, resolve_config
from relax_rl.diagnose import ActionVarianceCallback, observes_raw_env
from relax_rl.envs import UnknownEnvError, get_spec, is_atari, make_vec_env
from relax_rl.errors import first_line
from relax_rl.safe_load import UnsafeModelError, load_model_safely, load_normalization

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3  # stopped after too many consecutive skipped updates; a signal exits with 128 + its number
EXIT_IO_ERROR = 74  # sysexits.h EX_IOERR: the run directory could not be written (e.g. a full disk)
# Thresholds reported besides gymnasium's reward_threshold: the RELAX paper solved CartPole at 195.
EXTRA_THRESHOLDS: dict[str, tuple[float, ...]] = {"CartPole-v1": (195.0,)}
# Evaluation envs get seeds far from the training envs' seed..seed+n_envs-1.
EVAL_SEED_OFFSET = 10_000
N_EVAL_EPISODES = 5
CONFIG_FILE = "config.yml"
METRICS_FILE = "metrics.json"
FINAL_MODEL = "final_model.zip"
BEST_MODEL = "best_model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"


class CLIError(Exception):
    """Bad input: printed as one line on stderr, exit status 2."""


class CLIParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one-line CLIErrors instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{self.prog}: {message} (see --help)")


def run_guarded(command: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a command; bad input (CLIError, ConfigError, UnknownEnvError) becomes one stderr line and exit 2."""
    try:
        return command(argv)
    except (CLIError, ConfigError, UnknownEnvError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


# --------------------------------------------------------------------------------------------- train

# Options that define a run: --resume takes them from the run directory instead.
RUN_OPTIONS = (
    "algo",
    "env",
    "seed",
    "total_timesteps",
    "n_envs",
    "config",
    "hyperparams",
    "log_dir",
    "run_dir",
    "eval_freq",
    "checkpoint_freq",
    "max_bad_updates",
    "diagnose_freq",
)


def _train_parser() -> argparse.ArgumentParser:
    parser = CLIParser(prog="train.py", description="Train an agent; every artifact goes into one run directory.")
    parser.add_argument("--algo", default="relax_a2c", choices=list(ALGOS))
    parser.add_argument("--env", default="CartPole-v1", help="gymnasium env id (Atari: ALE/...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--total-timesteps", type=int, help="overrides n_timesteps of the config")
    parser.add_argument("--n-envs", type=int, help="overrides n_envs of the config")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--config", type=Path, help="hyper-parameter file (default: configs/<algo>.yml)")
    parser.add_argument("--hyperparams", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    parser.add_argument("--log-dir", type=Path, default=Path("runs"))
    parser.add_argument("--run-dir", type=Path, help="default: <log-dir>/<algo>/<env>_s<seed>")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="a progress bar (default on a terminal); without it, a plain progress line every 30 s",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run from its newest usable checkpoint, with the settings in its config.yml "
        "(only --device, --threads and --progress may be given with it)",
    )
    parser.add_argument("--eval-freq", type=int, help="timesteps between evaluations; 0: off (default 10000)")
    parser.add_argument(
        "--checkpoint-freq",
        type=int,
        help="timesteps between checkpoints, taken at the first update boundary after each multiple; 0: off "
        "(default 100000); SIGINT and SIGTERM always write one",
    )
    parser.add_argument(
        "--max-bad-updates",
        type=int,
        help="stop after K consecutive updates skipped for a non-finite loss or gradient; 0: never (default 10)",
    )
    parser.add_argument(
        "--diagnose-freq",
        type=int,
        help="timesteps between small variance decompositions logged as train/action_var_frac; 0: off "
        "(default 50000; off for normalised, frame-stacked or Atari runs)",
    )
    add_threads_argument(parser)
    return parser


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small policies run fastest single-threaded, parallel runs "
        "do not oversubscribe the cores, and results are reproducible); 0 keeps torch's default",
    )


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (0: unchanged); restored after, for in-process callers."""
    previous = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def default_run_dir(log_dir: Path, algo: str, env_id: str, seed: int) -> Path:
    """``<log_dir>/<algo>/<env id with '/' replaced>_s<seed>``."""
    return log_dir / algo / f"{env_id.replace('/', '-')}_s{seed}"


class TrainingStopped(Exception):
    """Training ended before its budget (a signal, or too many skipped updates); a checkpoint was kept.

    ``str()`` is the one-line message for the user, ``exit_code`` the CLI's exit status.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py``; returns the exit status."""
    return run_guarded(_train, argv)


def _train(argv: Sequence[str] | None) -> int:
    parser = _train_parser()
    args = parser.parse_args(argv)
    for flag, minimum in (
        ("total_timesteps", 1),
        ("n_envs", 1),
        ("eval_freq", 0),
        ("checkpoint_freq", 0),
        ("max_bad_updates", 0),
        ("diagnose_freq", 0),
        ("threads", 0),
    ):
        value = getattr(args, flag)
        if value is not None and value < minimum:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= {minimum}")
    progress = sys.stdout.isatty() if args.progress is None else args.progress
    run_dir = args.resume or args.run_dir or default_run_dir(args.log_dir, args.algo, args.env, args.seed)
    try:
        with torch_threads(args.threads):
            if args.resume is not None:
                metrics = _resume_from_args(parser, args, progress)
            else:
                metrics = run_training(_config_from_args(args), run_dir, progress=progress)
    except TrainingStopped as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print("interrupted; quit without writing a checkpoint", file=sys.stderr)
        return 128 + signal.SIGINT
    except OSError as err:  # e.g. a full disk while writing: checkpoints are atomic, so the last one is whole
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"error: cannot write{where}: {err.strerror or err}; free the space or fix the permissions, "
            f"then continue with --resume {run_dir}",
            file=sys.stderr,
        )
        return EXIT_IO_ERROR
    print(format_summary(metrics, run_dir))
    return 0


def _resume_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace, progress: bool) -> dict[str, Any]:
    given = [key.replace("_", "-") for key in RUN_OPTIONS if getattr(args, key) != parser.get_default(key)]
    if given:
        raise CLIError(f"--resume continues {args.resume} with the settings in its {CONFIG_FILE}; drop --{given[0]}")
    device = None if args.device == parser.get_default("device") else args.device
    return resume_training(args.resume, progress=progress, device=device)


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    get_spec(args.env)  # an unknown id fails here, before anything is written
    return resolve_config(
        args.algo,
        args.env,
        args.seed,
        config_file=args.config,
        overrides=parse_overrides(args.hyperparams),
        n_envs=args.n_envs,
        total_timesteps=args.total_timesteps,
        device=args.device,
        eval_freq=args.eval_freq,
        checkpoint_freq=args.checkpoint_freq,
        max_bad_updates=args.max_bad_updates,
        diagnose_freq=args.diagnose_freq,
    )


def run_training(config: RunConfig, run_dir: str | Path, *, progress: bool = False) -> dict[str, Any]:
    """Train one run described by ``config`` into the new directory ``run_dir``; return its metrics.

    ``progress``: SB3's progress bar, else a plain progress line every 30 s. Raises CLIError if
    ``run_dir`` exists or cannot be created, or the algorithm cannot be built for the env, and
    :class:`TrainingStopped` when training ends early (see :class:`relax_rl.callbacks.RunControl`).
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise CLIError(f"run directory {run_dir} already exists; pick another --seed/--log-dir or remove it") from None
    except OSError as err:
        raise CLIError(f"cannot create run directory {run_dir}: {err.strerror}") from None
    try:
        _check_writable(run_dir)
        (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        model = _make_model(config, _make_env(config, run_dir, training=True), run_dir)
        session = _Session.create(config, run_dir)
    except BaseException:
        # We created this directory an instant ago (exist_ok=False), so it holds nothing but our own
        # partial setup; leaving it would block the corrected command with "already exists".
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return _learn(model, config, run_dir, session, progress=progress, resumed=False)


def resume_training(run_dir: str | Path, *, progress: bool = False, device: str | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its newest usable checkpoint to the end of its budget.

    On CPU the result is bit for bit the one the run would have had without the interruption (see the
    README). An unusable newest checkpoint (truncated, corrupt) is skipped, with a warning, for the one
    before it. ``device`` overrides the run's. A finished run is left as it is. Raises CLIError when
    there is nothing to resume from, and :class:`TrainingStopped` as :func:`run_training` does.
    """
    run_dir = Path(run_dir)
    config = _read_run_config(run_dir)
    if device is not None:
        config = dataclasses.replace(config, device=device)
    if (run_dir / METRICS_FILE).is_file():
        print(f"{run_dir} finished already; nothing to resume")
        return json.loads((run_dir / METRICS_FILE).read_text())
    _check_writable(run_dir)
    for leftover in run_dir.rglob(".*.tmp-*"):  # atomic writes cut short by the kill
        leftover.unlink()
    session = _Session.create(config, run_dir)
    model, checkpoint = _load_newest_checkpoint(config, run_dir, session)
    if getattr(model, "bad_update_streak", 0) == 0:
        session.control.last_good = checkpoint
    model.tensorboard_log = str(run_dir)  # the directory may have moved since
    print(f"resuming {run_dir} from {checkpoint.name} (timestep {model.num_timesteps} of {config.total_timesteps})")
    return _learn(model, config, run_dir, session, progress=progress, resumed=True)


def _read_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CLIError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        return RunConfig.from_dict(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, TypeError, ConfigError) as err:
        raise CLIError(f"{path} is not a run config: {first_line(err)}") from None


def _check_writable(directory: Path) -> None:
    """Fail now, not at the first checkpoint hours later, when ``directory`` cannot be written to."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise CLIError(f"run directory {directory} is not writable: {err.strerror}") from None


def _load_newest_checkpoint(config: RunConfig, run_dir: Path, session: _Session) -> tuple[BaseAlgorithm, Path]:
    """Load the newest checkpoint that works, warning about the newer ones that did not."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise CLIError(
            f"{run_dir} has no checkpoint to resume from (none in {run_dir / CHECKPOINT_DIR}); "
            "remove it and train again"
        )
    algo_cls = load_algo_class(config.algo)
    failures: list[str] = []
    for path in checkpoints:
        try:
            _check_same_run(read_meta(path), detect_algo(read_model_data(path)), config, path)
            model = load_checkpoint(path, algo_cls, run_dir, config.device, session.parts)
        except CheckpointError as err:
            failures.append(str(err))
            continue
        for failure in failures:  # printed only now: when nothing loads, the error is one line
            print(f"warning: skipped {failure}", file=sys.stderr)
        return model, path
    older = f" (and {len(failures) - 1} older unusable)" if len(failures) > 1 else ""
    raise CLIError(f"no usable checkpoint: {failures[0]}{older}")


def _check_same_run(meta: Mapping[str, Any], saved_algo: str, config: RunConfig, path: Path) -> None:
    """Refuse a checkpoint that another run (algorithm, env or seed) wrote."""
    theirs = (meta.get("algo"), saved_algo, meta.get("env"), meta.get("seed"))
    if theirs != (config.algo, config.algo, config.env, config.seed):
        raise CLIError(
            f"{path} belongs to another run ({meta.get('algo')}, saved by {saved_algo}, on {meta.get('env')}, "
            f"seed {meta.get('seed')}) than its run directory's {CONFIG_FILE} ({config.algo} on {config.env}, "
            f"seed {config.seed}); refusing to resume"
        )


@dataclasses.dataclass
class _Session:
    """The callbacks of one training session; ``parts`` are those whose state checkpoints carry."""

    tracker: SolveTracker
    evaluator: TimedEvalCallback | None
    clock: WallClock
    control: RunControl
    parts: dict[str, Resumable]
    diagnostics: ActionVarianceCallback | None = None

    @classmethod
    def create(cls, config: RunConfig, run_dir: Path) -> _Session:
        tracker = SolveTracker(get_spec(config.env).reward_threshold, EXTRA_THRESHOLDS.get(config.env, ()))
        clock = WallClock()
        evaluator = None
        if config.eval_freq:
            evaluator = TimedEvalCallback(
                _make_env(config, run_dir, training=False),
                callback_on_new_best=SaveModelCallback(run_dir / BEST_MODEL),
                n_eval_episodes=N_EVAL_EPISODES,
                eval_freq=max(config.eval_freq // config.n_envs, 1),  # SB3 counts vec-env steps
                log_path=str(run_dir),
                verbose=0,
            )
        parts: dict[str, Resumable] = {"tracker": tracker, "clock": clock}
        if evaluator is not None:
            parts["evaluator"] = evaluator
        checkpointer = Checkpointer(run_dir, {"algo": config.algo, "env": config.env, "seed": config.seed}, parts)
        control = RunControl(checkpointer.save, config.checkpoint_freq, config.max_bad_updates, StopSignals())
        diagnostics = (
            ActionVarianceCallback(config.env, config.diagnose_freq)
            if config.diagnose_freq and observes_raw_env(config)
            else None
        )
        return cls(tracker, evaluator, clock, control, parts, diagnostics)

    def callbacks(self, progress: bool) -> list[BaseCallback]:
        """In order: the clock starts first; progress lines, when there is no bar, come last."""
        optional = [c for c in (self.evaluator, self.diagnostics) if c is not None]
        return [self.clock, self.tracker, *optional, self.control, *([] if progress else [ProgressLog(self.tracker)])]


def _learn(
    model: BaseAlgorithm, config: RunConfig, run_dir: Path, session: _Session, *, progress: bool, resumed: bool
) -> dict[str, Any]:
    """Train to the end of the budget; then save the final model and write and return the metrics."""
    # A resumed run asks for the rest of its budget without resetting the counters: SB3 then sets the
    # total back to the full budget, so learning-rate schedules continue where they were.
    with session.control.signals, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)  # SB3's bar uses tqdm.rich
        model.learn(
            config.total_timesteps - model.num_timesteps,
            callback=session.callbacks(progress),
            progress_bar=progress,
            tb_log_name="tensorboard",
            reset_num_timesteps=not resumed,
        )
    model.get_env().close()
    if session.evaluator is not None:
        session.evaluator.eval_env.close()
    stop = session.control.stop
    if stop is not None:
        raise TrainingStopped(*_stop_message(stop, run_dir))
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
    return metrics


def _stop_message(stop: Stop, run_dir: Path) -> tuple[str, int]:
    """The one-line message and exit status of an early stop."""
    if stop.signum is not None:
        name = signal.Signals(stop.signum).name
        return (
            f"interrupted by {name} at timestep {stop.timestep}; checkpoint: {stop.checkpoint}; "
            f"resume with: python train.py --resume {run_dir}",
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


def _make_env(config: RunConfig, run_dir: Path, *, training: bool) -> VecEnv:
    """Training env (monitored into run_dir) or evaluation env, normalised as the config says."""
    normalize = config.normalize_kwargs()
    # VecNormalize works on numpy: a normalised run keeps gymnasium's envs rather than torch ones.
    backend = "gymnasium" if normalize is not None and not is_atari(config.env) else "auto"
    try:
        if training:
            env = make_vec_env(
                config.env,
                config.n_envs,
                config.seed,
                device=config.device,
                monitor_dir=run_dir,
                frame_stack=config.frame_stack,
                backend=backend,
            )
        else:
            env = make_vec_env(
                config.env, 1, config.seed + EVAL_SEED_OFFSET, frame_stack=config.frame_stack, backend=backend
            )
    except (gym.error.Error, ValueError) as err:  # ValueError: n_envs, device or backend that cannot serve the env
        raise CLIError(f"cannot create {config.env}: {first_line(err)}") from None
    if normalize is None:
        return env
    if not training:
        # EvalCallback copies the training statistics into this env before each evaluation.
        normalize = {**normalize, "training": False, "norm_reward": False}
    try:
        return VecNormalize(env, **normalize)
    except TypeError as err:
        raise CLIError(f"normalize: {first_line(err)}") from None


def _make_model(config: RunConfig, env: VecEnv, run_dir: Path) -> BaseAlgorithm:
    algo_cls = load_algo_class(config.algo)
    kwargs = _with_torch_objects(config.algo_kwargs)
    try:
        return algo_cls(
            config.policy, env, seed=config.seed, device=config.device, tensorboard_log=str(run_dir), **kwargs
        )
    except (AssertionError, ValueError, NotImplementedError, KeyError) as err:
        # SB3 asserts on unsupported spaces and raises ValueError/KeyError for unknown policies.
        raise CLIError(f"{config.algo} cannot train on {config.env}: {first_line(err)}") from None


SCHEDULE_KEYS = ("learning_rate", "cv_learning_rate")


def _with_torch_objects(algo_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Build what YAML cannot hold: ``activation_fn: ReLU`` becomes ``torch.nn.ReLU``, and a learning
    rate ``lin_X`` (rl-baselines3-zoo's notation) a schedule falling linearly from X to 0."""
    kwargs = dict(algo_kwargs)
    for key in SCHEDULE_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str):
            try:
                kwargs[key] = LinearSchedule(float(value.removeprefix("lin_")), 0.0, 1.0)
            except ValueError:
                raise CLIError(f"{key}: {value!r} is neither a number nor lin_<number>") from None
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    name = policy_kwargs.get("activation_fn")
    if isinstance(name, str):
        if not isinstance(getattr(torch.nn, name, None), type):
            raise CLIError(f"policy_kwargs.activation_fn: {name!r} is not a torch.nn module (e.g. ReLU, Tanh)")
        policy_kwargs["activation_fn"] = getattr(torch.nn, name)
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


def format_summary(metrics: Mapping[str, Any], run_dir: Path) -> str:
    """A few human-readable lines about a finished run."""

    def solved_text(episode: int | None, timestep: int | None) -> str:
        return "not reached" if episode is None else f"episode {episode} (timestep {timestep})"

    lines = [
        f"{metrics['algo']} on {metrics['env']} (seed {metrics['seed']}): {metrics['timesteps']} timesteps, "
        f"{metrics['episodes']} episodes, {metrics['wall_s']:.1f} s, {metrics['sps']:.0f} SPS",
    ]
    if metrics["solve_threshold"] is not None:
        lines.append(
            f"solved (mean of last {metrics['solve_window']} returns >= {metrics['solve_threshold']:g}): "
            + solved_text(metrics["solved_at_episode"], metrics["solved_at_timestep"])
        )
    for threshold, entry in metrics["extra_thresholds"].items():
        lines.append(
            f"solved at >= {threshold}: " + solved_text(entry["solved_at_episode"], entry["solved_at_timestep"])
        )
    final = metrics["final_mean_return"]
    lines.append("final mean return: " + ("no episode finished" if final is None else f"{final:.2f}"))
    lines.append(f"run directory: {run_dir}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ evaluate


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = CLIParser(prog="evaluate.py", description="Evaluate a saved model.")
    parser.add_argument("--model", type=Path, required=True, help="a .zip saved by train.py (or SB3)")
    parser.add_argument("--env", help="default: the env in config.yml of the model's run directory")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--video", type=Path, metavar="DIR", help="record every episode into DIR as MP4")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="load with SB3's loader, which unpickles the file: a crafted file can run arbitrary code; "
        "only for files you trust (default: read only JSON and tensors)",
    )
    add_threads_argument(parser)
    return parser


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evaluate.py``; returns the exit status."""
    return run_guarded(_evaluate, argv)


def _evaluate(argv: Sequence[str] | None) -> int:
    args = _evaluate_parser().parse_args(argv)
    if args.episodes < 1:
        raise CLIError("--episodes must be >= 1")
    algo = detect_algo(read_model_data(args.model))
    if algo not in ALGOS:
        raise CLIError(f"{args.model} holds a {algo} model; evaluate.py supports {', '.join(ALGOS)}")
    run_config = find_run_config(args.model)
    env_id = args.env or (run_config.env if run_config else None)
    if env_id is None:
        raise CLIError(f"no --env given and no {CONFIG_FILE} next to {args.model}")
    frame_stack = run_config.frame_stack if run_config else None
    with _stdout_to_stderr() if args.json else contextlib.nullcontext(), torch_threads(args.threads):
        result = evaluate_model(
            args.model,
            algo,
            env_id,
            args.episodes,
            args.deterministic,
            args.seed,
            frame_stack,
            args.video,
            args.device,
            unsafe_load=args.unsafe_load,
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{algo} on {env_id}: mean return {result['mean_return']:.2f} ± {result['std_return']:.2f} "
            f"over {result['episodes']} episodes (mean length {result['mean_length']:.1f})"
        )
    return 0


def evaluate_model(
    model_path: Path,
    algo: str,
    env_id: str,
    episodes: int,
    deterministic: bool,
    seed: int,
    frame_stack: int | None = None,
    video_dir: Path | None = None,
    device: str = "auto",
    *,
    unsafe_load: bool = False,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of the saved model; VecNormalize statistics beside it are reused.

    The model and statistics are read from JSON and tensors only (:mod:`relax_rl.safe_load`), unless
    ``unsafe_load``: then SB3's loaders unpickle them, which runs any code a crafted file carries.
    """
    try:
        env = make_vec_env(env_id, 1, seed, frame_stack=frame_stack, video_dir=video_dir)
    except gym.error.Error as err:
        raise CLIError(f"cannot create {env_id}: {first_line(err)}") from None
    algo_cls = load_algo_class(algo)
    stats = next((p for p in (stats_path_for(model_path), model_path.with_name(VECNORMALIZE_FILE)) if p.exists()), None)
    if unsafe_load:
        model, env = _load_unpickling(model_path, algo_cls, env, env_id, stats, device)
    else:
        model, env = _load_safely(model_path, algo_cls, env, stats, device)
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=episodes, deterministic=deterministic, return_episode_rewards=True
    )
    env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": len(returns),
        "mean_length": float(np.mean(lengths)),
        "returns": [float(r) for r in returns],
        "algo": algo,
        "env": env_id,
        "model": str(model_path),
        "deterministic": deterministic,
        "seed": seed,
    }


def _load_safely(
    model_path: Path, algo_cls: type[BaseAlgorithm], env: VecEnv, stats: Path | None, device: str
) -> tuple[BaseAlgorithm, VecEnv]:
    hint = "pass --unsafe-load only if you trust the file"
    try:
        if stats is not None:
            if not stats.with_suffix(".json").is_file():
                raise CLIError(f"the normalisation statistics {stats} exist only as a pickle; {hint}")
            env = load_normalization(stats.with_suffix(".json"), env)
        return load_model_safely(model_path, algo_cls, env, device=device), env
    except UnsafeModelError as err:
        raise CLIError(f"cannot load {model_path} safely: {err}; {hint}") from None


def _load_unpickling(
    model_path: Path, algo_cls: type[BaseAlgorithm], env: VecEnv, env_id: str, stats: Path | None, device: str
) -> tuple[BaseAlgorithm, VecEnv]:
    if stats is not None:
        try:
            env = VecNormalize.load(str(stats), env)
        except (AssertionError, ValueError) as err:  # SB3 asserts that the spaces' shapes agree
            raise CLIError(f"{stats} does not fit {env_id}: {first_line(err)}") from None
        env.training, env.norm_reward = False, False  # frozen statistics, raw returns
    try:
        return algo_cls.load(model_path, env=env, device=device), env
    except (ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as err:
        # ValueError: spaces differ from the env's; the others: damaged archive contents.
        raise CLIError(f"cannot load {model_path} for {env_id}: {first_line(err)}") from None


def read_model_data(path: Path) -> dict[str, Any]:
    """The ``data`` JSON of an SB3 model zip, without loading its weights."""
    if not path.is_file():
        raise CLIError(f"model file {path} not found")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError):
        raise CLIError(f"{path} is not a model saved by stable-baselines3 (no readable 'data' in a zip)") from None
    if not isinstance(data, dict):
        raise CLIError(f"{path} is not a model saved by stable-baselines3 (malformed 'data')")
    return data


def detect_algo(data: Mapping[str, Any]) -> str:
    """Name of the algorithm that saved ``data``, from the module of its policy class.

    relax_rl policies -> ``relax_a2c``; SB3's shared ``common.policies`` -> ``a2c`` or ``ppo`` (only PPO
    stores clip_range/n_epochs); other SB3 or sb3-contrib modules name their algorithm
    (``stable_baselines3.dqn.policies`` -> ``dqn``).
    """
    policy_class = data.get("policy_class")
    module = policy_class.get("__module__", "") if isinstance(policy_class, dict) else ""
    package, _, rest = module.partition(".")
    if package == "relax_rl":
        return "relax_a2c"
    if package in ("stable_baselines3", "sb3_contrib") and rest:
        sub_package = rest.split(".")[0]
        if sub_package != "common":
            return sub_package
        return "ppo" if {"clip_range", "n_epochs"} & data.keys() else "a2c"
    raise CLIError(f"cannot tell which algorithm saved this model (policy module {module or 'missing'!r})")


def find_run_config(model_path: Path) -> RunConfig | None:
    """config.yml of the run the model belongs to (next to it, or one up for checkpoints/)."""
    for directory in (model_path.parent, model_path.parent.parent):
        if (directory / CONFIG_FILE).is_file():
            return _read_run_config(directory)
    return None


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout, by Python or by native code (ALE's banner), to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# -------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m relax_rl.cli {train,evaluate} ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "evaluate": evaluate_main}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m relax_rl.cli {{{','.join(commands)}}} [options]", file=sys.stderr)
        return EXIT_BAD_INPUT
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
