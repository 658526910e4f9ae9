"""Compare algorithms over seeds: ``python -m relax_rl.compare --env CartPole-v1 --algos relax_a2c a2c --seeds 5``.

Every (algo, seed) pair trains in its own ``train`` subprocess into ``<out>/runs/<algo>/<env>_s<seed>``,
``--workers`` at a time. Then ``<out>`` gets ``results.json`` (every run's metrics), ``summary.md``
(episodes to solve with bootstrap CIs, final return, SPS, wall time, ratios to a2c) and
``learning_curves.png``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rliable import metrics as rl_metrics
from tqdm import tqdm

from relax_rl.cli import METRICS_FILE, CLIError, CLIParser, default_run_dir, run_guarded
from relax_rl.config import ALGOS, parse_overrides, resolve_config
from relax_rl.envs import get_spec
from relax_rl.plot import bootstrap_interval, plot_learning_curves

BASELINE = "a2c"  # ratios in summary.md are <algo> / BASELINE


@dataclasses.dataclass
class Job:
    """One training run of the comparison."""

    algo: str
    seed: int
    run_dir: Path
    log: Path


def _parser() -> CLIParser:
    parser = CLIParser(prog="python -m relax_rl.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    parser.add_argument("--seeds", type=int, default=5, help="K seeds, FIRST..FIRST+K-1, for every algorithm")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="FIRST; tune on other seeds than those you report (default 0)"
    )
    parser.add_argument("--total-timesteps", type=int, help="default: n_timesteps of each algorithm's config")
    parser.add_argument("--n-envs", type=int, help="default: n_envs of each algorithm's config")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="runs at a time")
    parser.add_argument("--out", type=Path, help="default: runs/compare/<env>")
    parser.add_argument("--hyperparams", nargs="+", default=[], metavar="KEY=VALUE", help="passed to every run")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--eval-freq", type=int, default=0, help="per-run evaluation period in timesteps; 0: off")
    parser.add_argument("--checkpoint-freq", type=int, default=0, help="per-run checkpoint period; 0: off")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit status 0 if every run succeeded, 1 if some failed, 2 for bad input."""
    return run_guarded(_compare, argv)


