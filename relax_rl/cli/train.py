"""``relax-rl train`` (or ``python train.py``): train an agent into one run directory, or resume an interrupted run."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from relax_rl.cli.common import (
    EXIT_IO_ERROR,
    CLIParser,
    add_run_options,
    add_threads_argument,
    check_minimums,
    run_guarded,
    run_option_minimums,
    run_options_of,
    whole_number,
)
from relax_rl.config import ALGOS, RUN_OPTIONS, RunConfig, parse_overrides, resolve_config
from relax_rl.envs import get_spec
from relax_rl.errors import UsageError
from relax_rl.run import (
    CONFIG_FILE,
    EXIT_DIVERGED,
    RunResult,
    TrainingStopped,
    default_run_dir,
    resume,
    torch_threads,
    train,
)

# Options that define a run, the run options included: --resume takes them from the run directory instead.
DEFINES_THE_RUN = (
    "algo",
    "env",
    "seed",
    "total_timesteps",
    "n_envs",
    "config",
    "hyperparams",
    "log_dir",
    "run_dir",
    *(option.name for option in RUN_OPTIONS),
)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = CLIParser(prog=prog, description="Train an agent; every artifact goes into one run directory.")
    parser.add_argument("--algo", default="relax_a2c", choices=list(ALGOS))
    parser.add_argument("--env", default="CartPole-v1", help="gymnasium env id (Atari: ALE/...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--total-timesteps", type=whole_number, help="overrides n_timesteps of the config")
    parser.add_argument("--n-envs", type=whole_number, help="overrides n_envs of the config")
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
    add_run_options(parser)
    add_threads_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "relax-rl train") -> int:
    """Entry point of ``train.py``; returns the exit status."""
    return run_guarded(partial(_train, prog=prog), argv)


def _train(argv: Sequence[str] | None, prog: str) -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    check_minimums(args, {"total_timesteps": 1, "n_envs": 1, "threads": 0, **run_option_minimums()})
    progress = sys.stdout.isatty() if args.progress is None else args.progress
    run_dir = args.resume or args.run_dir or default_run_dir(args.log_dir, args.algo, args.env, args.seed)
    try:
        with torch_threads(args.threads):
            if args.resume is not None:
                result = _resume_from_args(parser, args, progress)
            else:
                result = train(_config_from_args(args), run_dir, progress=progress)
    except TrainingStopped as stop:
        interrupted = stop.exit_code != EXIT_DIVERGED  # a signal: the run continues where it stopped
        print(f"{stop}; resume with: {prog} --resume {stop.run_dir}" if interrupted else stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print("interrupted; quit without writing a checkpoint", file=sys.stderr)
        return 128 + signal.SIGINT
    except OSError as err:  # e.g. a full disk while writing: checkpoints are atomic, so the last one is whole
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"error: cannot write{where}: {err.strerror or err}; free the space or fix the permissions, "
            f"then continue with: {prog} --resume {run_dir}",
            file=sys.stderr,
        )
        return EXIT_IO_ERROR
    print(format_summary(result.metrics, run_dir))
    return 0


def _resume_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace, progress: bool) -> RunResult:
    given = [key.replace("_", "-") for key in DEFINES_THE_RUN if getattr(args, key) != parser.get_default(key)]
    if given:
        raise UsageError(f"--resume continues {args.resume} with the settings in its {CONFIG_FILE}; drop --{given[0]}")
    device = None if args.device == parser.get_default("device") else args.device
    return resume(args.resume, progress=progress, device=device)


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
        **run_options_of(args),
    )


def format_summary(metrics: Mapping[str, Any], run_dir: Path) -> str:
    """A few human-readable lines about a finished run."""

    def solved_text(episode: int | None, timestep: int | None) -> str:
        return "not reached" if episode is None else f"episode {episode} (timestep {timestep})"

    lines = [
        f"{metrics['algo']} on {metrics['env']} (seed {metrics['seed']}): {metrics['timesteps']} timesteps, "
        f"{metrics['episodes']} episodes, {metrics['wall_s']:.1f} s ({metrics['eval_s']:.1f} s of it evaluating): "
        f"{metrics['timesteps'] / max(metrics['wall_s'], 1e-9):.0f} SPS, {metrics['sps']:.0f} SPS training only",
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
