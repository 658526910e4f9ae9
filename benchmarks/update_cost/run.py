"""The RelaxA2C update's cost before and after issue 15's changes, side by side on the same machine.

    git worktree add /tmp/before 41beb33    # the code before issue 15
    python benchmarks/update_cost/run.py --before /tmp/before --after . --n-envs 4096 --repeats 5

Each repeat times, in a fresh interpreter for each tree, alternating, one torch thread: ``--updates``
iterations (a rollout of torch CartPole envs, then ``train``) after three warm-up iterations, with
RelaxA2C's defaults. The result is the median over repeats of the paired ratio after / before, for the
rollout and for the update; ``results.json`` keeps every time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKER = r"""
import json, sys, time
import torch as th
th.set_num_threads(1)
from relax_rl.agents import RelaxA2C
from relax_rl.envs.torch_envs import CartPoleTorchEnv
n_envs, updates = int(sys.argv[1]), int(sys.argv[2])
model = RelaxA2C("MlpPolicy", CartPoleTorchEnv(n_envs, seed=1), seed=0, device="cpu")
_, callback = model._setup_learn(10**9, callback=None)
callback.init_callback(model)
callback.on_training_start(locals(), globals())
def iteration():
    start = time.perf_counter()
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    middle = time.perf_counter()
    model.train()
    return middle - start, time.perf_counter() - middle
for _ in range(3):
    iteration()
times = [iteration() for _ in range(updates)]
print(json.dumps({"rollout_s": sum(t[0] for t in times), "update_s": sum(t[1] for t in times)}))
"""


def measure(tree: Path, n_envs: int, updates: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(n_envs), str(updates)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--n-envs", type=int, default=4096)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    runs = []
    for repeat in range(args.repeats):
        pair = {
            name: measure(tree, args.n_envs, args.updates)
            for name, tree in (("before", args.before), ("after", args.after))
        }
        runs.append(pair)
        print(repeat, json.dumps(pair), flush=True)
    ratios = {
        part: statistics.median(r["after"][part] / r["before"][part] for r in runs)
        for part in ("rollout_s", "update_s")
    }
    result = {
        "command": " ".join(["python", "benchmarks/update_cost/run.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, CPU torch, shared with other benchmarks",
        "runs": runs,
        "median_ratio_after_to_before": ratios,
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
