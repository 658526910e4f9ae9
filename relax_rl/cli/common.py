"""What every command line shares: one-line errors with exit status 2, and the --threads option."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from relax_rl.config import RUN_OPTIONS, ConfigError
from relax_rl.envs import UnknownEnvError
from relax_rl.errors import UsageError
from relax_rl.run.output import fds_redirected

EXIT_BAD_INPUT = 2
EXIT_IO_ERROR = 74  # sysexits.h EX_IOERR: the run directory could not be written (e.g. a full disk)


class CLIParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one-line UsageErrors instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def run_guarded(command: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a command; bad input (UsageError, ConfigError, UnknownEnvError) becomes one stderr line and exit 2."""
    try:
        return command(argv)
    except (UsageError, ConfigError, UnknownEnvError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def whole_number(text: str) -> int:
    """An argparse type for counts of timesteps and the like, written as the configs write them: ``500000``,
    ``5e5``, ``1.0e6`` or ``500_000``."""
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number (such as 500000 or 1e6), got {text!r}")
    return int(number)


def add_run_options(
    parser: argparse.ArgumentParser,
    names: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    default_help: Mapping[str, str] | None = None,
) -> None:
    """A flag per run option (:class:`~relax_rl.config.RunOptions`), or per option in ``names``: ``--eval-freq N``
    for a count, ``--stop-at-solve``/``--no-stop-at-solve`` for a yes/no. Left unset (None), a flag takes the
    config's value, else the option's default; ``defaults`` gives a command defaults of its own, and
    ``default_help`` says in words what a command does when the flag is left unset."""
    defaults, default_help = dict(defaults or {}), dict(default_help or {})
    for option in RUN_OPTIONS:
        if names is not None and option.name not in names:
            continue
        default = defaults.get(option.name, option.default)
        shown = default_help.get(option.name) or (
            ("on" if default else "off") if isinstance(default, bool) else default
        )
        common = {"default": defaults.get(option.name), "help": f"{option.metadata['help']} (default {shown})"}
        flag = "--" + option.name.replace("_", "-")
        if isinstance(option.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        else:
            parser.add_argument(flag, type=whole_number, metavar="N", **common)


def run_option_minimums(names: Sequence[str] | None = None) -> dict[str, int]:
    """``check_minimums``' table for the count options among ``names`` (all by default)."""
    return {
        o.name: o.metadata["minimum"]
        for o in RUN_OPTIONS
        if not isinstance(o.default, bool) and (names is None or o.name in names)
    }


def run_options_of(args: argparse.Namespace, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The run options the command line gave, by name (None where a flag was left unset)."""
    return {o.name: getattr(args, o.name) for o in RUN_OPTIONS if names is None or o.name in names}


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small policies run fastest single-threaded, parallel runs "
        "do not oversubscribe the cores, and results are reproducible); 0 keeps torch's default",
    )


def check_minimums(args: argparse.Namespace, minimums: dict[str, int]) -> None:
    """Refuse ``--flag`` values below their minimum (flags left unset are fine)."""
    for flag, minimum in minimums.items():
        value = getattr(args, flag)
        if value is not None and value < minimum:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= {minimum}")


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout, by Python or by native code (ALE's banner), to stderr."""
    with fds_redirected(2, [1]), contextlib.redirect_stdout(sys.stderr):
        yield
