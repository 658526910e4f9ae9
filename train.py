"""Train an agent: ``python train.py --algo a2c --env CartPole-v1`` (see ``--help``)."""

from relax_rl.cli import train_main

if __name__ == "__main__":
    raise SystemExit(train_main())
