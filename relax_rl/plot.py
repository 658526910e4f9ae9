"""Learning curves from run directories: one run's own curve, or the mean and 95% bootstrap band per algorithm.

``relax-rl plot RUN_DIR [RUN_DIR ...] --out curves.png`` (:mod:`relax_rl.cli.plot`) groups the runs by the
``algo`` in their ``config.yml``; ``relax_rl.compare`` draws its figure with the same functions.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state
from rliable import library as rly
from stable_baselines3.common.monitor import LoadMonitorResultsError, load_results

GRID_POINTS = 1000
SMOOTHING_WINDOW = 100  # the window of the "solved" criterion, so a curve crossing a threshold means solved


@dataclasses.dataclass
class Curve:
    """One run's episodes, in the order they finished."""

    returns: np.ndarray
    steps: np.ndarray  # env steps taken when each episode ended (cumulative episode lengths)

    @property
    def episodes(self) -> np.ndarray:
        return np.arange(1, len(self.returns) + 1)

    def smoothed(self, window: int = SMOOTHING_WINDOW) -> np.ndarray:
        """Trailing mean over up to ``window`` episodes."""
        return pd.Series(self.returns).rolling(window, min_periods=1).mean().to_numpy()


def load_curve(run_dir: str | Path) -> Curve:
    """Read the ``*monitor.csv`` files of a run directory (SB3's ``load_results``)."""
    try:
        frame = load_results(str(run_dir))
    except LoadMonitorResultsError:
        raise FileNotFoundError(f"no monitor.csv in {run_dir}") from None
    return Curve(returns=frame["r"].to_numpy(dtype=float), steps=np.cumsum(frame["l"].to_numpy(dtype=float)))


def bootstrap_interval(
    runs: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray | float],
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and percentile-bootstrap interval of ``statistic`` over runs (axis 0).

    This is rliable's stratified bootstrap (``get_interval_estimates``), with a fixed random state
    so that reports are reproducible. ``runs`` has one row per run.
    """
    runs = np.asarray(runs, dtype=float)
    point = np.asarray(statistic(runs))
    # rliable's StratifiedBootstrap draws its resamples from NumPy's global generator, whatever random_state
    # it is given: seed that for the call, and leave the caller's stream as it was.
    caller_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            # rliable seeds arch's bootstrap with a RandomState, which arch 7 deprecates; there is no other way.
            warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
            _, intervals = rly.get_interval_estimates(
                {"runs": runs},
                lambda scores: np.atleast_1d(statistic(scores)),  # rliable's bootstrap wants a vector
                reps=reps,
                confidence_interval_size=confidence,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(caller_state)
    low, high = intervals["runs"]
    return point, low.reshape(point.shape), high.reshape(point.shape)


def _on_grid(
    curves: Sequence[Curve], x_of: Callable[[Curve], np.ndarray], window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each smoothed curve on a grid over the x range of the longest run: at a grid point, the value
    after the last episode that ended there (no blending of neighbours, which would shave the peaks),
    NaN before a run's first episode and after its last."""
    start = min(x_of(c)[0] for c in curves)
    end = max(x_of(c)[-1] for c in curves)
    grid = np.linspace(start, end, GRID_POINTS) if end > start else np.array([end])
    rows = []
    for curve in curves:
        x, y = x_of(curve), curve.smoothed(window)
        index = np.searchsorted(x, grid, side="right") - 1
        row = y[np.clip(index, 0, None)]
        rows.append(np.where((index >= 0) & (grid <= x[-1]), row, np.nan))
    return grid, np.stack(rows)


