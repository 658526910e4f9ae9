"""Command lines: one module per command; they parse arguments, call :mod:`relax_rl.run`, and print.

``python -m relax_rl.cli {train,evaluate} ...`` is ``train.py`` / ``evaluate.py``. Bad input (unknown
env, algorithm or config key, unusable model file, existing run directory, nothing to resume, ...) ends
with a one-line message on stderr and exit status 2, never a traceback. A run stopped early says how on
one line too: 130 (SIGINT) or 143 (SIGTERM) after writing a checkpoint, 3 after too many consecutive
skipped updates.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from relax_rl.cli.common import EXIT_BAD_INPUT
from relax_rl.cli.evaluate import main as evaluate_main
from relax_rl.cli.train import main as train_main


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m relax_rl.cli {train,evaluate} ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "evaluate": evaluate_main}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m relax_rl.cli {{{','.join(commands)}}} [options]", file=sys.stderr)
        return EXIT_BAD_INPUT
    return commands[argv[0]](argv[1:])


__all__ = ["evaluate_main", "main", "train_main"]
