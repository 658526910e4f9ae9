"""A study on a Ray cluster: Ray Tune runs the trials, Optuna (OptunaSearch) picks their parameters.

The experiment has a fixed name (the study's) and storage path (``<out>/ray``, absolute), so rerunning the
command restores it with ``Tuner.restore`` (ray#36062: restoring needs a fixed name); a trial lost with
its node is retried from scratch (``FailureConfig``), its directory emptied first. Each trial reserves
``cpus_per_trial`` CPUs and runs torch with as many threads. Pruning is Ray's: a median stopping rule or
ASHA on the same intermediate values as local Optuna's pruners (see :mod:`.trial`). The results are
turned back into an Optuna study, so the outputs are those of a local study.

Ray is imported only here, and only when ``--ray`` is given: the library works without the extra.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from relax_rl.config import RunConfig
from relax_rl.errors import UsageError
from relax_rl.run import torch_threads
from relax_rl.tune.space import SearchSpace
from relax_rl.tune.study import TRIALS_DIR, format_value, space_signature, warmup_steps
from relax_rl.tune.trial import StudySpec, run_trial

RAY_DIR = "ray"
SETTINGS_FILE = "tune_settings.json"
METRIC = "objective"
RAY_TRIAL_ATTR = "ray_trial_id"
MAX_FAILURES = 3  # retries of a trial whose worker or node died


def experiment_dir(out: Path, study_name: str) -> Path:
    """Where Ray Tune keeps the experiment's state: ``<out>/ray/<study name>``, absolute."""
    return (out / RAY_DIR / study_name).resolve()


def check_experiment(
    out: Path, study_name: str, spec: StudySpec, space: SearchSpace, n_trials: int, *, resume: bool
) -> bool:
    """Whether an experiment exists to restore; UsageError if ``--resume`` finds none, or it has other settings."""
    settings_path = out / RAY_DIR / SETTINGS_FILE
    if not settings_path.is_file():
        if resume:
            raise UsageError(f"--resume: there is no Ray experiment in {out / RAY_DIR} to continue; drop --resume")
        return False
    saved = json.loads(settings_path.read_text())
    settings = _settings(spec, space, n_trials)
    if saved != settings:
        changed = next(key for key in settings if saved.get(key) != settings[key])
        hint = " (Ray Tune cannot change num_samples on restore)" if changed == "trials" else ""
        raise UsageError(
            f"the Ray experiment in {out / RAY_DIR} was run with other settings ({changed}: {saved.get(changed)!r})"
            f"{hint}; rerun it with the same options, or pick another --out"
        )
    return True


def _settings(spec: StudySpec, space: SearchSpace, n_trials: int) -> dict[str, Any]:
    return {**spec.to_dict(), "space": space_signature(space), "trials": n_trials}


def evaluations_per_run(config: RunConfig, n_steps: int) -> int:
    """How many evaluations SB3's EvalCallback makes in a run of ``config`` (it counts vec-env steps)."""
    rollouts = math.ceil(config.total_timesteps / (config.n_envs * n_steps))
    return (rollouts * n_steps) // max(config.eval_freq // config.n_envs, 1)


def ray_trial(params: dict[str, Any], spec: StudySpec, trials_dir: str) -> None:
    """Ray Tune's trainable: one trial, reporting its intermediate values and, last, its objective."""
    from ray import tune

    context = tune.get_context()
    cpus = int(context.get_trial_resources().required_resources.get("CPU", 1))
    trial_dir = Path(trials_dir) / context.get_trial_id()
    # A retry (the node died) or a restored, unfinished trial starts over: its old runs would block train().
    shutil.rmtree(trial_dir, ignore_errors=True)

    def report(step: int, value: float) -> None:
        tune.report({METRIC: value, "step": step})

    with torch_threads(cpus):
        outcome = run_trial(spec, params, trial_dir, report)
    tune.report({METRIC: outcome.value, "finished": True, "seed_values": outcome.seed_values})


