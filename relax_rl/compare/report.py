"""The reports of a comparison: results.json, summary.md (rliable intervals, ratios to A2C) and the curves."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from rliable import metrics as rl_metrics

from relax_rl.plot import bootstrap_interval, plot_learning_curves
from relax_rl.provenance import provenance

BASELINE = "a2c"  # ratios in summary.md are <algo> / BASELINE


def write_reports(
    results: Sequence[dict[str, Any]],
    out: Path,
    *,
    env_id: str,
    settings: dict[str, Any] | None = None,
    command: str = "",
) -> None:
    """Write results.json, summary.md and learning_curves.png into ``out`` from the runs' records.

    results.json records ``settings`` (the comparison's options) and its ``meta``: ``command``, the date, the
    machine and the code's commit.
    """
    out.mkdir(parents=True, exist_ok=True)
    report = {"env": env_id, "meta": provenance(command), "settings": settings or {}, "runs": list(results)}
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
                title=env_id,
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


class Median(NamedTuple):
    """A median over runs, and whether it is one: where it rests on a run that never solved, it is a lower bound."""

    point: float
    exact: bool = True


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
    ratio_rows: list[tuple[str, dict[str, Median]]] = []
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
) -> tuple[list[str], dict[str, Median]]:
    """Rows of episodes-to-solve (unsolved runs censored at their episode count) and each algo's median."""
    rows = ["| algo | solved | median [95% CI] | IQM [95% CI] |", "|---|---|---|---|"]
    medians = {}
    for algo, runs in by_algo.items():
        episodes = [m["episodes"] if solved_at(m) is None else solved_at(m) for m in runs]
        n_solved = sum(solved_at(m) is not None for m in runs)
        median = _estimate(episodes, median_over_runs)
        iqm = _estimate(episodes, rl_metrics.aggregate_iqm)
        # With unsolved runs counted at +inf the median is finite exactly when it does not rest on a censored
        # run; otherwise the censored median is only a lower bound.
        uncensored = [e if solved_at(m) is not None else np.inf for e, m in zip(episodes, runs, strict=True)]
        exact = bool(np.isfinite(np.median(uncensored)))
        medians[algo] = Median(median[0], exact)
        cell = _fmt(median) if exact else f"≥ {_fmt(median)} (censored)"
        rows.append(f"| {algo} | {n_solved}/{len(runs)} solved | {cell} | {_fmt(iqm)} |")
    if not all(median.exact for median in medians.values()):
        rows += ["", "(censored): half the runs or more did not solve, so the median is only a lower bound."]
    return rows, medians


def _return_table(by_algo: dict[str, list[dict[str, Any]]], window: int) -> tuple[list[str], dict[str, Median]]:
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
        sps[algo] = Median(sps_estimate[0])
        wall = float(np.median([m["wall_s"] for m in runs]))
        rows.append(f"| {algo} | {final} | {_fmt(sps_estimate)} | {wall:.1f} |")
    return rows, sps


def _ratio_table(rows: Sequence[tuple[str, dict[str, Median]]], algos: Sequence[str]) -> list[str]:
    """Each algo's value over BASELINE's, per metric; empty without BASELINE or another algo."""
    others = [algo for algo in algos if algo != BASELINE]
    if BASELINE not in algos or not others:
        return []
    lines = [f"## Ratios to {BASELINE} (episodes: below 1 solves sooner; SPS: below 1 is slower)", ""]
    lines += ["| metric | " + " | ".join(f"{a} / {BASELINE}" for a in others) + " |", "|---|" + "---|" * len(others)]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(_ratio(values[a], values[BASELINE]) for a in others) + " |")
    return [*lines, ""]


def _ratio(value: Median, baseline: Median) -> str:
    """``value / baseline``, as a bound where one median is censored, and no number where both are."""
    ratio = f"{value.point / baseline.point:.2f}"
    if value.exact and baseline.exact:
        return ratio
    if value.exact:  # the baseline's median is a lower bound: the ratio is an upper one
        return f"≤ {ratio}"
    return f"≥ {ratio}" if baseline.exact else "n/a (neither median solved)"
