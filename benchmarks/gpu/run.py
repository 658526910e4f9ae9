"""Issue 15's GPU measurements, in one go: CartPole training SPS with torch envs on the GPU against SB3 A2C
on 8 CPU envs, the wall-clock time to solve CartPole-v1 on the GPU, Pong training SPS, and where an update's
time goes. ``run.sh`` runs the CUDA tests first, then this.

    bash benchmarks/gpu/run.sh OUT_DIR                     # on the GPU machine: about 7 minutes on one H200
    python benchmarks/gpu/run.py --out /tmp/gpu --smoke    # every step, tiny and on the CPU: a check of the script

Each configuration runs in a fresh interpreter (``benchmarks/speed/run.py``'s worker), one after another;
every ratio is between configurations of this one invocation. Writes ``gpu_results.json`` and
``gpu_summary.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("speed_run", HERE.parent / "speed" / "run.py")
speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(speed)

SIZES = (1024, 4096, 16384, 65536)
#: the fastest CartPole configuration of benchmarks/speed on the CPU (256 torch envs, lr 5e-3)
SOLVE_CONFIG = {"n_envs": 256, "kwargs": {"learning_rate": 5e-3}}
GOALS = {"sps": 5e6, "sps_vs_sb3_cpu": 100.0, "solve_seconds": 10.0, "pong_vs_sb3": 2.0}


def part_sps(device: str, sizes: tuple[int, ...], seconds: float) -> dict[str, Any]:
    base = {"env": "CartPole-v1", "task": "sps", "seconds": seconds}
    baseline = speed.run_one({**base, "algo": "a2c", "backend": "gymnasium", "n_envs": 8, "device": "cpu"})
    rows = [
        speed.run_one({**base, "algo": "relax_a2c", "backend": "torch", "n_envs": n, "device": device}) for n in sizes
    ]
    for row in rows:
        row["vs_sb3_a2c_cpu_8"] = row["sps"] / baseline["sps"]
    return {"baseline": baseline, "rows": rows}


def part_solve(device: str, seeds: list[int], cap_s: float) -> dict[str, Any]:
    base = {"env": "CartPole-v1", "task": "solve", "cap_s": cap_s, "algo": "relax_a2c", "backend": "torch"}
    rows = [speed.run_one({**base, **SOLVE_CONFIG, "device": device, "seed": seed}) for seed in seeds]
    # A seed that does not solve counts as the cap (an upper bound on its time, never a solve).
    return {"rows": rows, "median_seconds": statistics.median(r["seconds"] for r in rows), "threshold": 475}


def part_pong(device: str, n_envs: int, seconds: float) -> dict[str, Any]:
    base = {"env": "ALE/Pong-v5", "task": "sps", "n_envs": n_envs, "seconds": seconds, "policy": "CnnPolicy"}
    baseline = speed.run_one({**base, "algo": "a2c", "backend": "sb3_dummy_atari", "device": device})
    relax = speed.run_one({**base, "algo": "relax_a2c", "backend": "ale", "device": device})
    return {"baseline": baseline, "relax_a2c": relax, "vs_sb3_a2c": relax["sps"] / baseline["sps"]}


def goals(results: dict[str, Any]) -> dict[str, Any]:
    best = max(results["sps"]["rows"], key=lambda r: r["sps"])
    solved = all(r["solved"] for r in results["solve"]["rows"])
    measured = {
        "sps": best["sps"],
        "sps_vs_sb3_cpu": best["vs_sb3_a2c_cpu_8"],
        "solve_seconds": results["solve"]["median_seconds"] if solved else None,
        "pong_vs_sb3": results["pong"]["vs_sb3_a2c"],
    }
    return {
        key: {
            "goal": GOALS[key],
            "measured": value,
            "met": value is not None and (value <= GOALS[key] if key == "solve_seconds" else value >= GOALS[key]),
        }
        for key, value in measured.items()
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_sps, ax_solve, ax_pong) = plt.subplots(1, 3, figsize=(14, 4))
    rows = results["sps"]["rows"]
    ax_sps.plot([r["n_envs"] for r in rows], [r["sps"] for r in rows], marker="o", label="RelaxA2C, torch envs")
    ax_sps.axhline(results["sps"]["baseline"]["sps"], color="grey", ls="--", label="SB3 A2C, 8 CPU envs")
    ax_sps.axhline(GOALS["sps"], color="red", ls=":", label="goal")
    ax_sps.set(xscale="log", yscale="log", xlabel="envs", ylabel="training steps / s", title="CartPole-v1 SPS")
    ax_sps.legend(fontsize=8)
    solve = results["solve"]["rows"]
    ax_solve.bar(
        [str(r["seed"]) for r in solve],
        [r["seconds"] for r in solve],
        color=["C0" if r["solved"] else "C3" for r in solve],
    )
    ax_solve.axhline(GOALS["solve_seconds"], color="red", ls=":", label="goal")
    ax_solve.set(xlabel="seed (red: not solved, the cap)", ylabel="seconds from learn()", title="CartPole-v1 to 475")
    ax_solve.legend(fontsize=8)
    pong = results["pong"]
    ax_pong.bar(
        ["SB3 A2C\nmake_atari_env", "RelaxA2C\nAtariVectorEnv"], [pong["baseline"]["sps"], pong["relax_a2c"]["sps"]]
    )
    ax_pong.set(ylabel="training steps / s", title=f"ALE/Pong-v5, {pong['baseline']['n_envs']} envs")
    fig.suptitle(f"{results['machine']['gpu'] or 'CPU (smoke run)'}, {results['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_results.json and gpu_summary.png")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per SPS configuration")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cap", type=float, default=30.0, help="solve: give up after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and times on the CPU: checks the script")
    args = parser.parse_args()
    sizes, profile_envs, pong_envs = SIZES, 16384, 16
    if args.smoke:
        args.device, args.seconds, args.seeds, args.cap = "cpu", 1.0, "0", 3.0
        sizes, profile_envs, pong_envs = (64, 256), 256, 2
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/gpu/run.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": speed._machine(),
    }
    results["machine"].pop("note", None)
    steps = {
        "sps": lambda: part_sps(args.device, sizes, args.seconds),
        "solve": lambda: part_solve(args.device, [int(s) for s in args.seeds.split(",")], args.cap),
        "pong": lambda: part_pong(args.device, pong_envs, args.seconds),
        "profile": lambda: speed.part_profile(args.device, profile_envs),
    }
    for name, step in steps.items():
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        results[name] = step()
        results[name]["wall_s"] = time.perf_counter() - start
        (args.out / "gpu_results.json").write_text(json.dumps(results, indent=2) + "\n")  # kept if a later step fails
    results["goals"] = goals(results)
    (args.out / "gpu_results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "gpu_summary.png")
    for key, goal in results["goals"].items():
        print(f"{key}: measured {goal['measured']}, goal {goal['goal']}: {'met' if goal['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
