"""Catching SIGINT and SIGTERM during training, so that a run checkpoints before it stops."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class StopSignals:
    """Inside the ``with`` block, SIGINT and SIGTERM only set :attr:`received`, for
    :class:`~relax_rl.run.control.RunControl` to checkpoint and stop at the next rollout boundary. The first
    one puts the previous handlers back, so a second signal acts at once (e.g. a second Ctrl-C raises
    KeyboardInterrupt). Outside the main thread, where Python cannot install handlers, signals keep their
    usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
