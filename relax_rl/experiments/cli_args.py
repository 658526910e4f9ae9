"""Argument types and a parser shared by the experiment command lines: bad input is one line, exit 2."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator

from tqdm import tqdm


class OneLineParser(argparse.ArgumentParser):
    """Reports bad input as one line on stderr (no usage block) and exits with code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _float_where(text: str, accept: Callable[[float], bool], what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # accepted by no rule below
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def open_unit(text: str) -> float:
    return _float_where(text, lambda v: 0 < v < 1, "a number strictly between 0 and 1")


def positive_float(text: str) -> float:
    return _float_where(text, lambda v: 0 < v < math.inf, "a positive number")


def progress_steps(steps: int, desc: str, enabled: bool) -> Iterator[int]:
    """1..steps, with a progress bar on a terminal, or a plain line every tenth of the way in a log
    (a bar's carriage returns would make a log one huge line)."""
    if not enabled or sys.stderr.isatty():
        yield from tqdm(range(1, steps + 1), desc=desc, disable=not enabled)
        return
    every = max(steps // 10, 1)
    for step in range(1, steps + 1):
        yield step
        if step % every == 0 or step == steps:
            print(f"{desc}: step {step}/{steps} ({step / steps:.0%})", file=sys.stderr, flush=True)
