"""When, where and from which code a result was made: what every results file carries with its results."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

_CHECKOUT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """The git commit of this checkout (``-dirty`` with uncommitted changes), else the installed version."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(_CHECKOUT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(_CHECKOUT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return f"{commit}-dirty" if dirty else commit
    except (OSError, subprocess.CalledProcessError):
        return f"relax-rl {metadata.version('relax-rl')}"


def machine() -> str:
    """The CPU (and GPU), in one line."""
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs{gpu}; torch {torch.__version__}"


def provenance(command: str) -> dict[str, str]:
    """``command``, the date (UTC), the machine and the code's version."""
    return {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": code_version(),
    }
