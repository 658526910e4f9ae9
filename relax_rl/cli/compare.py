"""``relax-rl compare --env CartPole-v1 --algos relax_a2c a2c --seeds 5``: algorithms over seeds.

Every (algo, seed) pair trains through the Run API in a fresh process into
``<out>/runs/<algo>/<env>_s<seed>``, ``--workers`` at a time (or as tasks on a Ray cluster with
``--ray``). Then ``<out>`` gets ``results.json`` (every run's metrics), ``summary.md`` (episodes to solve
with bootstrap CIs, final return, SPS, wall time, ratios to a2c) and ``learning_curves.png``. Rerunning
the same command continues an interrupted comparison: finished runs are not run again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from relax_rl.cli.common import (
    CLIParser,
    add_run_options,
    add_threads_argument,
    check_minimums,
    run_guarded,
    run_option_minimums,
    run_options_of,
    whole_number,
)
from relax_rl.compare import plan, run_all, write_reports
from relax_rl.config import ALGOS, accepted_keys, load_algo_class, parse_overrides
from relax_rl.envs import get_spec
from relax_rl.errors import UsageError


def _parser(prog: str) -> CLIParser:
    parser = CLIParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    parser.add_argument("--seeds", type=int, default=5, help="K seeds, FIRST..FIRST+K-1, for every algorithm")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="FIRST; tune on other seeds than those you report (default 0)"
    )
    parser.add_argument("--total-timesteps", type=whole_number, help="default: n_timesteps of each algorithm's config")
    parser.add_argument("--n-envs", type=whole_number, help="default: n_envs of each algorithm's config")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="runs at a time")
    parser.add_argument("--out", type=Path, help="default: runs/compare/<env>/<algos>[_<settings>]")
    parser.add_argument(
        "--config",
        nargs="+",
        default=[],
        metavar="ALGO=FILE",
        help="an algorithm's hyper-parameter file (default configs/<algo>.yml), e.g. a tuned best.yml",
    )
    parser.add_argument(
        "--hyperparams",
        nargs="+",
        default=[],
        metavar="[ALGO:]KEY=VALUE",
        help="passed to every run, or with ALGO: to that algorithm's runs only",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_run_options(parser, COMPARE_OPTIONS, defaults={"eval_freq": 0, "checkpoint_freq": 0})
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on a Ray cluster: 'auto' (the one this machine joined), 'local' (a throwaway one here) or "
        "HOST:PORT; each run gets --threads CPUs (needs pip install -e '.[ray]')",
    )
    add_threads_argument(parser)
    return parser


# The run options compare passes to every run; the others come from each algorithm's config.
COMPARE_OPTIONS = ("eval_freq", "checkpoint_freq", "stop_at_solve")


def main(argv: Sequence[str] | None = None, prog: str = "relax-rl compare") -> int:
    """Entry point; exit status 0 if every run succeeded, 1 if some failed, 2 for bad input."""
    return run_guarded(partial(_compare, prog=prog), argv)


def _compare(argv: Sequence[str] | None, prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    minimums = {"seeds": 1, "workers": 1, "total_timesteps": 1, "n_envs": 1, "threads": 1}
    check_minimums(args, {**minimums, **run_option_minimums(COMPARE_OPTIONS)})
    out = args.out or default_out(args)
    get_spec(args.env)
    jobs = plan(
        args.env,
        args.algos,
        range(args.first_seed, args.first_seed + args.seeds),
        out,
        config_files=_per_algo_files(args.config, args.algos),
        overrides=_per_algo_overrides(args.hyperparams, args.algos),
        n_envs=args.n_envs,
        total_timesteps=args.total_timesteps,
        device=args.device,
        **run_options_of(args, COMPARE_OPTIONS),
    )
    done = 0

    def progress(record: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        outcome = "ok" if record["returncode"] == 0 else f"failed (exit {record['returncode']})"
        print(f"[{done}/{len(jobs)}] {record['algo']} seed {record['seed']}: {outcome}", flush=True)

    results = run_all(jobs, workers=args.workers, threads=args.threads, ray_address=args.ray, on_done=progress)
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    command = " ".join([prog, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    write_reports(results, out, env_id=args.env, settings={**settings, "out": str(out)}, command=command)
    failed = [r for r in results if r["returncode"] != 0]
    for run in failed:
        print(f"{run['algo']} seed {run['seed']} failed (exit {run['returncode']}): {run['error']}", file=sys.stderr)
    print(f"wrote {out / 'summary.md'}, {out / 'results.json'}, {out / 'learning_curves.png'}")
    return 1 if failed else 0


def default_out(args: argparse.Namespace) -> Path:
    """``runs/compare/<env>/<algos>[_<settings>]``: one folder per set of run settings, so that comparisons
    with other settings do not meet (the README's two lines), while a rerun, or more seeds of the same
    settings, continues the same one."""
    settings = [*args.hyperparams, *args.config]
    settings += [f"{flag}={value}" for flag, value in (("steps", args.total_timesteps), ("envs", args.n_envs)) if value]
    name = "-".join(args.algos)
    if settings:
        readable = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", "_".join(settings))
        digest = hashlib.sha1("\0".join(settings).encode()).hexdigest()[:8]
        name += f"_{readable}" if len(readable) <= 60 else f"_{digest}"
    return Path("runs") / "compare" / args.env.replace("/", "-") / name


def _per_algo_files(items: Sequence[str], algos: Sequence[str]) -> dict[str, Path]:
    files = {}
    for item in items:
        algo, sep, path = item.partition("=")
        if not sep or algo not in algos:
            raise UsageError(f"--config {item!r}: expected ALGO=FILE with ALGO one of {', '.join(algos)}")
        files[algo] = Path(path)
    return files


def _per_algo_overrides(items: Sequence[str], algos: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``KEY=VALUE`` for every algorithm, ``ALGO:KEY=VALUE`` for one (a cv_* key means nothing to a2c)."""
    shared, scoped = [], {algo: [] for algo in algos}
    for item in items:
        algo, sep, _ = item.partition("=")[0].partition(":")
        if not sep:
            shared.append(item)
        elif algo in scoped:
            scoped[algo].append(item.split(":", 1)[1])
        else:
            raise UsageError(f"--hyperparams {item!r}: {algo!r} is not one of the compared --algos")
    shared_values = parse_overrides(shared)
    overrides = {algo: {**shared_values, **parse_overrides(own)} for algo, own in scoped.items()}
    accepted = {algo: accepted_keys(load_algo_class(algo)) for algo in algos}
    for key in shared_values:
        takers = [algo for algo in algos if key in accepted[algo]]
        if takers and len(takers) < len(algos):
            others = ", ".join(algo for algo in algos if algo not in takers)
            raise UsageError(
                f"--hyperparams {key}: {others} has no {key}; write {takers[0]}:{key}=VALUE to set it for "
                f"{takers[0]} only"
            )
    return overrides
