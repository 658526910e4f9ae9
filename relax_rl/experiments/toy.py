"""The RELAX paper's toy problem (§6.1): minimise ``E_{b~Bern(θ)}[(b − t)²]`` with ``t = 0.499``.

The optimum is ``θ = 0``, but the two values of ``f`` differ by only ``1 − 2t = 0.002``,
so a noisy single-sample gradient easily drowns the signal. Adam (lr 0.01) trains the
Bernoulli logit from 0 (``θ = 0.5``) with one sample per step.

    relax-rl toy --estimator reinforce relax --steps 10000 --seed 0 --json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from relax_rl.estimators import (
    BernoulliRelaxation,
    ControlVariate,
    MLPControlVariate,
    RebarControlVariate,
    apply_gradients,
    concrete,
    rebar,
    reinforce,
    relax,
    variance_loss,
)
from relax_rl.experiments.cli_args import OneLineParser, open_unit, positive_int, progress_steps

ESTIMATORS = ("exact", "reinforce", "concrete", "rebar", "relax")
DTYPE = torch.float64  # gradients are ~1e-3 and their residual noise far smaller: keep float64's headroom
LR = 0.01  # Adam on the logit, as in the paper
# Adam on the control-variate parameters. 0.01 also drives θ down, but RELAX's variance then spikes
# every few thousand steps and θ ends higher (seeds 0, 1, 3); REBAR ends at η ≈ 0 with either.
CV_LR = 0.001
CONCRETE_TEMPERATURE = 0.5
RELAX_HIDDEN = (10,)  # one hidden layer of 10 tanh units: f has two values, a small c_φ suffices
VAR_EVERY = 10  # steps between variance measurements
VAR_SAMPLES = 256  # independent single-sample estimates per measurement
RELAXATION = BernoulliRelaxation()
COLOURS = {name: f"C{i}" for i, name in enumerate(ESTIMATORS)}  # one colour per estimator in every figure


@dataclass(frozen=True)
class ToyProblem:
    """``f(b) = (b − t)²`` for Bernoulli ``b``, with its exact expectation."""

    target: float

    def f(self, b: Tensor) -> Tensor:
        """Loss of hard or relaxed samples of shape ``(batch, 1)``, one value per row."""
        return (b - self.target).pow(2).sum(-1)

    def expected_loss(self, logits: Tensor) -> Tensor:
        """``p (1 − t)² + (1 − p) t²``, one value per row of ``logits``."""
        p = torch.sigmoid(logits)
        return (p * (1 - self.target) ** 2 + (1 - p) * self.target**2).sum(-1)


def make_control_variate(estimator: str, problem: ToyProblem) -> ControlVariate | None:
    """The learnable control variate an estimator needs, or None."""
    if estimator == "rebar":
        return RebarControlVariate(problem.f, RELAXATION).to(DTYPE)
    if estimator == "relax":
        return MLPControlVariate(RELAXATION, z_dim=1, hidden=RELAX_HIDDEN).to(DTYPE)
    return None


def surrogate(estimator: str, logits: Tensor, problem: ToyProblem, cv: ControlVariate | None) -> Tensor:
    """Per-row surrogate whose gradient in ``logits`` is one single-sample estimate of ``∇ E[f]``."""
    if estimator == "exact":
        return problem.expected_loss(logits)
    if estimator == "concrete":
        return concrete(problem.f(RELAXATION.relax(RELAXATION.sample_z(logits), CONCRETE_TEMPERATURE)))
    s = RELAXATION.sample(logits)
    f_b = problem.f(s.b)
    if estimator == "reinforce":
        return reinforce(f_b, s.log_prob)
    if estimator == "rebar":
        return rebar(f_b, s.log_prob, s.z, s.z_tilde, cv)
    return relax(f_b, s.log_prob, s.z, s.z_tilde, cv)


def log_variance(estimator: str, logit: Tensor, problem: ToyProblem, cv: ControlVariate | None) -> float | None:
    """Log of the variance of single-sample estimates at the current ``θ`` and ``φ``.

    None where it is undefined: the exact gradient has none, and a zero estimate has no log.
    """
    if estimator == "exact":
        return None
    # One leaf row per sample: the gradient of the summed surrogate holds each row's own estimate.
    logits = logit.detach().expand(VAR_SAMPLES, 1).clone().requires_grad_()
    (grads,) = torch.autograd.grad(surrogate(estimator, logits, problem, cv).sum(), logits)
    var = grads.var().item()
    return math.log(var) if var > 0 else None


@dataclass
class Run:
    """One estimator's trajectory, its trained control variate and a JSON-ready summary."""

    summary: dict
    theta: list[float]
    loss: list[float]
    var_steps: list[int]
    log_var: list[float | None]
    cv: ControlVariate | None