def _compare(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        raise CLIError("--seeds and --workers must be >= 1")
    out = args.out or Path("runs") / "compare" / args.env.replace("/", "-")
    jobs = _plan(args, out)
    train_args = _train_args(args)
    results = _run_all(jobs, train_args, args.workers)
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    write_reports(results, out, env_id=args.env, settings={**settings, "out": str(out)})
    failed = [r for r in results if r["returncode"] != 0]
    for run in failed:
        print(f"{run['algo']} seed {run['seed']} failed (exit {run['returncode']}): {run['error']}", file=sys.stderr)
    print(f"wrote {out / 'summary.md'}, {out / 'results.json'}, {out / 'learning_curves.png'}")
    return 1 if failed else 0


def _plan(args: Any, out: Path) -> list[Job]:
    """Check everything that would make every run fail the same way, then list the jobs."""
    get_spec(args.env)
    overrides = parse_overrides(args.hyperparams)
    for algo in args.algos:
        resolve_config(algo, args.env, 0, overrides=overrides, n_envs=args.n_envs, total_timesteps=args.total_timesteps)
    jobs = [
        Job(algo, seed, default_run_dir(out / "runs", algo, args.env, seed), out / "logs" / f"{algo}_s{seed}.log")
        for algo in dict.fromkeys(args.algos)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    existing = [str(job.run_dir) for job in jobs if job.run_dir.exists()]
    if existing:
        raise CLIError(f"{len(existing)} run directories already exist (e.g. {existing[0]}); use another --out")
    return jobs


def _train_args(args: Any) -> list[str]:
    """Flags every run gets besides --algo and --seed."""
    flags = ["--env", args.env, "--device", args.device]
    flags += ["--eval-freq", str(args.eval_freq), "--checkpoint-freq", str(args.checkpoint_freq)]
    if args.total_timesteps is not None:
        flags += ["--total-timesteps", str(args.total_timesteps)]
    if args.n_envs is not None:
        flags += ["--n-envs", str(args.n_envs)]
    if args.hyperparams:
        flags += ["--hyperparams", *args.hyperparams]
    return flags


def _run_all(jobs: Sequence[Job], train_args: Sequence[str], workers: int) -> list[dict[str, Any]]:
    results = []
    with (
        concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(jobs), desc="runs", unit="run") as progress,
    ):
        futures = [pool.submit(run_job, job, train_args) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            results.append(result)
            progress.set_postfix_str(f"last: {result['algo']} s{result['seed']}", refresh=False)
            progress.update()
    return sorted(results, key=lambda r: (list(ALGOS).index(r["algo"]), r["seed"]))


def run_job(job: Job, train_args: Sequence[str]) -> dict[str, Any]:
    """Train one run in a subprocess (its output goes to ``job.log``); return its record for results.json."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "relax_rl.cli", "train", "--algo", job.algo, "--seed", str(job.seed)]
    command += ["--run-dir", str(job.run_dir), *train_args]
    with job.log.open("w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    metrics_path = job.run_dir / METRICS_FILE
    record: dict[str, Any] = {"algo": job.algo, "seed": job.seed, "run_dir": str(job.run_dir), "log": str(job.log)}
    record["returncode"] = returncode
    record["metrics"] = json.loads(metrics_path.read_text()) if returncode == 0 and metrics_path.is_file() else None
    lines = job.log.read_text().strip().splitlines()
    record["error"] = None if returncode == 0 else (lines[-1] if lines else "no output")
    return record


# ------------------------------------------------------------------------------------------ reports


def write_reports(
    results: Sequence[dict[str, Any]], out: Path, *, env_id: str, settings: dict[str, Any] | None = None
) -> None:
    """Write results.json, summary.md and learning_curves.png into ``out`` from the runs' records.

    ``settings`` (the comparison's options) are recorded in results.json.
    """
    out.mkdir(parents=True, exist_ok=True)
    report = {"env": env_id, "settings": settings or {}, "runs": list(results)}
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    done = [r for r in results if r["metrics"] is not None]
    by_algo: dict[str, list[dict[str, Any]]] = {}
    for run in done:
        by_algo.setdefault(run["algo"], []).append(run["metrics"])
    (out / "summary.md").write_text(summary_markdown(by_algo, env_id, n_failed=len(results) - len(done)))
    if done:
        groups: dict[str, list[str]] = {}
        for run in done:
            groups.setdefault(run["algo"], []).append(run["run_dir"])
        thresholds = sorted({t for _, t, _ in _threshold_columns(done[0]["metrics"])})
        try:
            plot_learning_curves(
                groups,
                out / "learning_curves.png",
                thresholds=thresholds,
                title=f"{env_id}: mean and 95% bootstrap band over seeds",
            )
        except ValueError as err:  # e.g. budgets too small for any episode to finish
            print(f"no learning curves: {err}", file=sys.stderr)


def _threshold_columns(metrics: dict[str, Any]) -> list[tuple[str, float, Callable[[dict[str, Any]], Any]]]:
    """(label, threshold, getter of solved_at_episode) for the main and every extra threshold."""
    columns = []
    if metrics["solve_threshold"] is not None:
        columns.append(
            ("gymnasium's reward_threshold", float(metrics["solve_threshold"]), lambda m: m["solved_at_episode"])
        )
    for key in metrics["extra_thresholds"]:
        columns.append(("extra threshold", float(key), lambda m, k=key: m["extra_thresholds"][k]["solved_at_episode"]))
    return columns


def median_over_runs(scores: np.ndarray) -> float:
    """The median over every run of one task.

    Not rliable's ``aggregate_median``: that is the median over *tasks* of each task's mean over
    runs, so for the single task of a comparison it would be the mean.
    """
    return float(np.median(scores))


def _estimate(values: Sequence[float], aggregate: Callable[[np.ndarray], float]) -> tuple[float, float, float]:
    point, low, high = bootstrap_interval(np.asarray(values, dtype=float).reshape(-1, 1), aggregate)
    return float(point), float(low), float(high)


def _fmt(estimate: tuple[float, float, float], digits: int = 0) -> str:
    point, low, high = estimate
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_markdown(by_algo: dict[str, list[dict[str, Any]]], env_id: str, *, n_failed: int = 0) -> str:
    """The Markdown report: one table per threshold, one for return/throughput, one of ratios to a2c."""
    lines = [f"# {' vs '.join(by_algo) or 'no runs'} on {env_id}", ""]
    if n_failed:
        lines += [f"**{n_failed} run(s) failed** and are left out; see results.json.", ""]
    if not by_algo:
        return "\n".join(lines) + "\n"
    first = next(iter(by_algo.values()))[0]
    lines += [
        f"Runs per algorithm: {', '.join(f'{a} {len(m)}' for a, m in by_algo.items())}; "
        f"timesteps per run: {first['timesteps']}. Brackets: 95% percentile-bootstrap CI over seeds "
        "(rliable's stratified bootstrap); IQM: interquartile mean (rliable.metrics).",
        "",
        f"Episodes to solve: the first episode at which the mean return of the last {first['solve_window']} "
        "episodes reaches the threshold. Runs that never solve are counted at their total number of episodes "
        "(right-censored), so where some are unsolved the statistics are lower bounds.",
        "",
    ]
    ratio_rows: list[tuple[str, dict[str, float]]] = []
    for label, threshold, solved_at in _threshold_columns(first):
        table, medians = _solve_table(by_algo, solved_at)
        lines += [f"## Episodes to solve: {threshold:g} ({label})", "", *table, ""]
        ratio_rows.append((f"median episodes to solve {threshold:g}", medians))
    table, sps = _return_table(by_algo, first["solve_window"])
    lines += ["## Final return and throughput", "", *table, ""]
    ratio_rows.append(("median SPS", sps))
    lines += _ratio_table(ratio_rows, list(by_algo))
    return "\n".join(lines) + "\n"


def _solve_table(
    by_algo: dict[str, list[dict[str, Any]]], solved_at: Callable[[dict[str, Any]], Any]
) -> tuple[list[str], dict[str, float]]:
    """Rows of episodes-to-solve (unsolved runs censored at their episode count) and each algo's median."""
    rows = ["| algo | solved | median [95% CI] | IQM [95% CI] |", "|---|---|---|---|"]
    medians = {}
    for algo, runs in by_algo.items():
        episodes = [m["episodes"] if solved_at(m) is None else solved_at(m) for m in runs]
        n_solved = sum(solved_at(m) is not None for m in runs)
        median = _estimate(episodes, median_over_runs)
        iqm = _estimate(episodes, rl_metrics.aggregate_iqm)
        medians[algo] = median[0]
        rows.append(f"| {algo} | {n_solved}/{len(runs)} solved | {_fmt(median)} | {_fmt(iqm)} |")
    return rows, medians


def _return_table(by_algo: dict[str, list[dict[str, Any]]], window: int) -> tuple[list[str], dict[str, float]]:
    """Rows of final return, SPS and wall time, and each algo's median SPS."""
    rows = [
        f"| algo | final return (mean of last {window} episodes): median [95% CI] "
        "| SPS: median [95% CI] | wall time (s): median |",
        "|---|---|---|---|",
    ]
    sps = {}
    for algo, runs in by_algo.items():
        returns = [m["final_mean_return"] for m in runs if m["final_mean_return"] is not None]
        final = _fmt(_estimate(returns, median_over_runs), 1) if returns else "no episode"
        sps_estimate = _estimate([m["sps"] for m in runs], median_over_runs)
        sps[algo] = sps_estimate[0]
        wall = float(np.median([m["wall_s"] for m in runs]))
        rows.append(f"| {algo} | {final} | {_fmt(sps_estimate)} | {wall:.1f} |")
    return rows, sps


def _ratio_table(rows: Sequence[tuple[str, dict[str, float]]], algos: Sequence[str]) -> list[str]:
    """Each algo's value over BASELINE's, per metric; empty without BASELINE or another algo."""
    others = [algo for algo in algos if algo != BASELINE]
    if BASELINE not in algos or not others:
        return []
    lines = [f"## Ratios to {BASELINE} (episodes: below 1 solves sooner; SPS: below 1 is slower)", ""]
    lines += ["| metric | " + " | ".join(f"{a} / {BASELINE}" for a in others) + " |", "|---|" + "---|" * len(others)]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(f"{values[a] / values[BASELINE]:.2f}" for a in others) + " |")
    return [*lines, ""]


if __name__ == "__main__":
    raise SystemExit(main())
