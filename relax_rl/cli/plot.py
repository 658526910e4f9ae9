"""``relax-rl plot RUN_DIR [RUN_DIR ...] --out FILE.png``: learning curves, one band per algorithm."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from relax_rl.cli.common import CLIParser, run_guarded
from relax_rl.errors import UsageError
from relax_rl.plot import SMOOTHING_WINDOW, group_runs, plot_learning_curves, run_envs, run_thresholds


def _parser(prog: str) -> CLIParser:
    parser = CLIParser(prog=prog, description="Learning curves of run directories, one band per algorithm.")
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--window", type=int, default=SMOOTHING_WINDOW, help="episodes in the trailing mean")
    return parser


def check_run_dirs(run_dirs: Sequence[Path]) -> None:
    """Say what a path that is not a run directory is, and what to give instead."""
    for path in run_dirs:
        if path.is_file():
            raise UsageError(f"{path} is a file; give the run directory that holds it: {path.parent}")
        if not path.exists():
            raise UsageError(
                f"{path} does not exist (a shell glob that matches nothing is passed on as written); "
                "give run directories such as runs/relax_a2c/CartPole-v1_s0"
            )


def main(argv: Sequence[str] | None = None, prog: str = "relax-rl plot") -> int:
    """Entry point of ``relax-rl plot``; returns the exit status."""
    return run_guarded(partial(_plot, prog=prog), argv)


def _plot(argv: Sequence[str] | None, prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    check_run_dirs(args.run_dirs)
    try:
        out = plot_learning_curves(
            group_runs(args.run_dirs),
            args.out,
            thresholds=run_thresholds(args.run_dirs),
            window=args.window,
            title=", ".join(run_envs(args.run_dirs)) or None,
        )
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from err
    print(out)
    return 0
