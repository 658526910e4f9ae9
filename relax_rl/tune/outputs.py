"""What a study leaves in its directory: ``best.yml``, ``trials.md``, ``trials.csv`` and Optuna's plots."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any, TextIO

import matplotlib
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from relax_rl.run.saving import atomic_write
from relax_rl.tune.trial import StudySpec

BEST_FILE = "best.yml"
TABLE_FILE = "trials.md"
CSV_FILE = "trials.csv"
HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"


def write_outputs(study: optuna.Study, spec: StudySpec, out: Path, log: TextIO) -> None:
    """Write every output of ``study`` into ``out`` (each file whole: written aside, then renamed)."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    _write_text(out / TABLE_FILE, trials_markdown(trials, spec))
    _write_text(out / CSV_FILE, trials_csv(trials))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        _write_text(out / BEST_FILE, best_yaml(study.best_trial, spec, study.study_name))
    write_plots(study, out, log)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def best_yaml(trial: FrozenTrial, spec: StudySpec, study_name: str) -> str:
    """A ``configs/``-style file: one ``<env id>:`` section with the fully resolved configuration of ``trial``.

    Fully resolved (policy, n_envs, n_timesteps and every keyword), so that ``train.py --config best.yml``
    and ``compare --config`` train the configuration the study measured even if configs/<algo>.yml changes.
    """
    config = spec.run_config(trial.params, spec.first_seed)
    section: dict[str, Any] = {
        "policy": config.policy,
        "n_envs": config.n_envs,
        "n_timesteps": config.total_timesteps,
    }
    if config.normalize:
        section["normalize"] = config.normalize
    if config.frame_stack is not None:
        section["frame_stack"] = config.frame_stack
    section.update(config.algo_kwargs)
    header = (
        f"# Best configuration of study {study_name!r} ({spec.algo} on {spec.env}): trial {trial.number}, "
        f"{spec.objective} = {trial.value:.6g} over seeds {spec.seed_list}.\n"
        f"# Searched: {', '.join(sorted(trial.params)) or 'nothing'}; fixed: {spec.fixed or 'nothing'}.\n"
        f"# Train it: python train.py --algo {spec.algo} --env {spec.env} --config best.yml --seed 100\n"
    )
    return header + yaml.safe_dump({spec.env: section}, sort_keys=False)


def _duration(trial: FrozenTrial) -> float | None:
    if "duration_s" in trial.user_attrs:  # a trial rebuilt from Ray Tune's results
        return trial.user_attrs["duration_s"]
    return None if trial.duration is None else trial.duration.total_seconds()


def _note(trial: FrozenTrial) -> str:
    """Where a Ray trial's runs are (first: tests and scripts read it as a path), then what happened to it."""
    attrs = trial.user_attrs
    notes = []
    if "ray_trial_id" in attrs:
        notes.append(f"trials/{attrs['ray_trial_id']}")
    if "error" in attrs:
        notes.append(f"error: {attrs['error']}")
    if trial.state == TrialState.PRUNED:
        notes.append(f"pruned at step {trial.last_step}")
    if "retry_of" in attrs:
        notes.append(f"re-run of trial {attrs['retry_of']}, which was interrupted")
    return "; ".join(notes)


def trials_markdown(trials: list[FrozenTrial], spec: StudySpec) -> str:
    """A table: number, state, value, duration and parameters of every trial."""
    names = sorted({name for trial in trials for name in trial.params})
    lines = [
        f"# Study: {spec.algo} on {spec.env}, objective {spec.objective} ({spec.direction}), "
        f"seeds {spec.seed_list}, {spec.total_timesteps} timesteps",
        "",
        "| " + " | ".join(["number", "state", "value", "duration_s", *names, "note"]) + " |",
        "|" + "---|" * (5 + len(names)),
    ]
    for trial in trials:
        duration = _duration(trial)
        cells = [
            str(trial.number),
            trial.state.name,
            _value(trial),
            "" if duration is None else f"{duration:.1f}",
            *(_cell(trial.params.get(name, "")) for name in names),
            _note(trial).replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _value(trial: FrozenTrial) -> str:
    # A pruned trial's value is Optuna's last intermediate value, not the objective: leave it out.
    return f"{trial.value:.6g}" if trial.state == TrialState.COMPLETE else ""


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trials_csv(trials: list[FrozenTrial]) -> str:
    """Every trial as a CSV row: number, state, value, duration_s, the parameters, the per-seed values."""
    names = sorted({name for trial in trials for name in trial.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", "value", "duration_s", *names, "seed_values", "note"])
    for trial in trials:
        writer.writerow(
            [
                trial.number,
                trial.state.name,
                "" if trial.state != TrialState.COMPLETE else repr(trial.value),
                _duration(trial) or "",
                *(trial.params.get(name, "") for name in names),
                " ".join(map(repr, trial.user_attrs.get("seed_values", []))),
                _note(trial),
            ]
        )
    return buffer.getvalue()


def write_plots(study: optuna.Study, out: Path, log: TextIO) -> None:
    """Optimisation history and (with 2+ complete trials and 2+ parameters) parameter importances, as PNG."""
    from optuna.visualization import matplotlib as optuna_plots  # imports pyplot: only when plotting

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return
    # Optuna's plots set a global style; keep it from leaking into the caller's plots.
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        _save(optuna_plots.plot_optimization_history(study), out / HISTORY_PLOT)
        n_params = len({name for trial in complete for name in trial.params})
        if len(complete) < 2 or n_params < 2:
            print(
                f"note: no {IMPORTANCE_PLOT}: importances need 2+ complete trials and 2+ searched parameters "
                f"(have {len(complete)} and {n_params})",
                file=log,
            )
            return
        _save(optuna_plots.plot_param_importances(study), out / IMPORTANCE_PLOT)


def _save(ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = ax.figure
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
