"""What vector-native envs (torch, ale-py) share: one object for all envs, and episode statistics.

They have no per-env gymnasium wrapper, so they record episodes themselves, in the shape SB3's
``VecMonitor`` gives them: ``infos[i]["episode"] = {"r", "l", "t"}`` and, with a file, a ``monitor.csv`` that
``stable_baselines3.common.monitor.load_results`` reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from stable_baselines3.common.monitor import Monitor, ResultsWriter
from stable_baselines3.common.vec_env import VecEnv


class EpisodeLog:
    """Turns finished episodes into SB3 ``episode`` infos and, optionally, rows of a monitor file."""

    def __init__(self, filename: str | os.PathLike[str] | None = None, env_id: str = "") -> None:
        self.t_start = time.time()
        self.writer = None
        if filename is not None:
            self.writer = ResultsWriter(str(filename), header={"t_start": self.t_start, "env_id": env_id})

    def finish(
        self, returns: Sequence[float], lengths: Sequence[int], end_time: float | None = None
    ) -> list[dict[str, Any]]:
        """One ``{"r", "l", "t"}`` dict per finished episode (rounded as ``VecMonitor`` rounds them), which
        ended at ``end_time`` (``time.time()``; now by default)."""
        elapsed = round((time.time() if end_time is None else end_time) - self.t_start, 6)
        episodes = [{"r": round(float(r), 6), "l": int(n), "t": elapsed} for r, n in zip(returns, lengths, strict=True)]
        if self.writer is not None:
            for episode in episodes:
                self.writer.write_row(episode)
        return episodes

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class NativeVecEnv(VecEnv):
    """A ``VecEnv`` that is one object stepping all its envs: attributes and methods are the batch's."""

    render_mode = None  # read by VecEnv.__init__

    def get_attr(self, attr_name: str, indices: Iterable[int] | int | None = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Iterable[int] | int | None = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self, method_name)(*args, **kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Iterable[int] | int | None = None) -> list[bool]:
        # Episodes are recorded as Monitor records them (evaluate_policy reads infos[i]["episode"] then).
        return [issubclass(Monitor, wrapper_class) for _ in self._get_indices(indices)]
