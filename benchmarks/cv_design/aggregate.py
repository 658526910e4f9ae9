"""Summarise the control-variate design study: one row per (env, cell), a table, JSON and a plot.

Columns: runs solved; median updates and episodes to the env's threshold (unsolved runs censored
at their budget, so a median over partly unsolved runs is a lower bound, marked ≥); the final mean
return; the variance ratio RELAX/A2C of the per-step policy-gradient estimates measured on the
*same* rollouts (``train/policy_grad_var`` over ``train/policy_grad_var_a2c``, so at matched
policies), summed over a run's logged updates (and over its first 20%), median over runs; the
fraction of A2C's gradient variance due to action sampling (``train/action_var_frac_a2c``, the
law-of-total-variance diagnostic logged every 50k steps), median over its logs; and the median SPS.

    python benchmarks/cv_design/aggregate.py   # writes table.md, results.json, variance_ratio.png, plots/ here
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from relax_rl.plot import plot_learning_curves, run_thresholds

HERE = Path(__file__).resolve().parent
CELL_DIRS = [HERE / "cells", HERE.parent / "head_to_head"]
EARLY = 0.2  # the first fifth of a run's updates: while the policy is still far from deterministic


def _scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar a run logged to TensorBoard, by tag (the event files are read once)."""
    values: dict[str, list[float]] = {}
    for events in run_dir.glob("*_1"):
        acc = EventAccumulator(str(events)).Reload()
        for tag in acc.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return values


def variance_ratio(scalars: dict[str, list[float]], fraction: float = 1.0) -> float | None:
    """Σ policy_grad_var / Σ policy_grad_var_a2c over the first ``fraction`` of the logged updates
    (None for SB3's A2C).

    A ratio of sums, not a median of per-update ratios: once a policy is nearly deterministic both
    variances fall by orders of magnitude and their ratio stops meaning anything (on CartPole it
    climbs past 30 at variances near 1e-6), while the sums weigh the updates where the gradient
    noise is large, which are the ones that decide learning.
    """
    relax, a2c = scalars.get("train/policy_grad_var", []), scalars.get("train/policy_grad_var_a2c", [])
    keep = max(1, round(len(relax) * fraction))  # at least one logged update
    relax, a2c = relax[:keep], a2c[:keep]
    return sum(relax) / sum(a2c) if relax and sum(a2c) > 0 else None


