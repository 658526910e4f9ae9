"""Where a process's output goes: file descriptors redirected, so that native code's writes follow too."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def fds_redirected(target_fd: int, fds: Sequence[int]) -> Iterator[None]:
    """Inside the block, file descriptors ``fds`` (1: stdout, 2: stderr) write to ``target_fd``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    try:
        for fd in fds:
            os.dup2(target_fd, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
