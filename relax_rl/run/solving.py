"""Saying when a run solves its env, and stopping there if asked (``stop_at_solve``), the way SB3's
``StopTrainingOnRewardThreshold`` stops on an evaluation."""

from __future__ import annotations

import sys
from typing import TextIO

from stable_baselines3.common.callbacks import BaseCallback


class SolveAnnouncer(BaseCallback):
    """Prints one line when ``tracker`` (a :class:`~relax_rl.run.callbacks.SolveTracker`, which must run before this
    callback) first sees the env solved, and with ``stop`` ends training there: ``learn`` returns as at the end
    of its budget, and the run is saved and reported as finished.

    A resumed run that had already solved neither announces it again nor, with ``stop``, trains on.
    """

    def __init__(self, tracker: BaseCallback, stop: bool, file: TextIO | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.stop = stop
        self.file = file
        self._announced = False

    def _solved(self) -> tuple[int, int] | None:
        return self.tracker.solved.get(self.tracker.threshold)

    def _on_training_start(self) -> None:
        self._announced = self._solved() is not None

    def _on_step(self) -> bool:
        solved = self._solved()
        if solved is not None and not self._announced:
            self._announced = True
            episode, timestep = solved
            then = "; stopping (stop_at_solve)" if self.stop else ""
            print(
                f"solved at episode {episode} (timestep {timestep}): the mean of the last {self.tracker.window} "
                f"returns reached {self.tracker.threshold:g}{then}",
                file=self.file or sys.stdout,
                flush=True,
            )
        return not (self.stop and solved is not None)