def _natural(text: str) -> tuple:
    """Sort key that puts D16 before D64 before D256."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cell_rows(results: Path) -> list[dict]:
    """One row per algorithm in a ``compare`` output directory (head_to_head holds two)."""
    runs = [r for r in json.loads(results.read_text())["runs"] if r["metrics"]]
    by_algo: dict[str, list[dict]] = {}
    for run in runs:
        by_algo.setdefault(run["algo"], []).append(run)
    rows = []
    for algo, algo_runs in by_algo.items():
        updates, episodes, ratios, early_ratios, fractions, run_dirs = [], [], [], [], [], []
        for run in algo_runs:
            m, run_dir = run["metrics"], Path(run["run_dir"])
            if not run_dir.is_absolute():
                run_dir = HERE.parents[1] / run_dir
            run_dirs.append(run_dir)
            config = yaml.safe_load((run_dir / "config.yml").read_text())
            batch = m["n_envs"] * config["algo_kwargs"].get("n_steps", 5)
            solved = m["solved_at_timestep"]
            updates.append((solved if solved is not None else m["timesteps"]) / batch)
            episodes.append(m["solved_at_episode"] if solved is not None else m["episodes"])
            scalars = _scalars(run_dir)
            if (ratio := variance_ratio(scalars)) is not None:
                ratios.append(ratio)
                early_ratios.append(variance_ratio(scalars, EARLY))
            fractions += scalars.get("train/action_var_frac_a2c", [])
        n_solved = sum(r["metrics"]["solved_at_timestep"] is not None for r in algo_runs)
        # benchmarks/head_to_head holds A2C and RELAX-A2C at its default design, the MLP head.
        cell = results.parent.name if len(by_algo) == 1 else {"a2c": "a2c"}.get(algo, "relax_mlp")
        rows.append(
            {
                "env": algo_runs[0]["metrics"]["env"],
                "cell": cell,
                "algo": algo,
                "seeds": sorted(r["seed"] for r in algo_runs),
                "solved": f"{n_solved}/{len(algo_runs)}",
                "updates": statistics.median(updates),
                "episodes": statistics.median(episodes),
                "final_return": statistics.median(r["metrics"]["final_mean_return"] for r in algo_runs),
                "var_ratio": _median(ratios),
                "var_ratio_early": _median(early_ratios),
                "action_var_frac_a2c": _median(fractions),
                "sps": statistics.median(r["metrics"]["sps"] for r in algo_runs),
                "censored": n_solved < len(algo_runs),
                "run_dirs": [str(d.relative_to(HERE.parents[1])) for d in run_dirs],
            }
        )
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    lines = [
        "| env | cell | seeds | solved | median updates to threshold | median episodes | final return | "
        "var ratio RELAX/A2C (same rollouts, summed over updates) | same, first 20% of updates | "
        " action share of A2C's variance | SPS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bound = "≥ " if r["censored"] else ""
        seeds = f"{r['seeds'][0]}–{r['seeds'][-1]}"
        lines.append(
            f"| {r['env']} | {r['cell']} | {seeds} | {r['solved']} | "
            f"{bound}{r['updates']:.0f} | {bound}{r['episodes']:.0f} | "
            f"{r['final_return']:.3g} | {_fmt(r['var_ratio'], '.2f')} | {_fmt(r['var_ratio_early'], '.2f')} | "
            f"{_fmt(r['action_var_frac_a2c'], '.2f')} | "
            f"{r['sps']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Variance ratio RELAX/A2C of every RELAX cell, grouped by env: below 1 means RELAX reduces variance."""
    relax = [r for r in rows if r["var_ratio"] is not None]
    envs = list(dict.fromkeys(r["env"] for r in relax))
    fig = Figure(figsize=(10, 0.35 * len(relax) + 1.5))
    ax = fig.subplots()
    labels, values, colours = [], [], []
    palette = dict(zip(envs, [f"C{i}" for i in range(len(envs))], strict=False))
    for r in relax:
        labels.append(f"{r['env'].removeprefix('relax_rl/')}  {r['cell']}")
        values.append(r["var_ratio"])
        colours.append(palette[r["env"]])
    y = np.arange(len(values))
    ax.barh(y, values, color=colours)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("per-step policy-gradient variance, RELAX / A2C on the same rollouts (summed over updates)")
    ax.set_title("Where the learned control variate reduces variance (< 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_curves(rows: list[dict], out_dir: Path) -> None:
    """One learning-curve figure per env, every cell of the study on it (mean and 95% band over seeds)."""
    root = HERE.parents[1]
    for env in dict.fromkeys(r["env"] for r in rows):
        groups = {r["cell"]: [root / d for d in r["run_dirs"]] for r in rows if r["env"] == env}
        name = env.removeprefix("relax_rl/")
        plot_learning_curves(
            groups, out_dir / f"curves_{name}.png", thresholds=run_thresholds(groups[next(iter(groups))]), title=name
        )


def main() -> None:
    rows = [row for d in CELL_DIRS for results in sorted(d.rglob("results.json")) for row in cell_rows(results)]
    rows.sort(key=lambda r: (_natural(r["env"]), r["cell"] != "a2c", r["cell"]))
    (HERE / "table.md").write_text(table(rows))
    (HERE / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, HERE / "variance_ratio.png")
    plot_curves(rows, HERE / "plots")
    print(table(rows))


if __name__ == "__main__":
    main()
