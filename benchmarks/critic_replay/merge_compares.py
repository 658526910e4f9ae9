"""Merge the runs of several ``relax-rl compare`` outputs into one report, each comparison's algorithm under a
label of its own (e.g. the control, ``relax_a2c`` with ``pg_estimator=a2c``, beside the default):

    .venv/bin/python benchmarks/critic_replay/merge_compares.py --env LunarLander-v3 \\
        --out benchmarks/critic_replay/LunarLander-v3_zoo \\
        --inputs relax_a2c=/tmp/ll_zoo:relax_a2c relax_a2c=/tmp/ll/seeds34:relax_a2c a2c=/tmp/ll_zoo:a2c \\
                 a2c=/tmp/ll/seeds34:a2c control=/tmp/ll/control:relax_a2c

Each input is ``LABEL=DIR:ALGO``: the runs of ``ALGO`` in ``DIR/results.json``, reported as ``LABEL``.
The report is the comparison's own (relax_rl.compare.write_reports): results.json, summary.md and the
learning curves, which read each run's monitor file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from relax_rl.compare import write_reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--inputs", nargs="+", required=True, metavar="LABEL=DIR:ALGO")
    args = parser.parse_args()
    runs = []
    for item in args.inputs:
        label, _, source = item.partition("=")
        directory, _, algo = source.rpartition(":")
        results = json.loads((Path(directory) / "results.json").read_text())
        runs += [{**run, "algo": label, "source": item} for run in results["runs"] if run["algo"] == algo]
    command = "python benchmarks/critic_replay/merge_compares.py " + " ".join(sys.argv[1:])
    write_reports(runs, args.out, env_id=args.env, settings={"inputs": args.inputs}, command=command)
    print(f"wrote {args.out}/summary.md from {len(runs)} runs")


if __name__ == "__main__":
    main()
