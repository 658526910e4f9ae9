"""Summarise the control-variate design study: one row per (env, cell).

Columns: runs solved; median updates and episodes to the env's threshold (unsolved runs censored
at their total, so a median over partly unsolved runs is a lower bound); the final mean return;
the variance ratio RELAX/A2C of the per-step policy-gradient estimates, measured on the *same*
rollouts (``train/policy_grad_var`` over ``train/policy_grad_var_a2c``, so at matched policies),
median over the logged updates of every run; and the median SPS.

    python benchmarks/cv_design/aggregate.py [CELLS_DIR ...] > benchmarks/cv_design/table.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

DEFAULT_DIRS = ["benchmarks/cv_design/cells", "benchmarks/head_to_head"]


def variance_ratio(run_dir: Path) -> float | None:
    """Median over logged updates of policy_grad_var / policy_grad_var_a2c (None for SB3's A2C)."""
    ratios = []
    for events in run_dir.glob("*_1"):
        acc = EventAccumulator(str(events)).Reload()
        if "train/policy_grad_var" not in acc.Tags()["scalars"]:
            return None
        relax = [e.value for e in acc.Scalars("train/policy_grad_var")]
        a2c = [e.value for e in acc.Scalars("train/policy_grad_var_a2c")]
        ratios += [r / a for r, a in zip(relax, a2c, strict=True) if a > 0]
    return statistics.median(ratios) if ratios else None


def cell_row(cell: Path) -> dict | None:
    results = cell / "results.json"
    if not results.exists():
        return None
    runs = [r for r in json.loads(results.read_text())["runs"] if r["metrics"]]
    if not runs:
        return None
    updates, episodes, ratios = [], [], []
    for run in runs:
        m = run["metrics"]
        config = yaml.safe_load((Path(run["run_dir"]) / "config.yml").read_text())
        batch = m["n_envs"] * config["algo_kwargs"].get("n_steps", 5)
        solved = m["solved_at_timestep"]
        updates.append((solved if solved is not None else m["timesteps"]) / batch)
        episodes.append(m["solved_at_episode"] if solved is not None else m["episodes"])
        ratio = variance_ratio(Path(run["run_dir"]))
        if ratio is not None:
            ratios.append(ratio)
    n_solved = sum(r["metrics"]["solved_at_timestep"] is not None for r in runs)
    return {
        "env": runs[0]["metrics"]["env"],
        "cell": cell.name,
        "solved": f"{n_solved}/{len(runs)}",
        "updates": statistics.median(updates),
        "episodes": statistics.median(episodes),
        "final_return": statistics.median(r["metrics"]["final_mean_return"] for r in runs),
        "var_ratio": statistics.median(ratios) if ratios else None,
        "sps": statistics.median(r["metrics"]["sps"] for r in runs),
        "censored": n_solved < len(runs),
    }


def main(dirs: list[str]) -> None:
    rows = [row for d in dirs for cell in sorted(Path(d).rglob("results.json")) if (row := cell_row(cell.parent))]
    print(
        "| env | cell | solved | median updates to threshold | median episodes | final return | "
        "var ratio RELAX/A2C (same rollouts) | SPS |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        bound = "≥ " if r["censored"] else ""
        ratio = "—" if r["var_ratio"] is None else f"{r['var_ratio']:.2f}"
        print(
            f"| {r['env']} | {r['cell']} | {r['solved']} | {bound}{r['updates']:.0f} | {bound}{r['episodes']:.0f} | "
            f"{r['final_return']:.3g} | {ratio} | {r['sps']:.0f} |"
        )
    json.dump(rows, sys.stderr, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT_DIRS)
