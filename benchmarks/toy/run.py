"""Toy-problem benchmark: every estimator for 10,000 steps on several seeds.

    .venv/bin/python benchmarks/toy/run.py [--steps 10000] [--seeds 0 1 2 3 4] [--workers 2]

Runs ``relax-rl toy --json`` once per seed (all estimators in one call,
at most ``--workers`` processes at a time), writes ``results.json`` next to this file, the
seed-0 figures to ``plots/``, and prints the Markdown summary table for the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from relax_rl.experiments.toy import ESTIMATORS

HERE = Path(__file__).resolve().parent
METRICS = ("theta", "loss", "log_var", "wall_s")


def run_seed(seed: int, steps: int) -> dict[str, dict]:
    """One CLI call with every estimator; seed 0 also draws the figures."""
    cmd = [sys.executable, "-m", "relax_rl.experiments.toy", "--estimator", *ESTIMATORS]
    cmd += ["--steps", str(steps), "--seed", str(seed), "--json"]
    if seed == 0:
        cmd += ["--out", str(HERE / "plots")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def summarise(per_seed: list[dict[str, dict]]) -> dict[str, dict[str, list[float] | None]]:
    """Mean and sample standard deviation across seeds of each metric, per estimator."""
    summary: dict[str, dict[str, list[float] | None]] = {}
    for name in ESTIMATORS:
        summary[name] = {}
        for metric in METRICS:
            values = [run[name][metric] for run in per_seed if run[name][metric] is not None]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[name][metric] = [statistics.mean(values), spread] if values else None
    return summary


def markdown(summary: dict[str, dict[str, list[float] | None]]) -> str:
    """The README table: one row per estimator, mean ± std across seeds."""
    formats = {"theta": ".4f", "loss": ".6f", "log_var": ".2f", "wall_s": ".1f"}
    lines = ["| estimator | final θ | final loss | log_var (last 10%) | wall s |", "|---|---|---|---|---|"]
    for name, metrics in summary.items():
        cells = [
            "n/a" if metrics[m] is None else f"{metrics[m][0]:{formats[m]}} ± {metrics[m][1]:{formats[m]}}"
            for m in METRICS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Run the seeds, write ``results.json`` and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2, help="concurrent processes (the machine is shared)")
    args = parser.parse_args()

    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with ThreadPoolExecutor(args.workers) as pool:
        per_seed = list(pool.map(lambda seed: run_seed(seed, args.steps), args.seeds))
    summary = summarise(per_seed)
    results = {
        "command": " ".join(["python", "benchmarks/toy/run.py", *sys.argv[1:]]),
        "started": started,
        "steps": args.steps,
        "seeds": args.seeds,
        "summary": summary,
        "runs": {name: [run[name] for run in per_seed] for name in ESTIMATORS},
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(summary))


if __name__ == "__main__":
    main()