def train(estimator: str, steps: int, seed: int, target: float, progress: bool = False) -> Run:
    """Optimise the logit for ``steps`` single-sample steps with one estimator."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    problem = ToyProblem(target)
    logit = torch.zeros((), dtype=DTYPE, requires_grad=True)
    opt = torch.optim.Adam([logit], lr=LR)
    cv = make_control_variate(estimator, problem)
    cv_opt = torch.optim.Adam(cv.parameters(), lr=CV_LR) if cv is not None else None
    theta: list[float] = []
    loss: list[float] = []
    var_steps: list[int] = []
    log_var: list[float | None] = []

    def record(step: int) -> None:
        theta.append(torch.sigmoid(logit).item())
        loss.append(problem.expected_loss(logit.view(1, 1)).item())
        if step % VAR_EVERY == 0 or step == steps:
            var_steps.append(step)
            log_var.append(log_variance(estimator, logit, problem, cv))

    record(0)
    for step in progress_steps(steps, estimator, progress):
        grads, var = variance_loss(surrogate(estimator, logit.view(1, 1), problem, cv), [logit])
        if cv_opt is not None:
            # Descend ‖ĝ‖²: unbiasedness makes its φ-gradient that of the estimator's variance.
            cv_opt.zero_grad()
            apply_gradients(cv.parameters(), torch.autograd.grad(var, list(cv.parameters())))
            cv_opt.step()
        logit.grad = grads[0].detach()
        opt.step()
        record(step)

    summary = {
        "estimator": estimator,
        "seed": seed,
        "steps": steps,
        "target": target,
        "theta": theta[-1],
        "loss": loss[-1],
        "log_var": _tail_mean(var_steps, log_var, steps),
        "wall_s": round(time.perf_counter() - start, 3),
    }
    return Run(summary, theta, loss, var_steps, log_var, cv)


def _tail_mean(var_steps: list[int], log_var: list[float | None], steps: int) -> float | None:
    """Mean log-variance over the last 10% of steps (at least the final measurement)."""
    start = steps - max(1, steps // 10)
    tail = [v for s, v in zip(var_steps, log_var, strict=True) if s > start and v is not None]
    return sum(tail) / len(tail) if tail else None


def plot(runs: dict[str, Run], out: Path) -> list[Path]:
    """Write the trajectory, variance and learned-relaxation figures; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [_plot_trajectories(runs, out / "toy_loss_theta.png"), _plot_variance(runs, out / "toy_log_variance.png")]
    if "rebar" in runs or "relax" in runs:
        paths.append(_plot_relaxations(runs, out / "toy_relaxation.png"))
    return paths


def _plot_trajectories(runs: dict[str, Run], path: Path) -> Path:
    fig = Figure(figsize=(11, 4))
    ax_theta, ax_loss = fig.subplots(1, 2)
    for name, run in runs.items():
        ax_theta.plot(run.theta, label=name, lw=1, color=COLOURS[name])
        ax_loss.plot(run.loss, label=name, lw=1, color=COLOURS[name])
    ax_theta.set(xlabel="step", ylabel="θ = σ(logit)", title="θ (optimum 0)")
    ax_loss.set(xlabel="step", ylabel="E[(b − t)²]", title="exact expected loss")
    ax_loss.ticklabel_format(useOffset=False)  # the loss only spans t² … (1 − t)², a 0.002 window
    ax_theta.legend()
    return _save(fig, path)


