"""Binary VAE benchmark (paper §6.2): several estimators on one model, a fixed step budget, a few seeds.

    .venv/bin/python benchmarks/binary_vae/run.py [--model linear1] [--steps 5000] [--seeds 0 1]
        [--estimators nvil rebar relax relaxed_rebar disarm reinforce]

Runs ``relax-rl vae --json`` once per estimator and seed, one
process at a time (the machine is shared), writes ``results_<model>.json`` next to this
file and the seed-0 curves of every estimator to ``plots/``, and prints the Markdown table
for the README. Runs already in the results file are reused, so an interrupted benchmark
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from relax_rl.experiments.binary_vae.plots import plot_curves
from relax_rl.experiments.binary_vae.training import History

FULL_TEST_SET = 10_000  # MNIST's test images

HERE = Path(__file__).resolve().parent
DEFAULT_ESTIMATORS = ("nvil", "rebar", "relax", "relaxed_rebar", "disarm", "reinforce")
METRICS = {  # JSON field → (column title, format)
    "train_elbo": ("train ELBO", ".2f"),
    "valid_elbo": ("valid ELBO", ".2f"),
    "test_iwae": ("test IWAE(100)", ".2f"),
    "log_var": ("log-var", ".2f"),
    "steps_per_s": ("steps/s (wall)", ".0f"),
    "steps_per_cpu_s": ("steps/CPU-s", ".0f"),
}


def run_one(model: str, estimator: str, seed: int, steps: int, batch_size: int, data: Path | None) -> dict:
    """One CLI call; its JSON object, with the curves."""
    cmd = [sys.executable, "-m", "relax_rl.experiments.binary_vae", "--estimator", estimator, "--model", model]
    cmd += ["--download"] if data is None else ["--data", str(data)]
    cmd += ["--steps", str(steps), "--batch-size", str(batch_size), "--seed", str(seed), "--json"]
    cmd += ["--test-subset", str(FULL_TEST_SET)]  # the paper's bound: every test image
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def value(run: dict, metric: str) -> float:
    """A run's metric; the log-variance is that of the first stochastic layer."""
    return run[metric][0] if metric == "log_var" else run[metric]


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict[str, list[float]]]:
    """Per estimator and metric: mean and sample standard deviation across seeds."""
    summary: dict[str, dict[str, list[float]]] = {}
    for name, seeds in runs.items():
        summary[name] = {}
        for metric in METRICS:
            values = [value(run, metric) for run in seeds]
            summary[name][metric] = [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]
    return summary


def markdown(summary: dict[str, dict[str, list[float]]]) -> str:
    """The README table: one row per estimator, mean ± std across seeds."""
    lines = ["| estimator | " + " | ".join(title for title, _ in METRICS.values()) + " |"]
    lines.append("|---" * (len(METRICS) + 1) + "|")
    for name, metrics in summary.items():
        cells = [f"{metrics[m][0]:{fmt}} ± {metrics[m][1]:{fmt}}" for m, (_, fmt) in METRICS.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Run what is missing, then write the results and figures and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="linear1")
    parser.add_argument("--data", type=Path, help="binarized MNIST directory (default: the user cache, downloaded)")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--estimators", nargs="+", default=list(DEFAULT_ESTIMATORS))
    args = parser.parse_args()

    path = HERE / f"results_{args.model}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    same_budget = previous.get("steps") == args.steps and previous.get("batch_size") == args.batch_size
    done = (
        {(r["estimator"], r["seed"]): r for runs in previous.get("runs", {}).values() for r in runs}
        if same_budget
        else {}
    )
    started = previous.get("started") if done else datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = previous.get("meta") if done else None  # a resumed study keeps its recorded date, machine and commit

    runs: dict[str, list[dict]] = {}
    for name in args.estimators:
        for seed in args.seeds:
            if (name, seed) not in done:
                done[name, seed] = run_one(args.model, name, seed, args.steps, args.batch_size, args.data)
                print(f"{name} seed {seed}: valid ELBO {done[name, seed]['valid_elbo']:.2f}", file=sys.stderr)
            runs.setdefault(name, []).append(done[name, seed])
            results = {
                **({"meta": meta} if meta else {}),
                "command": " ".join(["python", "benchmarks/binary_vae/run.py", *sys.argv[1:]]),
                "started": started,
                "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "model": args.model,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "seeds": args.seeds,
                "summary": summarise(runs),
                "runs": runs,
            }
            path.write_text(json.dumps(results, indent=1) + "\n")  # after every run: resumable

    first_seed = {name: History(**seeds[0]["history"]) for name, seeds in runs.items()}
    plot_curves(first_seed, HERE / "plots", f"{args.model}_seed{args.seeds[0]}")
    print(markdown(results["summary"]))


if __name__ == "__main__":
    main()
