"""Tables and plots of the critic-replay study (``run.py``): episodes to the threshold per variant and
learning rate, each variant at its best learning rate, and ratios to SB3's A2C and to the control.

Medians over seeds with 95% bootstrap intervals (rliable's stratified bootstrap); an unsolved run
counts at the budget's episode count (censored), so its median is a lower bound when it is in the
upper half.

    .venv/bin/python benchmarks/critic_replay/aggregate.py --env CartPole-v1
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from run import threshold_of

from relax_rl.envs import get_spec
from relax_rl.plot import bootstrap_interval
from relax_rl.provenance import provenance

HERE = Path(__file__).resolve().parent
SB3_DEFAULT_LR = 7e-4


def median_ci(values: list[float]) -> tuple[float, float, float]:
    point, low, high = bootstrap_interval(np.asarray(values, float).reshape(-1, 1), lambda x: float(np.median(x)))
    return float(point), float(low), float(high)


def ratio_ci(a: list[float], b: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """median(a) / median(b), with a percentile-bootstrap interval resampling each group's seeds."""
    rng = np.random.default_rng(seed)
    a_arr, b_arr = np.asarray(a, float), np.asarray(b, float)
    draws = [np.median(rng.choice(a_arr, len(a_arr))) / np.median(rng.choice(b_arr, len(b_arr))) for _ in range(reps)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(np.median(a_arr) / np.median(b_arr)), float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--results", type=Path, default=HERE / "results.jsonl")
    parser.add_argument("--grid-seeds", type=int, nargs="+", default=[0, 1], help="seeds that pick each best lr")
    parser.add_argument(
        "--metric", choices=["episodes", "updates"], default="episodes", help="what 'to threshold' counts"
    )
    parser.add_argument("--threshold", type=float, help="the runs made to this threshold (default: the env's)")
    args = parser.parse_args()
    env_threshold = get_spec(args.env).reward_threshold
    threshold = env_threshold if args.threshold is None else args.threshold
    runs, seen = [], set()
    for line in args.results.read_text().splitlines():
        r = json.loads(line)
        key = (r["variant"], r["lr"], r["seed"])
        if r["env"] != args.env or threshold_of(r) != threshold:
            continue
        if key not in seen:  # a run repeated at another budget counts once
            seen.add(key)
            runs.append(r)
    for r in runs:
        r["episodes"] = r[args.metric]
    cells: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for r in runs:
        cells[(r["variant"], r["lr"])].append(r)
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    lrs = sorted({r["lr"] for r in runs})

    lines = [f"# Critic replay on {args.env}: {args.metric} to {threshold:g} (median over seeds)", ""]
    lines += [
        "## Learning-rate grid (the same grid for every variant; seeds " + ", ".join(map(str, args.grid_seeds)) + ")",
        "",
    ]
    lines += ["| variant | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    best: dict[str, float] = {}
    for v in variants:
        row, scores = [], {}
        for lr in lrs:
            grid = [r for r in cells.get((v, lr), []) if r["seed"] in args.grid_seeds]
            if not grid:
                row.append("–")
                continue
            episodes = [r["episodes"] for r in grid]
            scores[lr] = (np.median(episodes), -sum(r["solved"] for r in grid))
            solved = sum(r["solved"] for r in grid)
            row.append(f"{np.median(episodes):.0f} ({solved}/{len(grid)} solved)")
        best[v] = min(scores, key=lambda lr: (scores[lr][1], scores[lr][0]))  # most solved, then fewest episodes
        lines.append(f"| {v} | " + " | ".join(row) + " |")
    lines += ["", "Best learning rate per variant: most seeds solved, then the fewest median episodes.", ""]

    lines += ["## Each variant at its best learning rate, every seed", ""]
    lines += [
        "| variant | lr | seeds | solved | median to threshold [95% CI] | per seed | median timesteps | SPS "
        "| median final mean return | ratio to a2c at its defaults | ratio to tuned a2c | ratio to a2c_replay |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    medians = {}
    summary = {}
    for v in variants:
        rs = sorted(cells[(v, best[v])], key=lambda r: r["seed"])
        episodes = [r["episodes"] for r in rs]
        finals = [r["final_mean_return"] for r in rs if r["final_mean_return"] is not None]
        medians[v] = median_ci(episodes)
        summary[v] = {
            "lr": best[v],
            "seeds": [r["seed"] for r in rs],
            "episodes": episodes,
            "solved": [r["solved"] for r in rs],
            "median_episodes": medians[v],
            "median_timesteps": float(np.median([r["timesteps"] for r in rs])),
            "median_wall_s": float(np.median([r["wall_s"] for r in rs])),
            "sps": float(np.median([r["sps"] for r in rs])),
            "median_final_mean_return": float(np.median(finals)) if finals else None,
        }
    default_runs = cells.get(("a2c", SB3_DEFAULT_LR), [])
    default = [r["episodes"] for r in default_runs]
    medians["a2c at its defaults"] = median_ci(default) if default else None
    summary["a2c at its defaults"] = {
        "lr": SB3_DEFAULT_LR,
        "episodes": default,
        "median_episodes": medians["a2c at its defaults"],
        "solved": [r["solved"] for r in default_runs],
    }
    for v in variants:
        s = summary[v]
        point, low, high = s["median_episodes"]
        bases = ("a2c at its defaults", "a2c", "a2c_replay")
        ratios = []
        for base in bases:
            if not medians.get(base):
                ratios.append("–")
                continue
            ratio = ratio_ci(s["episodes"], summary[base]["episodes"])
            s.setdefault("ratios", {})[base] = list(ratio)
            censored = not all(s["solved"]) or not all(summary[base]["solved"])
            ratios.append(f"{ratio[0]:.2f} [{ratio[1]:.2f}, {ratio[2]:.2f}]{'†' if censored else ''}")
        final = "–" if s["median_final_mean_return"] is None else f"{s['median_final_mean_return']:.3g}"
        per_seed = ", ".join(f"{e}{'' if ok else '*'}" for e, ok in zip(s["episodes"], s["solved"], strict=True))
        lines.append(
            f"| {v} | {s['lr']:g} | {len(s['seeds'])} | {sum(s['solved'])}/{len(s['seeds'])} "
            f"| {point:.0f} [{low:.0f}, {high:.0f}] | {per_seed} | {s['median_timesteps']:.0f} | {s['sps']:.0f} "
            f"| {final} | {ratios[0]} | {ratios[1]} | {ratios[2]} |"
        )
    lines += [
        "",
        "`*`: unsolved within the budget (counted at its episode count: censored). Ratios: of medians, with",
        "95% percentile-bootstrap intervals resampling each side's seeds. `†`: a side has censored runs, so the",
        "ratio is at most a bound (upper when only the denominator is censored, lower when only the numerator",
        "is), and no comparison at all when both are (the episode count at the budget measures episode length).",
        "",
    ]
    out = HERE / (args.env.replace("/", "_") + ("" if threshold == env_threshold else f"_to_{threshold:g}"))
    out.mkdir(exist_ok=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    meta = provenance("python benchmarks/critic_replay/aggregate.py " + " ".join(sys.argv[1:]))
    meta["note"] = "when and where this summary was aggregated; the runs' own are in results.jsonl's sidecar"
    summary_json = {"meta": meta, "best_lr": best, "at_best_lr": summary}
    (out / "summary.json").write_text(json.dumps(summary_json, indent=2) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4))
    for v in variants:
        xs, ys = [], []
        for lr in lrs:
            grid = [r["episodes"] for r in cells.get((v, lr), []) if r["seed"] in args.grid_seeds]
            if grid:
                xs.append(lr)
                ys.append(np.median(grid))
        ax.plot(xs, ys, marker="o", label=v)
    ax.set_xscale("log")
    ax.set_yscale("log")  # censored runs at a diverging step count thousands of short episodes
    ax.set_xlabel("learning rate (θ and V)")
    ax.set_ylabel(f"median {args.metric} to threshold (censored)")
    ax.set_title(f"{args.env}: learning-rate grid, seeds {args.grid_seeds}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "lr_grid.png", dpi=120)
    with_curves = [v for v in variants if any(r.get("curve") for r in cells[(v, best[v])])]
    if with_curves:
        plot_curves(
            {v: cells[(v, best[v])] for v in with_curves}, threshold, args.env.split("/")[-1], out / "curves.png"
        )
    print("\n".join(lines))


def plot_curves(runs: dict[str, list[dict]], threshold: float, title: str, path: Path) -> None:
    """Each run's 100-episode mean against its updates (one line per seed), at each variant's best lr."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for color, (variant, rs) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], runs.items(), strict=False):
        for i, r in enumerate(rs):
            steps, means = zip(*r["curve"], strict=True) if r.get("curve") else ((), ())
            updates = [t * r["updates"] / r["timesteps"] for t in steps]  # the study's steps per update
            ax.plot(updates, means, color=color, alpha=0.7, lw=1, label=variant if i == 0 else None)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set_xlabel("updates")
    ax.set_ylabel("100-episode mean return")
    ax.set_title(f"{title}: to {threshold:g}, each seed", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