def _plot_variance(runs: dict[str, Run], path: Path) -> Path:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, run in runs.items():
        steps = [s for s, v in zip(run.var_steps, run.log_var, strict=True) if v is not None]
        if steps:  # exact has no variance
            ax.plot(steps, [v for v in run.log_var if v is not None], label=name, lw=1, color=COLOURS[name])
    ax.set(xlabel="step", ylabel="log Var(ĝ)", title=f"log-variance of the logit gradient ({VAR_SAMPLES} samples)")
    ax.legend()
    return _save(fig, path)


def _plot_relaxations(runs: dict[str, Run], path: Path) -> Path:
    """The paper's figure: each trained ``c(z(u))`` against ``u`` at ``θ = 0.5``, beside ``f(H(z))``."""
    names = [name for name in ("rebar", "relax") if name in runs]
    problem = ToyProblem(runs[names[0]].summary["target"])
    u = torch.linspace(0.001, 0.999, 500, dtype=DTYPE).unsqueeze(-1)
    z = torch.log(u) - torch.log1p(-u)  # logit 0, i.e. θ = 0.5
    fig = Figure(figsize=(5.5 * len(names), 4))
    # Own y-axes: the two control variates may live on very different scales.
    for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names, strict=True):
        ax.plot(u, problem.f(RELAXATION.hard(z)), "k--", lw=1, label="f(H(z))")
        with torch.no_grad():
            ax.plot(u, runs[name].cv(z), color=COLOURS[name], label=f"c(z) after {runs[name].summary['steps']} steps")
        ax.set(xlabel="u,  z = logit(u)", ylabel="control variate", title=_describe(name, runs[name].cv))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.legend()
    return _save(fig, path)


def _describe(name: str, cv: ControlVariate) -> str:
    """A title with the learned scalars of a trained control variate."""
    if name == "rebar":
        return f"REBAR η f(σ(z/λ)): η = {cv.eta.item():.3g}, λ = {cv.temperature().item():.3g}"
    return f"RELAX MLP, hidden={RELAX_HIDDEN}, on σ(z/τ): τ = {cv.temperature().item():.3g}"


def _save(fig: Figure, path: Path) -> Path:
    # A bare Figure renders PNGs with the Agg canvas and never touches pyplot's global state.
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def parse_args(argv: list[str] | None = None, prog: str = "relax-rl toy") -> argparse.Namespace:
    """Command-line options; bad values exit with code 2 and a one-line message."""
    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--estimator", nargs="+", required=True, choices=ESTIMATORS, help="one or more estimators")
    parser.add_argument("--steps", type=positive_int, default=10_000, help="optimisation steps (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=open_unit, default=0.499, help="t in (0, 1) (default 0.499)")
    parser.add_argument("--out", type=Path, help="directory for the PNG figures")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "relax-rl toy") -> None:
    """Run the chosen estimators, then print a summary (or JSON) and write figures if asked."""
    args = parse_args(argv, prog)
    torch.set_num_threads(1)  # scalar-sized tensors: extra threads only add overhead
    names = list(dict.fromkeys(args.estimator))  # a repeated name would only overwrite its own result
    runs = {name: train(name, args.steps, args.seed, args.target, progress=not args.json) for name in names}
    figures = plot(runs, args.out) if args.out is not None else []
    if args.json:
        summaries = {name: run.summary for name, run in runs.items()}
        print(json.dumps(summaries[names[0]] if len(names) == 1 else summaries))
        return
    for s in (run.summary for run in runs.values()):
        log_var = "n/a" if s["log_var"] is None else f"{s['log_var']:.2f}"
        numbers = f"θ = {s['theta']:.4f}, loss = {s['loss']:.6f}, log-var = {log_var}"
        print(f"{s['estimator']:>9}: {numbers} ({s['wall_s']:.1f} s)")
    for path in figures:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
