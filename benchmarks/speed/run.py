"""Speed benchmarks of the fast env backends (issue 5): training SPS, time to solve, peak memory, Pong.

Every configuration runs in its own subprocess (so that its peak RSS is its own), one after another,
with one torch thread (the CLI's default), on the CPU; the ratios in the results are between
configurations measured in the same invocation on the same machine.

    python benchmarks/speed/run.py sps          # CartPole-v1 training SPS, torch envs vs SB3 A2C
    python benchmarks/speed/run.py solve        # wall-clock time to solve CartPole-v1 (mean of 100 >= 475)
    python benchmarks/speed/run.py pong         # ALE/Pong-v5 training (and env-only) SPS
    python benchmarks/speed/run.py pong-curve --seconds 600   # a short Pong learning curve (PNG + JSON)
    python benchmarks/speed/run.py profile --n-envs 1024      # where an iteration's time goes (torch envs)
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
CARTPOLE_N_ENVS = (64, 256, 1024, 4096)


# ------------------------------------------------------------------------------------------ workers


def _model(algo: str, env: Any, policy: str = "MlpPolicy", seed: int = 0, device: str = "cpu", **kwargs: Any) -> Any:
    from stable_baselines3 import A2C

    from relax_rl.agents import RelaxA2C

    cls = {"a2c": A2C, "relax_a2c": RelaxA2C}[algo]
    return cls(policy, env, seed=seed, device=device, **kwargs)


def _env(env_id: str, backend: str, n_envs: int, seed: int = 0, device: str = "cpu") -> Any:
    if backend == "sb3_dummy_atari":  # SB3's own recipe, as its docs give it
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        from relax_rl.envs.factory import _register_ale

        _register_ale()
        return VecFrameStack(make_atari_env(env_id, n_envs=n_envs, seed=seed, env_kwargs={"frameskip": 1}), 4)
    from relax_rl.envs import make_vec_env

    return make_vec_env(env_id, n_envs, seed=seed, backend=backend, device=device)


def _timed_learn(model: Any, seconds: float, warmup_rollouts: int = 2) -> dict[str, float]:
    """Train for about ``seconds`` after ``warmup_rollouts`` rollouts; steps per second over that time."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.rollouts, self.start, self.start_steps, self.stop = 0, None, 0, None

        def _on_rollout_start(self) -> None:
            self.rollouts += 1
            if self.rollouts == warmup_rollouts + 1:
                self.start, self.start_steps = time.perf_counter(), self.num_timesteps

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if self.start is not None and time.perf_counter() - self.start >= seconds:
                self.stop = time.perf_counter()
                self.model._stop_now = True

    clock = Clock()
    model._stop_now = False
    while not model._stop_now:  # in chunks: SB3 stops only between rollouts through the budget
        model.learn(model.n_steps * model.n_envs * 10, callback=clock, reset_num_timesteps=False)
    steps = model.num_timesteps - clock.start_steps
    return {"timesteps": steps, "seconds": clock.stop - clock.start, "sps": steps / (clock.stop - clock.start)}


def _solve(model: Any, cap_s: float) -> dict[str, Any]:
    """Train until the mean return of the last 100 episodes reaches 475, or ``cap_s`` seconds."""
    from stable_baselines3.common.callbacks import CallbackList

    from relax_rl.run.callbacks import SolveTracker

    tracker = SolveTracker(475.0)
    start = time.perf_counter()

    from stable_baselines3.common.callbacks import BaseCallback

    class StopWhenSolved(BaseCallback):
        def _on_step(self) -> bool:
            return tracker.solved[475.0] is None and time.perf_counter() - start < cap_s

    model.learn(10**9, callback=CallbackList([tracker, StopWhenSolved()]))
    seconds = time.perf_counter() - start
    solved = tracker.solved[475.0]
    return {
        "solved": solved is not None,
        "seconds": seconds,
        "timesteps": model.num_timesteps if solved is None else solved[1],
        "episodes": len(tracker.returns),
        "last_100_mean": sum(tracker.returns[-100:]) / max(len(tracker.returns[-100:]), 1),
    }


def _env_only_sps(env: Any, seconds: float) -> dict[str, float]:
    """Random actions, no agent: how fast the env alone steps."""
    import numpy as np

    env.reset()
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(rng.integers(0, env.action_space.n, env.num_envs))
        steps += env.num_envs
    return {"timesteps": steps, "seconds": time.perf_counter() - start, "sps": steps / (time.perf_counter() - start)}


