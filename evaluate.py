"""``python evaluate.py ...`` is ``relax-rl evaluate ...``: evaluate a saved model (see ``--help``)."""

from relax_rl.cli import evaluate_main

if __name__ == "__main__":
    raise SystemExit(evaluate_main(prog="python evaluate.py"))
