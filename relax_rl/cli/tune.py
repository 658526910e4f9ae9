"""``relax-rl tune``: parse the options, check every input before any work, run the study, print.

Bad input (unknown env or key, a search-space typo, a budget below one rollout, ``--trials 0``, a storage
that cannot be written, an unreachable Ray address, Ray missing) ends with one line on stderr and exit
status 2, and leaves no study directory behind.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from optuna.distributions import CategoricalDistribution

from relax_rl.cli.common import (
    CLIParser,
    add_run_options,
    add_threads_argument,
    check_minimums,
    run_guarded,
    whole_number,
)
from relax_rl.config import ALGOS, ConfigError, RunConfig, load_algo_class, parse_overrides, resolve_config
from relax_rl.envs import get_spec
from relax_rl.errors import UsageError
from relax_rl.run import torch_threads
from relax_rl.tune.outputs import write_outputs
from relax_rl.tune.space import SearchSpace, default_space_file, largest, load_space
from relax_rl.tune.study import PRUNERS, open_storage, open_study, optimize
from relax_rl.tune.trial import (
    EVALUATION_EVERY,
    MAX_EVALUATIONS,
    MIN_EVALUATIONS,
    OBJECTIVES,
    StudySpec,
    default_eval_freq,
)
from relax_rl.validation import rollout_steps


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = CLIParser(
        prog=prog,
        description="A hyper-parameter study of one algorithm on one env (Optuna; Ray Tune with --ray). "
        "Rerunning the same command resumes it.",
    )
    parser.add_argument("--algo", default="relax_a2c", choices=list(ALGOS))
    parser.add_argument("--env", default="CartPole-v1", help="gymnasium env id")
    parser.add_argument("--total-timesteps", type=whole_number, help="budget of every run (default: the config's)")
    parser.add_argument(
        "--hyperparams", nargs="+", default=[], metavar="KEY=VALUE", help="fixed for every trial (not searched)"
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed: a trial runs seeds seed..seed+K-1")
    parser.add_argument("--seeds", type=int, default=2, metavar="K", help="seeds per trial, averaged (default 2)")
    parser.add_argument(
        "--trials", type=int, required=True, metavar="N", help="finished trials the study should have, in total"
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage: a journal file path, or a database URL (sqlite:///x.db); default: <out>/journal.log",
    )
    parser.add_argument("--study-name", help="default: <algo>_<env>")
    parser.add_argument("--out", type=Path, help="study directory (default: runs/tune/<study name>)")
    parser.add_argument("--objective", default="final_return", choices=list(OBJECTIVES))
    parser.add_argument("--pruner", default="median", choices=list(PRUNERS))
    scaled = f"one per {EVALUATION_EVERY} timesteps, {MIN_EVALUATIONS} to {MAX_EVALUATIONS} per run"
    add_run_options(parser, ["eval_freq"], default_help={"eval_freq": scaled})
    parser.add_argument("--search-space", type=Path, help="default: configs/search/<algo>.yml")
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the trials with Ray Tune: auto (the cluster `ray start` made here), local (a throwaway "
        "instance), HOST:PORT or ray://HOST:PORT",
    )
    parser.add_argument("--resume", action="store_true", help="continue an existing study (an error if there is none)")
    add_threads_argument(parser)  # with --ray: the CPUs each trial reserves, and its torch threads
    return parser


def _n_steps(config: RunConfig) -> int:
    return rollout_steps(load_algo_class(config.algo), config.algo_kwargs)


def _check_budget(config: RunConfig, space: SearchSpace) -> None:
    n_envs = largest(space, "n_envs") or config.n_envs
    n_steps = largest(space, "n_steps") or _n_steps(config)
    if config.total_timesteps < n_envs * n_steps:
        raise UsageError(
            f"--total-timesteps {config.total_timesteps} is below one rollout (n_envs {n_envs} x n_steps {n_steps} "
            f"= {n_envs * n_steps}); raise it"
        )
    if config.eval_freq > config.total_timesteps:
        raise UsageError(f"--eval-freq {config.eval_freq} leaves no evaluation in {config.total_timesteps} timesteps")


def _check_space_values(spec: StudySpec, space: SearchSpace, source: Path) -> None:
    """Resolve a run with each end of every range and each choice, so that a value the algorithm refuses is an
    error now rather than in the middle of the study."""
    for key, dist in space.items():
        values = dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        for value in values:
            try:
                spec.run_config({key: value}, spec.first_seed)
            except ConfigError as err:
                raise UsageError(f"search space {source}: {key}={value!r}: {err}") from None


def _study(argv: Sequence[str] | None, prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    check_minimums(args, {"trials": 1, "seeds": 1, "total_timesteps": 1, "eval_freq": 1, "threads": 0})
    if args.ray is not None:
        from relax_rl.cluster import import_ray

        import_ray()
        if args.storage is not None:
            raise UsageError("--storage is for local Optuna; with --ray the study lives in <out>/ray")
    env_spec = get_spec(args.env)
    if args.objective == "episodes_to_solve" and env_spec.reward_threshold is None:
        raise UsageError(f"--objective episodes_to_solve needs a reward threshold, and {args.env} has none")
    fixed = parse_overrides(args.hyperparams)
    base = resolve_config(args.algo, args.env, args.seed, overrides=fixed, total_timesteps=args.total_timesteps)
    eval_freq = args.eval_freq or default_eval_freq(base.total_timesteps)
    space_file = args.search_space or default_space_file(args.algo)
    space = load_space(space_file, args.algo, args.env)
    pinned = sorted(set(space) & set(fixed))
    space = {key: dist for key, dist in space.items() if key not in fixed}
    if not space:
        raise UsageError(f"--hyperparams fixes every searched key ({', '.join(pinned)}); nothing is left to search")
    spec = StudySpec(args.algo, args.env, base.total_timesteps, eval_freq, fixed, args.seed, args.seeds, args.objective)
    base = spec.run_config({}, args.seed)
    _check_budget(base, space)
    _check_space_values(spec, space, space_file)
    name = args.study_name or f"{args.algo}_{args.env.replace('/', '-')}"
    out: Path = args.out or Path("runs") / "tune" / name
    if pinned:
        print(f"fixed by --hyperparams, not searched: {', '.join(pinned)}")
    if args.ray is not None:
        return _ray_study(args, spec, space, name, out, base)
    return _local_study(args, spec, space, name, out)


def _local_study(args: argparse.Namespace, spec: StudySpec, space: SearchSpace, name: str, out: Path) -> int:
    created = not out.exists()
    try:
        study = open_study(spec, space, open_storage(args.storage, out), name, args.pruner, resume=args.resume)
    except BaseException:
        if created:  # bad input must not leave a study directory behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    print(f"study {name!r}: {len(study.trials)} trials so far; running until {args.trials} have finished ({out})")
    try:
        with torch_threads(args.threads):
            status = optimize(study, spec, space, out, args.trials, sys.stdout)
    finally:
        write_outputs(study, spec, out, sys.stdout)
    return status


def _ray_study(
    args: argparse.Namespace, spec: StudySpec, space: SearchSpace, name: str, out: Path, base: RunConfig
) -> int:
    from relax_rl.cluster import connect
    from relax_rl.tune.ray_study import check_experiment, evaluations_per_run, run_ray_study

    restore = check_experiment(out, name, spec, space, args.trials, resume=args.resume)
    with connect(args.ray):
        study = run_ray_study(
            spec,
            space,
            out,
            name,
            args.trials,
            args.pruner,
            restore=restore,
            cpus_per_trial=max(args.threads, 1),
            evaluations=evaluations_per_run(base, _n_steps(base)),
        )
    write_outputs(study, spec, out, sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "relax-rl tune") -> int:
    """Entry point of ``relax-rl tune``; returns the exit status."""
    import matplotlib
    import optuna

    matplotlib.use("Agg")  # the plots are files; no display needed
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our line per trial says what Optuna's INFO lines would
    return run_guarded(partial(_study, prog=prog), argv)