def run_ray_study(
    spec: StudySpec,
    space: SearchSpace,
    out: Path,
    study_name: str,
    n_trials: int,
    pruner: str,
    *,
    restore: bool,
    cpus_per_trial: int,
    evaluations: int,
) -> optuna.Study:
    """Run (or restore and finish) the experiment; return its trials as an in-memory Optuna study."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    mode = "min" if spec.direction == "minimize" else "max"
    trainable = tune.with_resources(
        tune.with_parameters(ray_trial, spec=spec, trials_dir=str((out / TRIALS_DIR).resolve())),
        {"cpu": cpus_per_trial},
    )
    path = experiment_dir(out, study_name)
    if restore and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, restart_errored=True)
    else:
        settings_path = out / RAY_DIR / SETTINGS_FILE
        settings_path.parent.mkdir(parents=True, exist_ok=True)
        settings_path.write_text(json.dumps(_settings(spec, space, n_trials), indent=2) + "\n")
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(space, metric=METRIC, mode=mode, seed=spec.first_seed),
                scheduler=_scheduler(pruner, mode, evaluations * spec.seeds + 1, warmup_steps(spec)),
                num_samples=n_trials,
                reuse_actors=True,  # a new actor per trial would import torch and SB3 again, for seconds each
            ),
            run_config=tune.RunConfig(
                name=study_name,
                storage_path=str(path.parent),
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                callbacks=[_progress_lines(n_trials)],
                verbose=0,
            ),
        )
    with warnings.catch_warnings():
        # OptunaSearch reports a restarted trial's steps again; Optuna's warning about it says nothing useful.
        warnings.filterwarnings("ignore", message="The reported value is ignored", category=UserWarning)
        results = tuner.fit()
    return study_from_results(results, spec, space, study_name)


def _scheduler(pruner: str, mode: str, max_t: int, warmup: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    if pruner == "median":
        # min_time_slice: never pause a trial "to yield time" while too few have results; a paused function
        # trainable without checkpoints would start over.
        return MedianStoppingRule(
            time_attr="training_iteration",
            metric=METRIC,
            mode=mode,
            grace_period=warmup + 1,  # as local Optuna's median rule; Ray counts reports from 1
            min_time_slice=sys.maxsize,
        )
    if pruner == "halving":
        return ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode=mode, max_t=max_t, grace_period=1)
    return FIFOScheduler()


def _progress_lines(n_trials: int) -> Any:
    """A ``ray.tune.Callback`` printing one line per finished trial on stdout (defined here: Ray is imported
    lazily). It holds no stream: Ray pickles its callbacks with the experiment."""
    from ray import tune

    class ProgressLines(tune.Callback):
        """One line per finished trial, as a local study prints them."""

        def __init__(self, n_trials: int) -> None:
            self.n_trials = n_trials
            self.done = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.done += 1
            result = trial.last_result or {}
            if result.get("finished"):
                state, shown = "COMPLETE", f" {result[METRIC]:.4g}"
            else:  # stopped by the scheduler; its last value is an intermediate one, not the objective
                state, shown = "PRUNED", f" at step {result.get('step')}"
            params = ", ".join(f"{key}={format_value(v)}" for key, v in trial.config.items())
            print(f"trial {trial.trial_id} {state}{shown} ({params}); {self.done}/{self.n_trials} finished", flush=True)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(f"trial {trial.trial_id} lost its worker or node; running it again from the start", flush=True)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(f"trial {trial.trial_id} FAIL (it failed {MAX_FAILURES + 1} times)", flush=True)

    return ProgressLines(n_trials)


def _trial_index(result: Any, trial_id: str) -> int:
    """The trial's creation index, which Ray writes into its directory's name (ray_trial_<id>_<index>_<params>)."""
    index = Path(str(result.path)).name.partition(f"{trial_id}_")[2].split("_", 1)[0]
    return int(index) if index.isdigit() else sys.maxsize


def study_from_results(results: Any, spec: StudySpec, space: SearchSpace, study_name: str) -> optuna.Study:
    """Rebuild an in-memory Optuna study from Ray Tune's ResultGrid (for the tables, best.yml and plots)."""
    study = optuna.create_study(study_name=study_name, direction=spec.direction)
    rows = []
    for result in results:
        metrics = result.metrics or {}
        trial_id = str(metrics.get("trial_id", ""))
        rows.append(((_trial_index(result, trial_id), trial_id), result, metrics))
    for _, result, metrics in sorted(rows, key=lambda row: row[0]):
        params = {name: result.config[name] for name in space if name in result.config}
        intermediate: dict[int, float] = {}
        frame = result.metrics_dataframe
        if frame is not None and "step" in frame:
            for step, value in zip(frame["step"], frame[METRIC], strict=True):
                if step == step:  # not NaN: the final row has no step
                    intermediate[int(step)] = float(value)
        attrs: dict[str, Any] = {RAY_TRIAL_ATTR: metrics.get("trial_id"), "duration_s": metrics.get("time_total_s")}
        if result.error is not None:
            state, value = TrialState.FAIL, None
            attrs["error"] = str(result.error).strip().splitlines()[-1] if str(result.error).strip() else "error"
        elif metrics.get("finished"):
            state, value = TrialState.COMPLETE, float(metrics[METRIC])
            attrs["seed_values"] = list(metrics.get("seed_values", []))
        else:  # stopped early by the scheduler
            state, value = TrialState.PRUNED, None
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params=params,
                distributions={name: space[name] for name in params},
                intermediate_values=intermediate,
                user_attrs=attrs,
            )
        )
    return study
