"""Issue 13's tuned head-to-head on CartPole-v1, the RELAX paper's protocol: every design gets the same
budget of trials (``--trials`` × ``--seeds``, the same shared search space plus its own keys), then its best
configuration trains on fresh seeds that no trial used, and the fresh runs are compared (rliable intervals).

Designs: SB3's ``a2c``; ``a2c_replay`` (A2C's estimator inside RelaxA2C, the critic on a replay: the honest
control); ``relax`` (RelaxA2C); ``all_action`` (the all-action estimator). Every step goes through the
project's own commands (``relax-rl tune``, the compare API), so rerunning this script resumes
where it stopped: finished trials and runs are not run again.

    .venv/bin/python benchmarks/tuned/run.py --trials 16 --seeds 2 --tune-timesteps 50000 --fresh-seeds 10
    .venv/bin/python benchmarks/tuned/run.py --ray-overhead   # local processes vs Ray, side by side
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from relax_rl.compare import plan, run_all, summary_markdown
from relax_rl.plot import plot_learning_curves

HERE = Path(__file__).resolve().parent
ENV = "CartPole-v1"
# design -> (algorithm, fixed hyper-parameters, search space)
DESIGNS: dict[str, tuple[str, list[str], Path | None]] = {
    "a2c": ("a2c", [], None),
    "a2c_replay": ("relax_a2c", ["pg_estimator=a2c"], HERE / "spaces" / "a2c_replay.yml"),
    "relax": ("relax_a2c", ["pg_estimator=relax"], None),
    "all_action": (
        "relax_a2c",
        ["pg_estimator=all_action", "cv_objective=regression"],
        HERE / "spaces" / "all_action.yml",
    ),
}
FRESH_FIRST_SEED = 100  # trials use seeds 0..K-1


def tune(design: str, args: argparse.Namespace) -> Path:
    """Run (or resume) the design's study; return its best.yml."""
    algo, fixed, space = DESIGNS[design]
    out = HERE / "studies" / design
    command = [sys.executable, "-m", "relax_rl.cli", "tune", "--algo", algo, "--env", ENV, "--study-name", design]
    command += ["--out", str(out), "--trials", str(args.trials), "--seeds", str(args.seeds)]
    command += ["--total-timesteps", str(args.tune_timesteps), "--objective", "auc", "--pruner", "median"]
    command += [*(["--hyperparams", *fixed] if fixed else []), *(["--search-space", str(space)] if space else [])]
    subprocess.run(command, check=True)
    return out / "best.yml"


def fresh_runs(design: str, best: Path, args: argparse.Namespace) -> list[dict]:
    """The best configuration on fresh seeds, through the compare API (resumable)."""
    algo = DESIGNS[design][0]
    seeds = range(FRESH_FIRST_SEED, FRESH_FIRST_SEED + args.fresh_seeds)
    jobs = plan(
        ENV,
        [algo],
        seeds,
        HERE / "fresh" / design,
        config_files={algo: best},
        total_timesteps=args.fresh_timesteps,
        device="cpu",
        eval_freq=0,
        checkpoint_freq=50_000,
    )
    return run_all(jobs, workers=args.workers)


def report(records: dict[str, list[dict]]) -> None:
    by_design = {d: [r["metrics"] for r in rs if r["metrics"] is not None] for d, rs in records.items()}
    (HERE / "summary.md").write_text(summary_markdown(by_design, ENV))
    groups = {d: [r["run_dir"] for r in rs if r["metrics"] is not None] for d, rs in records.items()}
    plot_learning_curves(groups, HERE / "learning_curves.png", thresholds=[475.0], title=f"{ENV}, tuned")


def ray_overhead(args: argparse.Namespace) -> None:
    """Wall time of the same compare (4 short a2c runs) in local processes and on a local Ray, alternating."""
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for repeat in range(args.repeats):
        for mode in ("local", "ray"):
            out = HERE / "ray_overhead" / f"{mode}_{repeat}"
            command = [sys.executable, "-m", "relax_rl.cli", "compare", "--env", ENV, "--algos", "a2c", "--seeds", "4"]
            command += ["--total-timesteps", "20000", "--workers", "2", "--out", str(out)]
            command += ["--ray", "local"] if mode == "ray" else []
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[mode].append(time.perf_counter() - start)
            print(f"repeat {repeat} {mode}: {times[mode][-1]:.1f} s", flush=True)
    ratio = sorted(ray / local for ray, local in zip(times["ray"], times["local"], strict=True))[len(times["ray"]) // 2]
    result = {"command": " ".join(sys.argv), "wall_s": times, "median_ratio_ray_to_local": ratio}
    (HERE / "ray_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"Ray / local wall time: {ratio:.2f} (median of {args.repeats} paired repeats)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--tune-timesteps", type=int, default=50_000)
    parser.add_argument("--fresh-seeds", type=int, default=10)
    parser.add_argument("--fresh-timesteps", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tune-only", action="store_true", help="run the studies, not the fresh seeds")
    parser.add_argument("--ray-overhead", action="store_true", help="only measure Ray's overhead")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.ray_overhead:
        return ray_overhead(args)
    best = {design: tune(design, args) for design in args.designs}
    if not args.tune_only:
        report({design: fresh_runs(design, best[design], args) for design in args.designs})


if __name__ == "__main__":
    main()
