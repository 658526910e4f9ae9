"""Which RUNNING trials of a study belong to a process that is gone (SIGKILL, a crashed machine).

Optuna's own heartbeat exists only for RDB storages, and the journal file is our default, so every trial
carries its worker (host, pid, the process's start time) and a heartbeat user attribute instead. A
RUNNING trial is stale when its worker ran on this host and that process no longer exists (known at
once), or, from another host, when its heartbeat is older than :data:`STALE_AFTER_S` (the hosts' clocks
must roughly agree).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0
WORKER_ATTR = "worker"
HEARTBEAT_ATTR = "heartbeat"


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); None off Linux or if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    """The kernel's start time of process ``pid``, which tells a reused pid from the original."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    fields = _stat(pid)
    if fields is None:  # no /proc: trust the signal
        return True
    # A zombie (killed, not yet reaped by its parent) still answers signals.
    return fields[0] != "Z" and (started is None or _start_time(pid) == started)


def this_worker() -> dict[str, Any]:
    """This process, as recorded on the trials it runs."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def is_stale(trial: FrozenTrial, now: float | None = None) -> bool:
    """Whether the RUNNING ``trial`` was left behind by a process that is gone."""
    now = time.time() if now is None else now
    worker = trial.user_attrs.get(WORKER_ATTR)
    if worker is None:  # asked for but never marked: its process died within the same instant
        start = trial.datetime_start or datetime.datetime.now()
        return (datetime.datetime.now() - start).total_seconds() > STALE_AFTER_S
    if worker["host"] == socket.gethostname():
        return not _alive(worker["pid"], worker["started"])
    return now - float(trial.user_attrs.get(HEARTBEAT_ATTR, 0.0)) > STALE_AFTER_S


class Heartbeat:
    """Marks ``trial`` as this process's and refreshes its heartbeat every HEARTBEAT_S inside the block."""

    def __init__(self, trial: optuna.Trial, interval_s: float = HEARTBEAT_S) -> None:
        self.trial = trial
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial.number}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())
        self.trial.set_user_attr(WORKER_ATTR, this_worker())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            # A beat lost to a storage hiccup is made up by the next; a traceback here would help nobody.
            with contextlib.suppress(Exception):
                self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())
