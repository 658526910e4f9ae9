"""``python train.py ...`` is ``relax-rl train ...``: train an agent (see ``--help``)."""

from relax_rl.cli import train_main

if __name__ == "__main__":
    raise SystemExit(train_main(prog="python train.py"))
