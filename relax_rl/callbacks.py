"""Training callbacks: solve tracking, atomic checkpoints, timed evaluation."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback

SOLVE_WINDOW = 100


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the result to ``path`` so readers never see a partial file.

    The temporary file sits in the same directory (``os.replace`` is only atomic within one file
    system), is hidden, and keeps the suffix because SB3 appends ``.zip`` to names without it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def save_model(model: BaseAlgorithm, path: str | os.PathLike[str], stats_path: str | os.PathLike[str]) -> None:
    """Atomically save ``model`` to ``path`` and, when it trains under VecNormalize, its statistics."""
    atomic_write(path, model.save)
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        atomic_write(stats_path, vec_normalize.save)


def stats_path_for(model_path: str | os.PathLike[str]) -> Path:
    """Where :func:`save_model` callers put the VecNormalize statistics belonging to ``model_path``."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}_vecnormalize.pkl")


class AtomicCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback`` writing each checkpoint (and VecNormalize stats) atomically."""

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            path = self._checkpoint_path(extension="zip")
            save_model(self.model, path, stats_path_for(path))
        return True


class SaveModelCallback(BaseCallback):
    """Atomically save the model whenever triggered; used as EvalCallback's ``callback_on_new_best``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)

    def _on_step(self) -> bool:
        save_model(self.model, self.path, stats_path_for(self.path))
        return True


class TimedEvalCallback(EvalCallback):
    """``EvalCallback`` that adds up the seconds spent evaluating, so throughput can exclude them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_seconds = 0.0

    def _on_step(self) -> bool:
        start = time.perf_counter()
        try:
            return super()._on_step()
        finally:
            self.eval_seconds += time.perf_counter() - start


class SolveTracker(BaseCallback):
    """Record every finished episode and when the mean return of the last ``window`` episodes first
    reaches each threshold.

    Episodes come from ``infos[i]["episode"]`` (set by ``Monitor``/``VecMonitor``). "Solved at episode
    k" means: k episodes had finished, k >= ``window``, and the last ``window`` returns averaged at least
    the threshold. Its timestep is the number of env steps (over all envs) taken at that moment.
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
