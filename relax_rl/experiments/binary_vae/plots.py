"""ELBO and gradient-variance curves of one or several runs, as PNG files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure

from relax_rl.experiments.binary_vae.gradients import ESTIMATORS
from relax_rl.experiments.binary_vae.training import History


def plot_curves(runs: Mapping[str, History], out: Path, prefix: str) -> list[Path]:
    """``{prefix}_elbo.png`` (training and validation ELBO) and ``{prefix}_log_var.png``; one line per run."""
    out.mkdir(parents=True, exist_ok=True)
    return [_plot_elbo(runs, out / f"{prefix}_elbo.png"), _plot_log_var(runs, out / f"{prefix}_log_var.png")]


def _colour(i: int, name: str) -> str:
    """One colour per estimator across every figure; other labels by position."""
    return f"C{ESTIMATORS.index(name)}" if name in ESTIMATORS else f"C{i}"


def _plot_elbo(runs: Mapping[str, History], path: Path) -> Path:
    fig = Figure(figsize=(11, 4))
    ax_train, ax_valid = fig.subplots(1, 2, sharey=True)
    for i, (name, h) in enumerate(runs.items()):
        ax_train.plot(h.step, h.train_elbo, color=_colour(i, name), lw=1, label=name)
        ax_valid.plot(h.step, h.valid_elbo, color=_colour(i, name), lw=1, label=name)
    ax_train.set(xlabel="step", ylabel="ELBO (nats)", title="training ELBO (mean over each interval)")
    ax_valid.set(xlabel="step", title="validation ELBO (one sample per image)")
    _limit_to_later_values(ax_train, [v for h in runs.values() for v in h.train_elbo + h.valid_elbo])
    ax_train.legend()
    return _save(fig, path)


def _plot_log_var(runs: Mapping[str, History], path: Path) -> Path:
    layers = max(len(v) for h in runs.values() for v in h.log_var)
    fig = Figure(figsize=(5.5 * layers, 4))
    axes = fig.subplots(1, layers, squeeze=False)[0]
    for layer, ax in enumerate(axes):
        for i, (name, h) in enumerate(runs.items()):
            points = [(s, v[layer]) for s, v in zip(h.step, h.log_var, strict=True) if v[layer] is not None]
            ax.plot([s for s, _ in points], [v for _, v in points], color=_colour(i, name), lw=1, label=name)
        ax.set(xlabel="step", ylabel="log Var(∂ELBO/∂ℓ)", title=f"layer {layer + 1}: logit-gradient log-variance")
    axes[0].legend()
    return _save(fig, path)


def _limit_to_later_values(ax, values: list[float]) -> None:
    """Clip the first evaluations' very low ELBOs, which would flatten every later difference."""
    if len(values) > 4:
        ordered = sorted(values)
        low, high = ordered[len(ordered) // 10], ordered[-1]
        ax.set_ylim(low - 0.1 * (high - low), high + 0.05 * (high - low))


def _save(fig: Figure, path: Path) -> Path:
    # A bare Figure renders PNGs with the Agg canvas and never touches pyplot's global state.
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
