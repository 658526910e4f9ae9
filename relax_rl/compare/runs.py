"""The runs of a comparison: one per (algorithm, seed), each through the Run API in a fresh process, on
this machine or on a Ray cluster. A rerun of the same comparison skips the runs that finished and
resumes (or restarts) the ones that did not."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import shutil
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from relax_rl.config import ALGOS, ConfigError, RunConfig, resolve_config
from relax_rl.envs import UnknownEnvError
from relax_rl.errors import UsageError, first_line
from relax_rl.run import (
    CONFIG_FILE,
    METRICS_FILE,
    RunResult,
    TrainingStopped,
    default_run_dir,
    finished_result,
    read_run_config,
    resume,
    torch_threads,
    train,
)
from relax_rl.run.checkpoint import list_checkpoints
from relax_rl.run.output import fds_redirected


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run of the comparison."""

    config: RunConfig
    run_dir: Path
    log: Path

    @property
    def algo(self) -> str:
        return self.config.algo

    @property
    def seed(self) -> int:
        return self.config.seed


def plan(
    env_id: str,
    algos: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    *,
    config_files: Mapping[str, Path] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    **flags: Any,
) -> list[Job]:
    """Resolve every run's config (so that a typo fails before any run starts) and list the jobs.

    ``config_files`` and ``overrides`` are per algorithm; ``flags`` go to :func:`resolve_config`. A run
    directory left by an earlier comparison must hold the same config, else this is refused.
    """
    jobs = []
    for algo in dict.fromkeys(algos):
        for seed in seeds:
            config = resolve_config(
                algo,
                env_id,
                seed,
                config_file=(config_files or {}).get(algo),
                overrides=(overrides or {}).get(algo),
                **flags,
            )
            run_dir = default_run_dir(out / "runs", algo, env_id, seed)
            jobs.append(Job(config, run_dir, out / "logs" / f"{algo}_s{seed}.log"))
    for job in jobs:
        if (job.run_dir / CONFIG_FILE).is_file() and not _same_config(read_run_config(job.run_dir), job.config):
            raise UsageError(
                f"run directories already exist with other settings (e.g. {job.run_dir}); rerun with the options "
                "that made them to continue that comparison, or use another --out"
            )
    return jobs


def _same_config(saved: RunConfig, planned: RunConfig) -> bool:
    # Compared as config.yml holds them: YAML turns tuples into lists.
    return saved.to_dict() == yaml.safe_load(yaml.safe_dump(planned.to_dict()))


def run_job(job: Job, threads: int = 1) -> dict[str, Any]:
    """Train (or finish) one run, its output into ``job.log``; return its record for results.json.

    A run that finished is read back; one with a checkpoint is resumed; one killed before its first
    checkpoint starts over. Failures become the record's ``returncode`` and one-line ``error``.
    """
    record: dict[str, Any] = {"algo": job.algo, "seed": job.seed, "run_dir": str(job.run_dir), "log": str(job.log)}
    returncode, error, result = 0, None, None
    if (job.run_dir / METRICS_FILE).is_file():
        result = finished_result(job.run_dir)
    else:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        with job.log.open("a") as log, fds_redirected(log.fileno(), [1, 2]), torch_threads(threads):
            try:
                result = _train_or_continue(job)
            except TrainingStopped as stop:
                returncode, error = stop.exit_code, str(stop)
            except (UsageError, ConfigError, UnknownEnvError) as err:
                returncode, error = 2, f"error: {err}"
            except Exception as err:  # a crash of one run must not end the comparison; the log has the traceback
                traceback.print_exc()
                returncode, error = 1, f"{type(err).__name__}: {first_line(err)}"
    return {**record, "returncode": returncode, "metrics": None if result is None else result.metrics, "error": error}


def _train_or_continue(job: Job) -> RunResult:
    if job.run_dir.exists() and list_checkpoints(job.run_dir):
        return resume(job.run_dir)
    # Killed before its first checkpoint: nothing in it can be continued.
    shutil.rmtree(job.run_dir, ignore_errors=True)
    return train(job.config, job.run_dir)


def run_all(
    jobs: Sequence[Job],
    *,
    workers: int,
    threads: int = 1,
    ray_address: str | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every job, ``workers`` at a time in fresh processes, or as Ray tasks of ``threads`` CPUs each
    on the cluster at ``ray_address``; return the records in (algorithm, seed) order."""
    if ray_address is not None:
        from relax_rl.cluster import connect, map_runs

        with connect(ray_address):
            results = map_runs(run_job, [(job, threads) for job in jobs], cpus_per_run=threads)
        for record in results:
            if on_done is not None:
                on_done(record)
    else:
        results = []
        # A fresh process per run, as a separate `train.py` would have: its own global RNGs and threads.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
            futures = [pool.submit(run_job, job, threads) for job in jobs]
            for future in concurrent.futures.as_completed(futures):
                results.append(future.result())
                if on_done is not None:
                    on_done(results[-1])
    return sorted(results, key=lambda r: (list(ALGOS).index(r["algo"]), r["seed"]))
