"""Small helpers around Ray, for ``tune --ray`` and ``compare --ray``: connect to a cluster, map runs over it.

Ray is an extra (``pip install -e ".[ray]"``) and is imported only inside these functions, so the rest of
the library works without it.

    with connect("auto"):                     # or "local", "HOST:6379", "ray://HOST:10001"
        metrics = map_runs(run_one, [(seed,) for seed in range(10)], cpus_per_run=1)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from relax_rl.errors import UsageError, first_line

INSTALL_HINT = 'pip install -e ".[ray]"'
CONNECT_TIMEOUT_S = 5.0
STARTUP_ATTEMPTS = 3  # tries at starting a local Ray; see start_local


def import_ray() -> ModuleType:
    """``import ray``, or a UsageError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, which is not installed; install it with: {INSTALL_HINT}") from None
    return ray


class Connection:
    """A connection made by :func:`connect`; closing it shuts down what it started (nothing if Ray was up)."""

    def __init__(self, owned: bool) -> None:
        self.owned = owned

    def close(self) -> None:
        """Disconnect, and stop the throwaway instance of ``local``; a no-op for a reused connection."""
        if self.owned:
            import_ray().shutdown()
            self.owned = False

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _check_reachable(address: str) -> None:
    """Fail fast, with one line, on an address nothing listens on (ray.init would retry for a minute)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise UsageError(f"--ray {address}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise UsageError(
            f"--ray {address}: cannot reach a Ray cluster there ({err.strerror or err}); start one with "
            f"`ray start --head --port {port}` on {host}, or use --ray local"
        ) from None


def start_local(num_cpus: int | None = None) -> None:
    """Start a throwaway Ray instance on this machine (all its CPUs unless ``num_cpus``).

    ``address="local"``: a bare init() would try the last cluster started on this machine, and a crashed one
    leaves its address behind. On a loaded machine the raylet can miss the 30 s Ray waits for it at start-up
    ("the GCS has become overloaded"); the start is then tried again, from scratch, up to
    :data:`STARTUP_ATTEMPTS` times, and a last failure is a RuntimeError.
    """
    ray = import_ray()
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        try:
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
            return
        except Exception as err:  # Ray raises a bare Exception for this time-out
            ray.shutdown()
            if "timed out during startup" not in str(err):
                raise
            if attempt == STARTUP_ATTEMPTS:
                raise RuntimeError(f"Ray did not start in {STARTUP_ATTEMPTS} tries: {first_line(err)}") from err


def connect(address: str) -> Connection:
    """Connect this process to Ray: ``local`` starts a throwaway instance with every CPU of this machine;
    ``auto`` finds the cluster started on this machine by ``ray start``; ``HOST:PORT`` or ``ray://HOST:PORT``
    connects to that one. A Ray already initialised in this process (e.g. by a test fixture) is reused for
    ``local``, ``auto`` and its own address.

    Raises UsageError (one line, with the fix) when Ray is missing or the cluster cannot be reached.
    """
    ray = import_ray()
    if address not in ("local", "auto"):
        _check_reachable(address)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in ("local", "auto", current):
            raise UsageError(f"--ray {address}: this process is already connected to the Ray cluster at {current}")
        return Connection(owned=False)
    try:
        if address == "local":
            start_local()
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        ray.shutdown()  # whatever half of a connection was made: leave no process behind
        hint = "start one with `ray start --head`, or use --ray local" if address == "auto" else "is it a Ray head?"
        raise UsageError(f"--ray {address}: cannot connect: {first_line(err).rstrip('.')}; {hint}") from None
    return Connection(owned=True)


def _with_threads(function: Callable[..., Any], arguments: Sequence[Any]) -> Any:
    """Run ``function(*arguments)`` in a Ray task with as many torch threads as CPUs the task was given."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(int(cpus), 1))  # Ray's worker is ours for the task: no need to restore it
    return function(*arguments)


def map_runs(function: Callable[..., Any], argument_tuples: Iterable[Sequence[Any]], cpus_per_run: int = 1) -> list:
    """``[function(*arguments) for arguments in argument_tuples]``, each call a Ray task with ``cpus_per_run``
    CPUs and as many torch threads; the results are in the input order. ``function`` must be picklable (a
    module-level function). A task whose worker or node dies is retried (Ray's default, 3 times); an
    exception raised by ``function`` is raised here. Needs :func:`connect` first.
    """
    ray = import_ray()
    if not ray.is_initialized():
        raise UsageError("map_runs needs a Ray connection: call relax_rl.cluster.connect(address) first")
    task = ray.remote(num_cpus=cpus_per_run)(_with_threads)
    # ray.get raises a failed task's exception as an instance of its own class (and of RayTaskError).
    return ray.get([task.remote(function, tuple(arguments)) for arguments in argument_tuples])