def worker(config: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(config.get("threads", 1))
    seed, device = config.get("seed", 0), config.get("device", "cpu")
    env = _env(config["env"], config["backend"], config["n_envs"], seed, device)
    if config["task"] == "env_only":
        result = _env_only_sps(env, config["seconds"])
    else:
        policy = config.get("policy", "MlpPolicy")
        model = _model(config["algo"], env, policy, seed, device, **config.get("kwargs", {}))
        sps = config["task"] == "sps"
        result = _timed_learn(model, config["seconds"]) if sps else _solve(model, config["cap_s"])
    env.close()
    return {**config, **result, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_one(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` measured by :func:`worker` in a fresh interpreter; its result, also printed as JSON."""
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


# ------------------------------------------------------------------------------------------- parts


def part_sps(seconds: float) -> dict[str, Any]:
    base = {"env": "CartPole-v1", "task": "sps", "seconds": seconds}
    rows = [run_one({**base, "algo": "a2c", "backend": "gymnasium", "n_envs": 8})]
    rows.append(run_one({**base, "algo": "relax_a2c", "backend": "gymnasium", "n_envs": 8}))
    rows += [run_one({**base, "algo": "relax_a2c", "backend": "torch", "n_envs": n}) for n in CARTPOLE_N_ENVS]
    # The update dominates at large batches; a second thread helps it (the baseline has nothing to parallelise).
    rows += [
        run_one({**base, "algo": "relax_a2c", "backend": "torch", "n_envs": n, "threads": 2}) for n in (1024, 4096)
    ]
    baseline = rows[0]["sps"]
    for row in rows:
        row["speedup_vs_sb3_a2c_8"] = row["sps"] / baseline
    return {"rows": rows, "goal": ">= 20x SB3 A2C (DummyVecEnv, 8 envs)"}


def part_solve(cap_s: float, configs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Each configuration on each seed; a configuration's time is its median over the seeds (a seed that
    does not solve counts as the cap)."""
    base = {"env": "CartPole-v1", "task": "solve", "cap_s": cap_s}
    baseline_config = {**base, "algo": "a2c", "backend": "gymnasium", "n_envs": 8, "label": "SB3 A2C default"}
    configs = [baseline_config, *({**base, "algo": "relax_a2c", "backend": "torch", **c} for c in configs)]
    rows = [run_one({**config, "seed": seed}) for config in configs for seed in seeds]
    medians = [
        statistics.median(r["seconds"] for r in rows[i : i + len(seeds)]) for i in range(0, len(rows), len(seeds))
    ]
    summary = [
        {
            **{k: v for k, v in config.items() if k not in base},
            "median_seconds": median,
            "speedup_vs_sb3_a2c": medians[0] / median,
            "solved_seeds": sum(r["solved"] for r in rows[i * len(seeds) : (i + 1) * len(seeds)]),
        }
        for i, (config, median) in enumerate(zip(configs, medians, strict=True))
    ]
    return {
        "rows": rows,
        "summary": summary,
        "seeds": seeds,
        "goal": ">= 5x faster than SB3 A2C's default",
        "threshold": 475,
    }


def part_profile(device: str, n_envs: int, updates: int = 3) -> dict[str, Any]:
    """Where one RelaxA2C iteration's time goes at ``n_envs`` torch envs: rollout vs update (synchronised
    wall time), and the operators that take the most device (or CPU) time in a profile."""
    import torch as th
    from torch.profiler import ProfilerActivity, profile

    from relax_rl.agents import RelaxA2C
    from relax_rl.envs import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs, seed=0, backend="torch", device=device)
    model = RelaxA2C("MlpPolicy", env, seed=0, device=device)
    _, callback = model._setup_learn(10**9, callback=None)
    callback.init_callback(model)
    callback.on_training_start(locals(), globals())
    cuda = th.device(device).type == "cuda"

    def wall(step) -> float:
        if cuda:
            th.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            th.cuda.synchronize()
        return time.perf_counter() - start

    def iteration() -> tuple[float, float]:
        collect = wall(lambda: model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps))
        return collect, wall(model.train)

    for _ in range(3):  # warm-up: allocator, kernels, the replay filling
        iteration()
    split = [iteration() for _ in range(updates)]
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        for _ in range(2):
            iteration()
    sort_key = "self_device_time_total" if cuda else "self_cpu_time_total"
    top = [
        {
            "op": event.key,
            "calls": event.count / 2,
            "self_device_ms": getattr(event, "self_device_time_total", 0) / 1e3 / 2,
            "self_cpu_ms": event.self_cpu_time_total / 1e3 / 2,
        }
        for event in sorted(prof.key_averages(), key=lambda e: getattr(e, sort_key, 0), reverse=True)[:20]
    ]
    kernels = sum(
        e.count for e in prof.key_averages() if getattr(e, "device_type", None) == th.autograd.DeviceType.CUDA
    )
    collect_s = statistics.median(c for c, _ in split)
    train_s = statistics.median(t for _, t in split)
    return {
        "n_envs": n_envs,
        "rollout_seconds": collect_s,
        "update_seconds": train_s,
        "update_share": train_s / (collect_s + train_s),
        "device_kernels_per_iteration": kernels / 2,
        "top_ops_per_iteration": top,
    }


def part_pong(seconds: float, n_envs: int = 16) -> dict[str, Any]:
    base = {"env": "ALE/Pong-v5", "n_envs": n_envs, "seconds": seconds, "policy": "CnnPolicy"}
    rows = [
        run_one({**base, "task": "sps", "algo": "a2c", "backend": "sb3_dummy_atari"}),
        run_one({**base, "task": "sps", "algo": "a2c", "backend": "ale"}),
        run_one({**base, "task": "sps", "algo": "relax_a2c", "backend": "sb3_dummy_atari"}),
        run_one({**base, "task": "sps", "algo": "relax_a2c", "backend": "ale"}),
        # V and ĉ on the rollout, as A2C trains V: the replay's V steps run the CNN on 256 replayed frames each
        run_one({**base, "task": "sps", "algo": "relax_a2c", "backend": "ale", "kwargs": {"critic_replay": 0}}),
        run_one({**base, "task": "env_only", "backend": "sb3_dummy_atari"}),
        run_one({**base, "task": "env_only", "backend": "ale"}),
    ]
    baseline = rows[0]["sps"]
    for row in rows[:5]:
        row["speedup_vs_sb3_a2c_make_atari_env"] = row["sps"] / baseline
    rows[6]["speedup_vs_sb3_make_atari_env"] = rows[6]["sps"] / rows[5]["sps"]
    return {"rows": rows, "goal": ">= 2x SB3 A2C with make_atari_env, 16 envs, CPU"}


def part_pong_curve(seconds: float, n_envs: int = 16) -> dict[str, Any]:
    """RelaxA2C with configs/relax_a2c.yml's Pong settings (the defaults, without the critic replay) on the ale
    backend for ``seconds``."""
    import torch

    from relax_rl.agents import RelaxA2C
    from relax_rl.envs import make_vec_env

    torch.set_num_threads(1)
    env = make_vec_env("ALE/Pong-v5", n_envs, seed=0)
    model = RelaxA2C("CnnPolicy", env, seed=0, device="cpu", critic_replay=0)
    points: list[dict[str, float]] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.learn(n_envs * model.n_steps * 100, reset_num_timesteps=False)
        returns = [e["r"] for e in model.ep_info_buffer]
        points.append(
            {
                "timesteps": model.num_timesteps,
                "frames": model.num_timesteps * 4,
                "seconds": time.perf_counter() - start,
                "episodes_in_window": len(returns),
                "mean_return": sum(returns) / len(returns) if returns else None,
            }
        )
        print(json.dumps(points[-1]), flush=True)
    env.close()
    _plot_curve(points)
    return {"points": points, "n_envs": n_envs, "algo": "relax_a2c", "backend": "ale"}


def _plot_curve(points: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [p for p in points if p["mean_return"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["frames"] / 1e6 for p in shown], [p["mean_return"] for p in shown], marker=".")
    ax.set(
        xlabel="frames (millions)", ylabel="mean game score (last <=100 games)", title="RelaxA2C on ALE/Pong-v5 (CPU)"
    )
    ax.set_ylim(-21.5, 21.5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / "pong_curve.png", dpi=120)


# -------------------------------------------------------------------------------------------- main


def _machine() -> dict[str, Any]:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),  # 1, 5 and 15 minutes: whether other jobs shared the cores
        "note": "absolute numbers vary on shared machines: ratios within one invocation are what count",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=["sps", "solve", "pong", "pong-curve", "profile"])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    parser.add_argument("--cap", type=float, default=600.0, help="solve: give up after this many seconds")
    parser.add_argument("--solve-configs", default='[{"n_envs": 256}, {"n_envs": 1024}]', help="JSON list")
    parser.add_argument("--seeds", default="0", help="solve: comma-separated seeds")
    parser.add_argument("--n-envs", type=int, default=1024, help="profile: torch envs")
    parser.add_argument("--key", help="store the result under this key of results.json (default: the part)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.part == "sps":
        result = part_sps(args.seconds)
    elif args.part == "solve":
        result = part_solve(args.cap, json.loads(args.solve_configs), [int(s) for s in args.seeds.split(",")])
    elif args.part == "pong":
        result = part_pong(args.seconds)
    elif args.part == "profile":
        import torch

        torch.set_num_threads(1)  # as every other part's workers
        result = part_profile("cpu", args.n_envs)
    else:
        result = part_pong_curve(args.seconds)
    result.update(
        command=shlex.join(["python", "benchmarks/speed/run.py", *sys.argv[1:]]),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        machine=_machine(),
    )
    target = HERE / "pong_curve.json" if args.part == "pong-curve" else RESULTS
    results = json.loads(target.read_text()) if target.exists() and target == RESULTS else {}
    if target == RESULTS:
        results[args.key or args.part] = result
    else:
        results = result
    target.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
