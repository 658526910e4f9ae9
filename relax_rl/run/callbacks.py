"""Training callbacks: solve tracking, timed evaluation, saving the best model, reporting evaluations, the
wall clock and progress lines. (Checkpoints and early stops are :mod:`relax_rl.run.control`'s.)

The stateful ones have ``state_dict``/``load_state_dict`` so that a resumed run continues them exactly.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

from relax_rl.run.saving import save_model, stats_path_for

SOLVE_WINDOW = 100
PROGRESS_INTERVAL_S = 30.0


class SaveModelCallback(BaseCallback):
    """Atomically save the model whenever triggered; used as EvalCallback's ``callback_on_new_best``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)

    def _on_step(self) -> bool:
        save_model(self.model, self.path, stats_path_for(self.path))
        return True


class ReportEvaluations(BaseCallback):
    """EvalCallback's ``callback_after_eval``: passes each evaluation's (timestep, mean return) to ``report``.

    Whatever ``report`` raises (a sweep's "prune this trial") ends training and reaches ``learn``'s caller.
    """

    def __init__(self, report: Callable[[int, float], None]) -> None:
        super().__init__()
        self.report = report
        self.error: BaseException | None = None  # what ``report`` raised, for the caller to tell it apart

    def _on_step(self) -> bool:
        try:
            self.report(self.num_timesteps, float(self.parent.last_mean_reward))
        except BaseException as err:
            self.error = err
            raise
        return True