def _draw_group(ax: Any, label: str, curves: Sequence[Curve], x_of: Callable[[Curve], np.ndarray], window: int) -> None:
    """One run: its own smoothed curve, every episode. Several: the mean and a 95% bootstrap band where
    every run has data, then, past the shortest run, the mean of those still going (dashed)."""
    if len(curves) == 1:
        ax.plot(x_of(curves[0]), curves[0].smoothed(window), label=f"{label} (1 run)")
        return
    grid, values = _on_grid(curves, x_of, window)
    shared = ~np.isnan(values).any(axis=0)
    mean, low, high = bootstrap_interval(values[:, shared], lambda runs: runs.mean(axis=0))
    (line,) = ax.plot(grid[shared], mean, label=f"{label} (n={len(curves)})")
    ax.fill_between(grid[shared], low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    beyond = grid > grid[shared][-1]
    if beyond.any():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            rest = np.nanmean(values[:, beyond], axis=0)
        ax.plot(grid[beyond], rest, color=line.get_color(), linestyle="--", linewidth=1)


def plot_learning_curves(
    groups: Mapping[str, Sequence[str | Path | Curve]],
    out_png: str | Path,
    *,
    thresholds: Sequence[float] = (),
    window: int = SMOOTHING_WINDOW,
    title: str | None = None,
) -> Path:
    """Save :func:`learning_curve_figure` as a PNG."""
    fig = learning_curve_figure(groups, thresholds=thresholds, window=window, title=title)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    return out_png


def learning_curve_figure(
    groups: Mapping[str, Sequence[str | Path | Curve]],
    *,
    thresholds: Sequence[float] = (),
    window: int = SMOOTHING_WINDOW,
    title: str | None = None,
) -> Figure:
    """Two panels (return vs episodes, return vs env steps), one curve per group (see :func:`_draw_group`).

    ``groups`` maps a label (an algorithm) to run directories or loaded curves. Runs without a
    finished episode are left out; a group with none is left out of the figure. ``title`` is put
    before a description of what is drawn.
    """
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    sizes = []
    for label, members in groups.items():
        curves = [m if isinstance(m, Curve) else load_curve(m) for m in members]
        curves = [c for c in curves if len(c.returns)]
        if not curves:
            continue
        sizes.append(len(curves))
        for ax, x_of in zip(axes, (lambda c: c.episodes.astype(float), lambda c: c.steps), strict=True):
            _draw_group(ax, label, curves, x_of, window)
    if not sizes:
        raise ValueError("no run has a finished episode to plot")
    for ax, xlabel in zip(axes, ("episodes", "env steps"), strict=True):
        for threshold in thresholds:
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"{threshold:g}", (1, threshold), xycoords=("axes fraction", "data"), ha="right", va="bottom")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"return (mean of last {window} episodes)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    if max(sizes) == 1:
        drawn = "one run each"
    else:
        drawn = "mean and 95% bootstrap band over seeds; dashed: past the shortest run, the runs still going"
    fig.suptitle(f"{title}: {drawn}" if title else drawn)
    return fig


def group_runs(run_dirs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Group run directories by the ``algo`` of their ``config.yml`` (else the parent folder's name)."""
    groups: dict[str, list[Path]] = {}
    for run_dir in map(Path, run_dirs):
        algo = _config_value(run_dir, "algo")
        groups.setdefault(algo or run_dir.resolve().parent.name, []).append(run_dir)
    return groups


def _config_value(run_dir: Path, key: str) -> object:
    """``key`` of the run's ``config.yml``, or None without one."""
    config = run_dir / "config.yml"
    return (yaml.safe_load(config.read_text()) or {}).get(key) if config.is_file() else None


def run_envs(run_dirs: Sequence[str | Path]) -> list[str]:
    """The env ids in the runs' ``config.yml``, in first-seen order."""
    envs: dict[str, None] = {}
    for run_dir in map(Path, run_dirs):
        env = _config_value(run_dir, "env")
        if env:
            envs[env] = None
    return list(envs)


def run_thresholds(run_dirs: Sequence[str | Path]) -> list[float]:
    """The solve thresholds recorded in the runs' ``metrics.json`` (main and extra), sorted."""
    thresholds: set[float] = set()
    for run_dir in map(Path, run_dirs):
        path = run_dir / "metrics.json"
        if path.is_file():
            metrics = json.loads(path.read_text())
            if metrics.get("solve_threshold") is not None:
                thresholds.add(float(metrics["solve_threshold"]))
            thresholds.update(float(t) for t in metrics.get("extra_thresholds", {}))
    return sorted(thresholds)
