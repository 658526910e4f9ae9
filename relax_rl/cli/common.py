"""What every command line shares: one-line errors with exit status 2, and the --threads option."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from relax_rl.config import ConfigError
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
