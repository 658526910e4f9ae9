"""Command lines: ``relax-rl COMMAND ...``, one module per command; they parse arguments, call the package's
APIs (:mod:`relax_rl.run` and the rest), and print.

Bad input (unknown env, algorithm or config key, unusable model file, existing run directory, nothing to
resume, ...) ends with a one-line message on stderr and exit status 2, never a traceback. A run stopped early
says how on one line too: 130 (SIGINT) or 143 (SIGTERM) after writing a checkpoint, 3 after too many
consecutive skipped updates. ``python -m relax_rl.cli COMMAND ...`` is the same command line.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence

from relax_rl.cli.common import EXIT_BAD_INPUT
from relax_rl.cli.evaluate import main as evaluate_main
from relax_rl.cli.train import main as train_main

PROG = "relax-rl"
#: Each command's module (imported only when it runs: ``relax-rl plot`` needs neither Optuna nor Ray) and
#: one line of help. Each module's ``main(argv, prog)`` returns the exit status.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("relax_rl.cli.train", "train an agent into a run directory, or --resume an interrupted run"),
    "evaluate": ("relax_rl.cli.evaluate", "play a saved model's policy and report its returns"),
    "compare": ("relax_rl.cli.compare", "algorithms over seeds: episodes to solve, final returns, SPS, a plot"),
    "tune": ("relax_rl.cli.tune", "a hyper-parameter study (Optuna here, or Ray Tune on a cluster)"),
    "plot": ("relax_rl.cli.plot", "learning curves of run directories, one band per algorithm"),
    "diagnose": ("relax_rl.cli.diagnose", "split a saved policy's gradient variance into state and action parts"),
    "toy": ("relax_rl.experiments.toy", "the paper's Bernoulli toy problem, one estimator or several"),
    "vae": ("relax_rl.experiments.binary_vae.cli", "the paper's binary VAE on binarised MNIST or Omniglot"),
}


def usage() -> str:
    """``relax-rl --help``: every command, with one line each."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [options]   ({PROG} COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_line}" for name, (_, help_line) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``relax-rl COMMAND ...``: run one command; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_BAD_INPUT
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        print(f"error: {PROG}: unknown command {name!r}; {hint}commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest, prog=f"{PROG} {name}") or 0


__all__ = ["COMMANDS", "evaluate_main", "main", "train_main"]
