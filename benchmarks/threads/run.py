"""Training SPS at 1, 2 and torch's default number of CPU threads, side by side in one run.

Each (algorithm, threads) pair trains RelaxA2C (its defaults) or SB3's A2C on CartPole-v1 (8 envs x 5
steps) for ``--steps`` timesteps in a fresh subprocess; the pairs alternate, repeat after repeat, so that
drifts in machine load hit them alike. ``--load N`` runs N busy-looping processes beside the
measurement, as a shared machine has (other jobs, a second training run). Results: median SPS per
pair and its ratio to one thread of the same algorithm, in ``results.json`` with the command, date
and machine.

    .venv/bin/python benchmarks/threads/run.py --steps 20000 --repeats 3 --load 0
    .venv/bin/python benchmarks/threads/run.py --steps 20000 --repeats 3 --load 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CHILD = """
import json, sys, time, torch
from stable_baselines3 import A2C
from relax_rl import RelaxA2C
from relax_rl.envs import make_vec_env
algo, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if threads:
    torch.set_num_threads(threads)
cls = RelaxA2C if algo == "relax_a2c" else A2C
model = cls("MlpPolicy", make_vec_env("CartPole-v1", 8, 0, backend="gymnasium"), seed=0, device="cpu")
start = time.perf_counter()
model.learn(steps)
print(json.dumps({"sps": steps / (time.perf_counter() - start), "threads": torch.get_num_threads()}))
"""


def _busy() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", type=int, default=0, help="busy processes running beside the measurement")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    settings = [("a2c", 1), ("a2c", 2), ("a2c", 0), ("relax_a2c", 1), ("relax_a2c", 2), ("relax_a2c", 0)]
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    load = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for process in load:
        process.start()
    sps: dict[str, list[float]] = {}
    try:
        for repeat in range(args.repeats):
            for algo, threads in settings:
                command = [sys.executable, "-c", CHILD, algo, str(threads), str(args.steps)]
                result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
                key = f"{algo}, {threads or 'default'} threads"
                sps.setdefault(key, []).append(result["sps"])
                print(f"repeat {repeat}: {key} ({result['threads']} used): {result['sps']:.0f} SPS", flush=True)
    finally:
        for process in load:
            process.terminate()
    medians = {key: statistics.median(values) for key, values in sps.items()}
    record = {
        "command": " ".join(["python", "benchmarks/threads/run.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"(default threads {torch.get_num_threads()}), load average before {load_before}",
        "load_processes": args.load,
        "steps": args.steps,
        "sps": sps,
        "median_sps": medians,
        "ratio_to_one_thread": {key: medians[key] / medians[f"{key.split(',')[0]}, 1 threads"] for key in medians},
    }
    runs = json.loads(args.out.read_text()) if args.out.is_file() else []
    args.out.write_text(json.dumps([*runs, record], indent=2) + "\n")
    for key, value in medians.items():
        print(f"{key}: {value:.0f} SPS ({record['ratio_to_one_thread'][key]:.2f}x one thread)")


if __name__ == "__main__":
    main()
