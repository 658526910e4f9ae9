"""Compare two run directories bit for bit, leaving out what measures wall-clock time."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

WALL_CLOCK_METRICS = ("wall_s", "eval_s", "sps")


def saved_state(model_zip: Path) -> dict:
    """Every state dict in an SB3 zip: the policy (φ and τ included) and the optimisers."""
    with zipfile.ZipFile(model_zip) as archive:
        return {
            name: torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            for name in archive.namelist()
            if name.endswith(".pth")
        }


def assert_identical(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors and numbers are equal exactly (tensors bit for bit)."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def monitor_rows(run_dir: Path) -> list[tuple[str, str]]:
    """(return, length) of every episode in monitor.csv; its third column is wall-clock time."""
    rows = (run_dir / "monitor.csv").read_text().splitlines()[2:]
    return [tuple(row.split(",")[:2]) for row in rows]


def assert_same_run(a: Path, b: Path) -> None:
    """Same final parameters and optimiser states, metrics, episodes and evaluations."""
    assert_identical(saved_state(a / "final_model.zip"), saved_state(b / "final_model.zip"), "final_model")
    metrics_a, metrics_b = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in WALL_CLOCK_METRICS:
        metrics_a.pop(key), metrics_b.pop(key)
    assert metrics_a == metrics_b
    assert monitor_rows(a) == monitor_rows(b) and monitor_rows(a)
    if (a / "evaluations.npz").is_file():
        evaluations_a, evaluations_b = np.load(a / "evaluations.npz"), np.load(b / "evaluations.npz")
        assert evaluations_a.files == evaluations_b.files
        for key in evaluations_a.files:
            np.testing.assert_array_equal(evaluations_a[key], evaluations_b[key])
