"""Evaluate a saved model: ``python evaluate.py --model runs/a2c/CartPole-v1_s0/final_model.zip`` (see ``--help``)."""

from relax_rl.cli import evaluate_main

if __name__ == "__main__":
    raise SystemExit(evaluate_main())
