"""Issue 21's (and 22's) tables: updates (or episodes) to the threshold per design (median over seeds,
with rliable's bootstrap interval and the ratio to the control's), and the critics' fit against the exact
reference at 2k, 8k and 20k steps and at the end of each run. Writes ``<results stem>_<env>.md`` and a PNG
of each design's runs.

    .venv/bin/python benchmarks/critic_replay/aggregate_issue21.py --env relax_rl/TargetMatching-D64-v0
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from aggregate import median_ci, ratio_ci

HERE = Path(__file__).resolve().parent
FIT_KEYS = ("v_rmse", "v_mean_error", "state_part_rmse", "slope_r2", "slope_r2_weighted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="relax_rl/TargetMatching-D64-v0")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        default=[HERE / "issue21.jsonl"],
        help="JSONL files of run.py, read together (e.g. new designs, and the controls run before them); the "
        "tables are named after the first",
    )
    parser.add_argument("--control", default="a2c_replay")
    parser.add_argument(
        "--control-lr", type=float, help="compare every row with the control at this lr (default: at the row's own)"
    )
    parser.add_argument(
        "--metric",
        choices=["updates", "episodes", "timesteps", "wall_s"],
        default="updates",
        help="wall_s: seconds to the solve, comparable only between runs made side by side in one invocation",
    )
    parser.add_argument(
        "--threshold", type=float, help="only the runs made to this threshold (results files may hold several)"
    )
    args = parser.parse_args()
    runs = [json.loads(line) for path in args.results for line in path.read_text().splitlines()]
    cells: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for r in runs:
        if r["env"] == args.env and args.threshold in (None, r.get("threshold")):
            cells[(r["variant"], r["lr"])].append(r)
    name = args.env.replace("/", "_") + ("" if args.metric in ("updates", "episodes") else f"_{args.metric}")
    metric = args.metric
    lines = [f"# {args.env}: {metric} to the threshold", ""]
    lines += [
        f"| design | lr | seeds solved | median {metric} [95% CI] | per seed | vs control [95% CI] | median SPS |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    medians = {}
    for (variant, lr), rs in sorted(cells.items(), key=lambda kv: (kv[0][1], np.median([r[metric] for r in kv[1]]))):
        rs = sorted(rs, key=lambda r: r["seed"])
        updates = [r[metric] for r in rs]
        point, low, high = median_ci(updates)
        medians[(variant, lr)] = updates
        control_lr = lr if args.control_lr is None else args.control_lr
        control = cells.get((args.control, control_lr))
        versus = "–"
        if control and (variant, lr) != (args.control, control_lr):
            ratio, r_low, r_high = ratio_ci(updates, [r[metric] for r in control])
            versus = f"{ratio:.2f} [{r_low:.2f}, {r_high:.2f}]"
        solved = f"{sum(r['solved'] for r in rs)}/{len(rs)}"
        digits = 1 if metric == "wall_s" else 0
        per_seed = " / ".join(f"{u:.{digits}f}" for u in updates)
        sps = np.median([r["sps"] for r in rs])
        median = f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
        lines.append(f"| `{variant}` | {lr:g} | {solved} | {median} | {per_seed} | {versus} | {sps:.0f} |")
    fit_lines = []
    for (variant, lr), rs in sorted(cells.items()):
        fits = [r.get("fit") or {} for r in rs]
        for at in ("2000", "8000", "20000", "end"):
            values = []
            for key in FIT_KEYS:
                got = [f[at][key] for f in fits if at in f and key in f[at]]
                values.append(f"{np.median(got):.3f}" if got else "–")
            if any(v != "–" for v in values):
                fit_lines.append(f"| `{variant}` | {lr:g} | {at} | " + " | ".join(values) + " |")
    if fit_lines:  # on envs with an exact reference
        lines += [
            "",
            "Critics' fit against the exact reference (median over seeds) at each point: V̂'s rmse and mean error",
            "against V*, the state part `V̂ + E_π[ĉ]`'s rmse, and an affine ĉ's slope R² against w* (plain / p(1−p)-",
            "weighted).",
            "",
            "| design | lr | at | v_rmse | v_mean_error | state_part_rmse | slope_r2 | slope_r2_weighted |",
            "|---|---|---|---|---|---|---|---|",
            *fit_lines,
        ]
    out = HERE / f"{args.results[0].stem}_{name}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(medians) + 1.5))
    labels = [f"{v} (lr {lr:g})" for v, lr in medians]
    for i, updates in enumerate(medians.values()):
        ax.scatter(updates, [i] * len(updates), color="C0", alpha=0.6)
        ax.plot([np.median(updates)] * 2, [i - 0.3, i + 0.3], color="k")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xscale("log")
    ax.set_xlabel(f"{metric} to the threshold (dots: seeds, bar: median)")
    ax.set_title(args.env)
    fig.tight_layout()
    fig.savefig(HERE / f"{args.results[0].stem}_{name}.png", dpi=120)


if __name__ == "__main__":
    main()