class TimedEvalCallback(EvalCallback):
    """``EvalCallback`` that adds up the seconds spent evaluating, so throughput can exclude them."""

    # What a resumed run needs to evaluate at the same steps, on the same episodes, against the same best.
    _STATE = (
        "n_calls",
        "best_mean_reward",
        "last_mean_reward",
        "evaluations_results",
        "evaluations_timesteps",
        "evaluations_length",
        "evaluations_successes",
        "_is_success_buffer",
        "eval_seconds",
        "eval_env",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_seconds = 0.0

    def state_dict(self) -> dict[str, Any]:
        """Counters, results so far and the evaluation env itself (its episodes' random state)."""
        return {key: getattr(self, key) for key in self._STATE}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.eval_env.close()
        for key in self._STATE:
            setattr(self, key, state[key])

    def _on_step(self) -> bool:
        start = time.perf_counter()
        try:
            return super()._on_step()
        finally:
            self.eval_seconds += time.perf_counter() - start


class SolveTracker(BaseCallback):
    """Record every finished episode and when the mean return of the last ``window`` episodes first
    reaches each threshold.

    Episodes come from ``infos[i]["episode"]`` (set by ``Monitor``/``VecMonitor``), or from a device
    rollout's ``rollout_episodes`` at its end (:class:`~relax_rl.agents.tensor_rollout.TensorRolloutMixin`).
    "Solved at episode k" means: k episodes had finished, k >= ``window``, and the last ``window`` returns
    averaged at least the threshold. Its timestep is the number of env steps (over all envs) taken at that moment.
    """

    def __init__(
        self, threshold: float | None, extra_thresholds: Iterable[float] = (), window: int = SOLVE_WINDOW
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.extra_thresholds = tuple(extra_thresholds)
        self.window = window
        self.returns: list[float] = []
        self.timesteps: list[int] = []
        self._recent: deque[float] = deque(maxlen=window)
        self.solved: dict[float, tuple[int, int] | None] = dict.fromkeys(self._all_thresholds())

    def _all_thresholds(self) -> list[float]:
        return ([] if self.threshold is None else [self.threshold]) + list(self.extra_thresholds)

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.record(float(info["episode"]["r"]), self.num_timesteps)
        return True

    def _on_rollout_end(self) -> None:
        # A rollout on the device (TensorRolloutMixin) hands over its episodes here, with their timesteps.
        for timestep, episode in self.locals.get("rollout_episodes", ()):
            self.record(float(episode["r"]), timestep)

    def record(self, episode_return: float, timestep: int) -> None:
        """Add one finished episode (also usable without a model, e.g. on a monitor file)."""
        self.returns.append(episode_return)
        self.timesteps.append(timestep)
        self._recent.append(episode_return)
        if len(self._recent) < self.window:
            return
        mean = sum(self._recent) / self.window
        for threshold, solved in self.solved.items():
            if solved is None and mean >= threshold:
                self.solved[threshold] = (len(self.returns), timestep)

    def state_dict(self) -> dict[str, Any]:
        return {"returns": self.returns, "timesteps": self.timesteps, "solved": self.solved}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.returns, self.timesteps, self.solved = (
            list(state["returns"]),
            list(state["timesteps"]),
            dict(state["solved"]),
        )
        self._recent = deque(self.returns[-self.window :], maxlen=self.window)

    def summary(self) -> dict[str, Any]:
        """Metrics for ``metrics.json``; extra thresholds also appear flat as ``solved_at_episode_<t>``."""
        recent = self.returns[-self.window :]

        def solved(threshold: float | None) -> dict[str, int | None]:
            episode, timestep = self.solved.get(threshold) or (None, None)
            return {"solved_at_episode": episode, "solved_at_timestep": timestep}

        extra = {f"{t:g}": solved(t) for t in self.extra_thresholds}
        flat = {f"{key}_{name}": value for name, entry in extra.items() for key, value in entry.items()}
        return {
            "episodes": len(self.returns),
            **solved(self.threshold),
            "solve_threshold": self.threshold,
            "solve_window": self.window,
            "extra_thresholds": extra,
            **flat,
            "final_mean_return": sum(recent) / len(recent) if recent else None,
        }


class WallClock(BaseCallback):
    """Seconds spent in ``learn``, added up over the sessions of a resumed run.

    The count restored on resume is the one saved with the checkpoint, so work lost to a kill (and
    redone) is not counted twice.
    """

    def __init__(self) -> None:
        super().__init__()
        self._before = 0.0  # seconds of earlier sessions, or of this one once it ended
        self._start: float | None = None

    @property
    def seconds(self) -> float:
        return self._before + (time.perf_counter() - self._start if self._start is not None else 0.0)

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._before, self._start = self.seconds, None

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._before = float(state["seconds"])


class ProgressLog(BaseCallback):
    """Plain progress lines for logs (a progress bar is for terminals): one every ``interval_s`` seconds,
    at a rollout boundary, and one at the end. Episodes and returns come from ``tracker``."""

    def __init__(self, tracker: SolveTracker, interval_s: float = PROGRESS_INTERVAL_S, file: TextIO | None = None):
        super().__init__()
        self.tracker = tracker
        self.interval_s = interval_s
        self.file = file
        self._total = 0
        self._session_start = (0.0, 0)  # (perf_counter, timesteps) when this session began
        self._last_line = 0.0

    def _on_training_start(self) -> None:
        self._total = self.locals["total_timesteps"]
        self._session_start = (time.perf_counter(), self.num_timesteps)
        self._last_line = time.perf_counter()

    def _on_rollout_start(self) -> None:
        if time.perf_counter() - self._last_line >= self.interval_s:
            self.print_line()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.print_line()

    def print_line(self) -> None:
        """``timesteps T/TOTAL (P%) | episodes E | mean return R | S SPS | ETA H:MM:SS`` (R over the solve
        window; S and the ETA from this session's pace, evaluations included)."""
        now, timesteps = time.perf_counter(), self.model.num_timesteps
        recent = self.tracker.returns[-self.tracker.window :]
        mean = f"{sum(recent) / len(recent):.2f}" if recent else "-"
        start_time, start_steps = self._session_start
        sps = (timesteps - start_steps) / max(now - start_time, 1e-9)
        eta = max(self._total - timesteps, 0) / sps if sps > 0 else 0.0
        minutes, seconds = divmod(round(eta), 60)
        print(
            f"timesteps {timesteps}/{self._total} ({timesteps / max(self._total, 1):.0%}) | "
            f"episodes {len(self.tracker.returns)} | mean return {mean} | {sps:.0f} SPS | "
            f"ETA {minutes // 60}:{minutes % 60:02d}:{seconds:02d}",
            file=self.file or sys.stdout,
            flush=True,
        )
        self._last_line = now
