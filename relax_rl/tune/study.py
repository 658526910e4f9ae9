"""A study with local Optuna: the storage, the study (created or resumed), and the loop that runs its trials.

``--trials N`` is the number of finished (COMPLETE or PRUNED) trials the study should end with, whoever
ran them: every process on the storage stops when the finished trials, plus those RUNNING elsewhere,
reach N. A RUNNING trial whose process is gone (see :mod:`.liveness`) is marked FAIL, its half-written
directory removed, and its configuration enqueued, so it runs again under a new number; FAIL trials do
not count. A trial interrupted by SIGINT/SIGTERM is handled the same way before the process exits.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from relax_rl.errors import UsageError, first_line
from relax_rl.run import EXIT_DIVERGED, TrainingStopped
from relax_rl.tune.liveness import Heartbeat, is_stale
from relax_rl.tune.space import SearchSpace
from relax_rl.tune.trial import StudySpec, run_trial

JOURNAL_FILE = "journal.log"
TRIALS_DIR = "trials"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SPEC_ATTR = "spec"
RETRY_ATTR = "retry_of"
EXIT_FAILED = 1
PRUNERS = ("median", "halving", "none")


def open_storage(storage: str | None, out: Path) -> BaseStorage:
    """``None``: a journal file in ``out``; a path: a journal file there; a URL (``sqlite:///x.db``): a database."""
    if storage is None or "://" not in storage:
        path = out / JOURNAL_FILE if storage is None else Path(storage)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            fix = "pick another --out" if storage is None else "give --storage a writable path (or drop it)"
            raise UsageError(f"cannot write the study's journal {path}: {err.strerror}; {fix}") from None
    try:
        return RDBStorage(storage)
    except Exception as err:  # sqlalchemy's errors for bad URLs, missing drivers, unwritable files
        raise UsageError(f"--storage {storage}: cannot open it: {first_line(err)}") from None


def make_pruner(name: str, spec: StudySpec) -> optuna.pruners.BasePruner:
    """``median``: MedianPruner; ``halving``: SuccessiveHalvingPruner; ``none``: never prune.

    The median rule waits for half of the first seed's evaluations (:func:`warmup_steps`): an early
    evaluation of a few episodes says little, and pruning on it makes most trials one-evaluation lotteries.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=warmup_steps(spec))
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def warmup_steps(spec: StudySpec) -> int:
    """Intermediate steps before the median rule may prune: half the evaluations of one run."""
    return max(spec.total_timesteps // spec.eval_freq, 1) // 2


def space_signature(space: Mapping[str, BaseDistribution]) -> dict[str, str]:
    """The search space as JSON strings, to tell a resumed study's space from a changed one."""
    return {name: distribution_to_json(dist) for name, dist in sorted(space.items())}


def open_study(
    spec: StudySpec, space: SearchSpace, storage: BaseStorage, name: str, pruner: str, *, resume: bool
) -> optuna.Study:
    """Create the study ``name``, or load it when it exists; refuse one made with other settings."""
    settings = {**spec.to_dict(), "space": space_signature(space)}
    exists = name in optuna.get_all_study_names(storage)
    if resume and not exists:
        raise UsageError(f"--resume: there is no study {name!r} in this storage to continue; drop --resume")
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=spec.direction,
        pruner=make_pruner(pruner, spec),
        load_if_exists=True,
    )
    saved = study.user_attrs.get(SPEC_ATTR)
    if saved is None:
        study.set_user_attr(SPEC_ATTR, settings)
    elif saved != settings:
        changed = next(key for key in settings if saved.get(key) != settings[key])
        raise UsageError(
            f"study {name!r} was run with other settings ({changed}: {saved.get(changed)!r}); "
            f"rerun it with the same options and search space, or pick another --study-name"
        )
    # Seeded by the trials so far: a fresh study is reproducible, and a process that joins or resumes a
    # study later does not replay the first one's random start.
    study.sampler = optuna.samplers.TPESampler(seed=spec.first_seed + len(study.trials))
    return study


