"""What a study is (:class:`StudySpec`), and one trial: K seeds of one configuration through the Run API.

The objective of a trial is the mean over its seeds of one of:

- ``final_return``: the mean evaluation return of the last evaluation (maximised);
- ``auc``: the area under the evaluation curve, as the mean of all evaluation returns (maximised);
- ``episodes_to_solve``: training episodes until the 100-episode mean reached the env's reward threshold,
  censored at the episodes the budget held when it never did (minimised).

Intermediate values, for pruning: the j-th evaluation of seed k is reported at step ``k * E + j`` (E
evaluations per run, the same for every seed of a configuration) with the mean over seeds 0..k of their
j-th evaluation returns. Seeds run in order, so seeds 0..k-1 are complete by then, and every trial reports
the same statistic at the same step: a pruner compares like with like, on one seed at first and on more as
the trial goes on. The value is negated for a minimised objective, so that the pruner's "worse" is the
objective's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from relax_rl.config import RunConfig, resolve_config
from relax_rl.run import RunResult, train

OBJECTIVES: dict[str, str] = {"final_return": "maximize", "auc": "maximize", "episodes_to_solve": "minimize"}

#: ``report(step, value)``: an intermediate value of the trial (see the module's docstring).
Intermediate = Callable[[int, float], None]


# The default --eval-freq: an evaluation per EVALUATION_EVERY timesteps, between MIN_ and MAX_EVALUATIONS of
# them per run. A fixed 20 (5 episodes of up to 500 steps each) took 19% of a 100k-timestep CartPole run and
# most of smaller ones; 4 took 5%.
EVALUATION_EVERY, MIN_EVALUATIONS, MAX_EVALUATIONS = 25_000, 4, 20


def default_eval_freq(total_timesteps: int) -> int:
    """Timesteps between a trial's evaluations, scaled to its budget (the pruner reads each evaluation)."""
    evaluations = min(max(total_timesteps // EVALUATION_EVERY, MIN_EVALUATIONS), MAX_EVALUATIONS)
    return max(total_timesteps // evaluations, 1)


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """Everything that makes trials of one study comparable; a resumed study must have the same."""

    algo: str
    env: str
    total_timesteps: int
    eval_freq: int
    fixed: dict[str, Any]  # --hyperparams: the same for every trial
    first_seed: int
    seeds: int
    objective: str

    @property
    def direction(self) -> str:
        """``maximize`` or ``minimize``, Optuna's words."""
        return OBJECTIVES[self.objective]

    @property
    def seed_list(self) -> list[int]:
        """The seeds of every trial: first_seed .. first_seed + seeds - 1."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def run_config(self, params: Mapping[str, Any], seed: int) -> RunConfig:
        """The run of one seed of the trial with hyper-parameters ``params`` (the fixed overrides first)."""
        return resolve_config(
            self.algo,
            self.env,
            seed,
            overrides={**self.fixed, **params},
            total_timesteps=self.total_timesteps,
            device="cpu",
            eval_freq=self.eval_freq,
            checkpoint_freq=0,  # a killed trial is re-run, not resumed: no checkpoints to pay for
            diagnose_freq=0,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """A trial that ran all its seeds: the objective, and each seed's value and run."""

    value: float
    seed_values: list[float]
    runs: list[RunResult]


def seed_value(objective: str, result: RunResult) -> float:
    """The objective of one finished run."""
    if objective == "final_return":
        return float(result.evaluations[-1][1])
    if objective == "auc":
        return float(statistics.fmean(value for _, value in result.evaluations))
    solved = result.metrics["solved_at_episode"]
    return float(result.metrics["episodes"] if solved is None else solved)


class SeedCurves:
    """The evaluation curves of a trial's seeds so far, turned into (step, running mean over seeds)."""

    def __init__(self, sign: float) -> None:
        self.sign = sign
        self.curves: list[list[float]] = []

    def start_seed(self) -> None:
        """The next seed's evaluations follow."""
        self.curves.append([])

    def add(self, value: float) -> tuple[int, float]:
        """Record the current seed's next evaluation; return its step and intermediate value."""
        j = len(self.curves[-1])
        self.curves[-1].append(value)
        step = sum(len(curve) for curve in self.curves[:-1]) + j
        column = [curve[j] for curve in self.curves if len(curve) > j]
        return step, self.sign * statistics.fmean(column)


def run_trial(
    spec: StudySpec, params: Mapping[str, Any], trial_dir: Path, report: Intermediate | None = None
) -> TrialOutcome:
    """Train every seed of the trial into ``trial_dir/s<seed>``; ``report`` gets the intermediate values.

    What ``report`` raises (a pruner's ``TrialPruned``) ends the trial and propagates.
    """
    curves = SeedCurves(-1.0 if spec.direction == "minimize" else 1.0)
    runs: list[RunResult] = []
    for seed in spec.seed_list:
        curves.start_seed()

        def on_evaluation(timestep: int, mean_return: float) -> None:
            if report is not None:
                report(*curves.add(mean_return))

        # A study prints one line per trial; the runs' own progress lines (every 30 s) would bury them.
        with contextlib.redirect_stdout(io.StringIO()):
            runs.append(train(spec.run_config(params, seed), trial_dir / f"s{seed}", report=on_evaluation))
    seed_values = [seed_value(spec.objective, run) for run in runs]
    return TrialOutcome(statistics.fmean(seed_values), seed_values, runs)
