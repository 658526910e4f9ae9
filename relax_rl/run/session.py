"""The callbacks of one training session, and loading the checkpoint a resumed session starts from."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from relax_rl.config import RunConfig, load_algo_class
from relax_rl.diagnose import ActionVarianceCallback, CriticFitCallback
from relax_rl.envs import get_spec
from relax_rl.errors import UsageError
from relax_rl.run.build import make_env, observes_raw_env
from relax_rl.run.callbacks import (
    ProgressLog,
    ReportEvaluations,
    SaveModelCallback,
    SolveTracker,
    TimedEvalCallback,
    WallClock,
)
from relax_rl.run.checkpoint import (
    CHECKPOINT_DIR,
    Checkpointer,
    CheckpointError,
    Resumable,
    list_checkpoints,
    load_checkpoint,
    read_meta,
)
from relax_rl.run.control import RunControl
from relax_rl.run.files import BEST_MODEL, CONFIG_FILE, detect_algo, read_model_data
from relax_rl.run.signals import StopSignals
from relax_rl.run.solving import SolveAnnouncer

# Thresholds reported besides gymnasium's reward_threshold: the RELAX paper solved CartPole at 195.
EXTRA_THRESHOLDS: dict[str, tuple[float, ...]] = {"CartPole-v1": (195.0,)}
N_EVAL_EPISODES = 5

#: ``report(timestep, mean evaluation return)``, called after every evaluation (sweeps prune on it).
Report = Callable[[int, float], None]


@dataclasses.dataclass
class Session:
    """The callbacks of one training session; ``parts`` are those whose state checkpoints carry."""

    tracker: SolveTracker
    evaluator: TimedEvalCallback | None
    clock: WallClock
    control: RunControl
    parts: dict[str, Resumable]
    announcer: SolveAnnouncer
    diagnostics: ActionVarianceCallback | None = None
    critic_fit: CriticFitCallback | None = None

    @classmethod
    def create(cls, config: RunConfig, run_dir: Path, report: Report | None = None) -> Session:
        tracker = SolveTracker(get_spec(config.env).reward_threshold, EXTRA_THRESHOLDS.get(config.env, ()))
        clock = WallClock()
        evaluator = None
        if config.eval_freq:
            evaluator = TimedEvalCallback(
                make_env(config, run_dir, training=False),
                callback_on_new_best=SaveModelCallback(run_dir / BEST_MODEL),
                callback_after_eval=None if report is None else ReportEvaluations(report),
                n_eval_episodes=N_EVAL_EPISODES,
                eval_freq=max(config.eval_freq // config.n_envs, 1),  # SB3 counts vec-env steps
                log_path=str(run_dir),
                verbose=0,
            )
        parts: dict[str, Resumable] = {"tracker": tracker, "clock": clock}
        if evaluator is not None:
            parts["evaluator"] = evaluator
        checkpointer = Checkpointer(run_dir, {"algo": config.algo, "env": config.env, "seed": config.seed}, parts)
        control = RunControl(checkpointer.save, config.checkpoint_freq, config.max_bad_updates, StopSignals())
        diagnostics = (
            ActionVarianceCallback(config.env, config.diagnose_freq)
            if config.diagnose_freq and observes_raw_env(config)
            else None
        )
        # Logs nothing unless the env has an exact reference (target matching): then reference/<fit> too.
        critic_fit = CriticFitCallback(config.diagnose_freq) if config.diagnose_freq else None
        announcer = SolveAnnouncer(tracker, stop=config.stop_at_solve)
        return cls(tracker, evaluator, clock, control, parts, announcer, diagnostics, critic_fit)

    def callbacks(self, progress: bool) -> list[BaseCallback]:
        """In order: the clock starts first; progress lines, when there is no bar, come last."""
        optional = [c for c in (self.evaluator, self.diagnostics, self.critic_fit) if c is not None]
        progress_lines = [] if progress else [ProgressLog(self.tracker)]
        return [self.clock, self.tracker, self.announcer, *optional, self.control, *progress_lines]

    def report_error(self) -> BaseException | None:
        """What the ``report`` hook raised, if it did."""
        reporter = None if self.evaluator is None else self.evaluator.callback
        return reporter.error if isinstance(reporter, ReportEvaluations) else None

    def evaluations(self) -> tuple[tuple[int, float], ...]:
        """(timestep, mean return) of every evaluation so far."""
        if self.evaluator is None:
            return ()
        results = zip(self.evaluator.evaluations_timesteps, self.evaluator.evaluations_results, strict=True)
        return tuple((int(t), float(sum(r) / len(r))) for t, r in results)


def load_newest_checkpoint(config: RunConfig, run_dir: Path, session: Session) -> tuple[BaseAlgorithm, Path]:
    """Load the newest checkpoint that works, warning about the newer ones that did not."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise UsageError(
            f"{run_dir} has no checkpoint to resume from (none in {run_dir / CHECKPOINT_DIR}); "
            "remove it and train again"
        )
    algo_cls = load_algo_class(config.algo)
    failures: list[str] = []
    for path in checkpoints:
        try:
            _check_same_run(read_meta(path), detect_algo(read_model_data(path)), config, path)
            model = load_checkpoint(path, algo_cls, run_dir, config.device, session.parts)
        except CheckpointError as err:
            failures.append(str(err))
            continue
        for failure in failures:  # printed only now: when nothing loads, the error is one line
            print(f"warning: skipped {failure}", file=sys.stderr)
        return model, path
    older = f" (and {len(failures) - 1} older unusable)" if len(failures) > 1 else ""
    raise UsageError(f"no usable checkpoint: {failures[0]}{older}")


def _check_same_run(meta: Mapping[str, Any], saved_algo: str, config: RunConfig, path: Path) -> None:
    """Refuse a checkpoint that another run (algorithm, env or seed) wrote."""
    theirs = (meta.get("algo"), saved_algo, meta.get("env"), meta.get("seed"))
    if theirs != (config.algo, config.algo, config.env, config.seed):
        raise UsageError(
            f"{path} belongs to another run ({meta.get('algo')}, saved by {saved_algo}, on {meta.get('env')}, "
            f"seed {meta.get('seed')}) than its run directory's {CONFIG_FILE} ({config.algo} on {config.env}, "
            f"seed {config.seed}); refusing to resume"
        )