def count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    """The number of trials of ``study`` in ``states``."""
    return len(study.get_trials(deepcopy=False, states=states))


def reclaim_stale(study: optuna.Study, out: Path, log: TextIO) -> None:
    """Fail the RUNNING trials whose process is gone, and enqueue their configurations to run again."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(trial):
            retry(study, trial, out)
            print(f"trial {trial.number} was left RUNNING by a process that is gone; running it again", file=log)


def retry(study: optuna.Study, trial: FrozenTrial | optuna.Trial, out: Path) -> None:
    """Mark ``trial`` FAIL, remove its directory, and enqueue its parameters (unless another process did)."""
    try:
        study.tell(trial.number, state=TrialState.FAIL)
    except (ValueError, UpdateFinishedTrialError):
        return  # finished or reclaimed by another process meanwhile
    shutil.rmtree(out / TRIALS_DIR / str(trial.number), ignore_errors=True)
    study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})


def optimize(study: optuna.Study, spec: StudySpec, space: SearchSpace, out: Path, n_trials: int, log: TextIO) -> int:
    """Run trials until the study has ``n_trials`` finished ones; return the exit status.

    0 when done; 128 + signal number after SIGINT/SIGTERM (the trial is enqueued again); 1 after more
    failed trials than ``n_trials`` in this process (e.g. every configuration diverges).
    """
    failures = 0
    while True:
        reclaim_stale(study, out, log)
        finished = count(study, FINISHED)
        if finished >= n_trials:
            return 0
        if finished + count(study, (TrialState.RUNNING,)) >= n_trials:
            print(f"the remaining {n_trials - finished} trial(s) are running in other processes", file=log)
            return 0
        trial = study.ask(fixed_distributions=space)

        def report(step: int, value: float, trial: optuna.Trial = trial) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

        try:
            with Heartbeat(trial):
                outcome = run_trial(spec, trial.params, out / TRIALS_DIR / str(trial.number), report)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except TrainingStopped as stop:
            if stop.exit_code != EXIT_DIVERGED:  # a signal: leave the configuration for the rerun
                retry(study, trial, out)
                print(f"{stop}; trial {trial.number} will run again: rerun the same command to continue", file=log)
                return stop.exit_code
            trial.set_user_attr("error", str(stop).removeprefix("error: "))
            study.tell(trial, state=TrialState.FAIL)
            failures += 1
        except KeyboardInterrupt:  # outside training (setup, evaluation), where the run's handler is not on
            retry(study, trial, out)
            print(f"interrupted; trial {trial.number} will run again: rerun the same command to continue", file=log)
            return 128 + signal.SIGINT
        except BaseException as err:
            trial.set_user_attr("error", first_line(err))
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            trial.set_user_attr("seed_values", outcome.seed_values)
            study.tell(trial, outcome.value)
        print(progress_line(study, study.trials[trial.number], n_trials), file=log, flush=True)
        if failures > n_trials:
            print(f"error: {failures} trials failed in this process; see trials.md for their errors", file=log)
            return EXIT_FAILED


def progress_line(study: optuna.Study, trial: FrozenTrial, n_trials: int) -> str:
    """One line about a trial that just finished, and the study so far."""
    if trial.state == TrialState.PRUNED:
        outcome = f" at step {trial.last_step}"
    else:
        outcome = "" if trial.value is None else f" {trial.value:.4g}"
    params = ", ".join(f"{key}={format_value(value)}" for key, value in trial.params.items())
    line = f"trial {trial.number} {trial.state.name}{outcome} ({params}); {count(study, FINISHED)}/{n_trials} finished"
    if count(study, (TrialState.COMPLETE,)):
        line += f"; best: trial {study.best_trial.number} ({study.best_value:.4g})"
    return line


def format_value(value: object) -> str:
    """Parameters as people read them: 4 significant digits for floats."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
