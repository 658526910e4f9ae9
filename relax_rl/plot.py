"""Learning curves from run directories: mean and 95% bootstrap band per algorithm.

``python -m relax_rl.plot RUN_DIR [RUN_DIR ...] --out curves.png`` groups the runs by the ``algo``
in their ``config.yml``; ``relax_rl.compare`` draws its figure with the same functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state
from rliable import library as rly
from stable_baselines3.common.monitor import LoadMonitorResultsError, load_results

GRID_POINTS = 200
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
    low, high = intervals["runs"]
    return point, low.reshape(point.shape), high.reshape(point.shape)


def _on_grid(
    curves: Sequence[Curve], x_of: Callable[[Curve], np.ndarray], window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate each smoothed curve onto a grid spanning the x range that every run covers."""
    start = max(x_of(c)[0] for c in curves)
    end = min(x_of(c)[-1] for c in curves)
    grid = np.linspace(start, end, GRID_POINTS) if end > start else np.array([end])
    return grid, np.stack([np.interp(grid, x_of(c), c.smoothed(window)) for c in curves])


def plot_learning_curves(
    groups: Mapping[str, Sequence[str | Path | Curve]],
    out_png: str | Path,
    *,
    thresholds: Sequence[float] = (),
    window: int = SMOOTHING_WINDOW,
    title: str | None = None,
) -> Path:
    """Two panels (return vs episodes, return vs env steps): mean and 95% bootstrap band per group.

    ``groups`` maps a label (an algorithm) to run directories or loaded curves. Runs without a
    finished episode are left out; a group with none is left out of the figure.
    """
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    drawn = 0
    for label, members in groups.items():
        curves = [m if isinstance(m, Curve) else load_curve(m) for m in members]
        curves = [c for c in curves if len(c.returns)]
        if not curves:
            continue
        drawn += 1
        for ax, x_of in zip(axes, (lambda c: c.episodes.astype(float), lambda c: c.steps), strict=True):
            grid, values = _on_grid(curves, x_of, window)
            mean, low, high = bootstrap_interval(values, lambda runs: runs.mean(axis=0))
            (line,) = ax.plot(grid, mean, label=f"{label} (n={len(curves)})")
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    if not drawn:
        raise ValueError("no run has a finished episode to plot")
    for ax, xlabel in zip(axes, ("episodes", "env steps"), strict=True):
        for threshold in thresholds:
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"{threshold:g}", (1, threshold), xycoords=("axes fraction", "data"), ha="right", va="bottom")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"return (mean of last {window} episodes)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    fig.suptitle(title or "learning curves (mean, 95% bootstrap band over seeds)")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    return out_png


def group_runs(run_dirs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Group run directories by the ``algo`` of their ``config.yml`` (else the parent folder's name)."""
    groups: dict[str, list[Path]] = {}
    for run_dir in map(Path, run_dirs):
        config = run_dir / "config.yml"
        algo = (yaml.safe_load(config.read_text()) or {}).get("algo") if config.is_file() else None
        groups.setdefault(algo or run_dir.resolve().parent.name, []).append(run_dir)
    return groups


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m relax_rl.plot RUN_DIR [RUN_DIR ...] --out FILE.png``."""
    parser = argparse.ArgumentParser(prog="python -m relax_rl.plot", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--window", type=int, default=SMOOTHING_WINDOW, help="episodes in the trailing mean")
    args = parser.parse_args(argv)
    try:
        out = plot_learning_curves(
            group_runs(args.run_dirs), args.out, thresholds=run_thresholds(args.run_dirs), window=args.window
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
