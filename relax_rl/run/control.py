"""Run control: checkpoints, and stops, at rollout boundaries (every so many timesteps, on SIGINT/SIGTERM,
and after too many consecutive skipped updates)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from relax_rl.run.signals import StopSignals


@runtime_checkable
class ReportsSkippedUpdates(Protocol):
    """A model that skips the updates with a non-finite loss or gradient and counts them, as
    :class:`~relax_rl.agents.relax_a2c.RelaxA2C` does; SB3's agents do not (their streak is 0)."""

    bad_update_streak: int  # updates skipped in a row, up to the last update
    skipped_updates: int  # updates skipped in all


def bad_update_streak(model: BaseAlgorithm) -> int:
    """How many updates ``model`` skipped in a row, up to its last one (0 for a model that never skips)."""
    return model.bad_update_streak if isinstance(model, ReportsSkippedUpdates) else 0


@dataclasses.dataclass(frozen=True)
class Stop:
    """Why :class:`RunControl` ended training before its budget, and the checkpoint to resume from."""

    timestep: int
    checkpoint: Path
    signum: int | None = None  # set when a signal stopped the run, None when updates kept failing
    bad_updates: int = 0  # consecutive skipped updates when the run stopped
    skipped_updates: int = 0  # skipped updates in all
    # For a stop on skipped updates: True when no checkpoint predates the streak, so the checkpoint was
    # written at the stop (its parameters are still the last good ones: skipped updates change nothing).
    saved_at_stop: bool = False


class RunControl(BaseCallback):
    """Checkpoints, and stops, at rollout boundaries: after an update and before the next rollout, where
    the whole training state is in the model, the envs and the callbacks, and is small.

    - Every ``every`` timesteps (0: never) it calls ``save(model)``, which writes a checkpoint and
      returns its path; not while a streak of skipped updates is going on, so that the newest
      checkpoint stays the last good state.
    - After a signal caught by ``signals`` it saves and stops.
    - After ``max_bad_updates`` consecutive skipped updates (0: never) it stops, keeping the last good
      checkpoint (or, when there is none, saving the current state, whose parameters are those of the
      last good update). It reads the counts of a model that :class:`ReportsSkippedUpdates`; other
      models never stop this way.

    :attr:`last_good` is the newest checkpoint of a good state (a resumed run sets it to the checkpoint
    it resumed from). After ``learn`` returns, :attr:`stop` says why training ended early, or is None
    when the budget was reached.
    """

    def __init__(
        self,
        save: Callable[[BaseAlgorithm], Path],
        every: int,
        max_bad_updates: int,
        signals: StopSignals,
    ) -> None:
        super().__init__()
        self.save = save
        self.every = every
        self.max_bad_updates = max_bad_updates
        self.signals = signals
        self.last_good: Path | None = None
        self.stop: Stop | None = None
        self._next_checkpoint = 0

    def _on_training_start(self) -> None:
        self._next_checkpoint = self._next_multiple(self.num_timesteps)

    def _next_multiple(self, timestep: int) -> int:
        # Multiples of `every` strictly after `timestep`: a resumed run checkpoints where the
        # uninterrupted one would have.
        return (timestep // self.every + 1) * self.every if self.every else 0

    def _on_rollout_start(self) -> None:
        self._at_boundary(final=False)

    def _on_step(self) -> bool:
        return self.stop is None

    def _on_training_end(self) -> None:
        if self.stop is None:  # after a stop the state has moved past the boundary where we stopped
            self._at_boundary(final=True)

    def _at_boundary(self, *, final: bool) -> None:
        timestep = self.model.num_timesteps
        streak = bad_update_streak(self.model)
        if self.max_bad_updates and streak >= self.max_bad_updates:
            self.stop = Stop(
                timestep,
                self.last_good or self.save(self.model),
                bad_updates=streak,
                skipped_updates=self.model.skipped_updates,
                saved_at_stop=self.last_good is None,
            )
        elif self.signals.received is not None and not final:  # at the end, finishing is quicker
            self.stop = Stop(timestep, self.save(self.model), signum=self.signals.received)
        elif self.every and timestep >= self._next_checkpoint and streak == 0:
            self.last_good = self.save(self.model)
            self._next_checkpoint = self._next_multiple(timestep)
