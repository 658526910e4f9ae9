"""The decomposition of a model's estimators (:func:`diagnose`), their paired variance ratios, and tables of both."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import Tensor

from relax_rl.diagnose.estimates import own_estimator, sample_estimates
from relax_rl.diagnose.parameter_space import parameter_space_statistics
from relax_rl.diagnose.sampling import default_max_age
from relax_rl.diagnose.statistics import Estimate, VarianceDecomposition, jackknife


def ratio_pairs(own: str | None, names: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """``(numerator, denominator, what their variance ratio says)`` for a model whose control-variate
    estimator is ``own`` (None: it has none), among the estimators ``names`` that were sampled."""
    pairs = [("mc_v", "a2c", "what a better state baseline leaves of A2C's")]
    if own is not None:
        pairs += [
            (own, f"{own}_state", "what the action dependence leaves of the control variate's state part"),
            (f"{own}_state", "a2c", "what the control variate's state part leaves of A2C's"),
            (own, "a2c", "the model's estimator against A2C's"),
        ]
    if "a2c_exact_v" in names:
        pairs += [
            ("a2c_exact_v", "a2c", "what the exact V leaves of A2C's"),
            ("mc_v", "a2c_exact_v", "the Monte Carlo V against the exact one (1 if it is right)"),
        ]
        if own is not None:
            pairs.append((own, "a2c_exact_v", "the model's estimator against A2C with the exact V"))
        if f"{own}_exact_v" in names:  # not where ĉ is the whole baseline: then there is no V to make exact
            pairs.append((f"{own}_exact_v", own, "what the exact V leaves of the model's estimator"))
    if "exact_q" in names:
        pairs.append(("exact_q", "a2c", "what the exact action value leaves of A2C's"))
    return pairs


@dataclass(frozen=True)
class Diagnosis:
    """The variance decomposition of each estimator, and paired ratios of their variances."""

    estimators: dict[str, VarianceDecomposition]
    ratios: dict[str, dict[str, Estimate]]
    """``"x/y"`` → ``{"total": Var(x)/Var(y), "action": their action parts' ratio}``, from the same samples."""
    own: str | None
    """The model's control-variate estimator, if it has one."""
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "estimators": {name: d.to_dict() for name, d in self.estimators.items()},
            "ratios": {name: {part: r.to_dict() for part, r in parts.items()} for name, parts in self.ratios.items()},
        }


def random_state_kept(model: BaseAlgorithm) -> AbstractContextManager:
    """Forks torch's random state (and that of the model's CUDA device): draws made inside leave the caller's
    random stream, such as training's, as it was."""
    return th.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else [])


def diagnose(
    model: BaseAlgorithm,
    env: gym.Env,
    n_states: int = 256,
    n_actions: int = 4,
    n_continuations: int = 4,
    seed: int = 0,
    max_age: int | None = None,
    n_baseline: int = 8,
) -> Diagnosis:
    """The variance decomposition of each estimator the model supports, at its current policy, with a Monte
    Carlo state value from ``n_baseline`` independent returns per state."""
    with random_state_kept(model):
        th.manual_seed(seed)
        rows = sample_estimates(model, env, n_states, n_actions, n_continuations, max_age, seed, n_baseline)
    statistics = parameter_space_statistics(model, rows)
    parts = {name: stats.parts() for name, stats in statistics.items()}
    own = own_estimator(model)
    ratios = {  # on the same states, so each leave-one-state-out ratio pairs like with like
        f"{numerator}/{denominator}": {
            part: jackknife(parts[numerator][part] / parts[denominator][part]) for part in ("total", "action")
        }
        for numerator, denominator, _ in ratio_pairs(own, list(parts))
    }
    settings = {
        "n_states": n_states,
        "n_actions": n_actions,
        "n_continuations": n_continuations,
        "n_baseline": n_baseline,
        "max_age": max_age or default_max_age(env),
        "seed": seed,
        "n_steps": model.n_steps,
        "gamma": model.gamma,
        "gae_lambda": model.gae_lambda,
        "pg_estimator": own or "a2c",
        "episode_end_fraction": float(rows.ended.mean()),
        # The rare rows: how much of A2C's variance the states where some window ended carry.
        "episode_end_share_of_a2c": _share(statistics["a2c"].spread(), rows.ended.any((1, 2))),
    }
    estimators = {name: VarianceDecomposition.from_parts(p) for name, p in parts.items()}
    return Diagnosis(estimators, ratios, own, settings)


def _share(spread: Tensor, selected: np.ndarray) -> float:
    total = spread.sum().item()
    return spread[th.as_tensor(selected)].sum().item() / total if total > 0 else float("nan")


def format_table(result: Diagnosis) -> str:
    """Markdown tables: the parts of each estimator's variance, then the paired ratios, all ± SE."""
    lines = [
        "| estimator | total | state | action | residual | action fraction |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in result.estimators.items():
        lines.append(f"| {name} | {d.total} | {d.state} | {d.action} | {d.residual} | {d.action_fraction:.2f} |")
    lines += ["", "| variance ratio | total | action part | reads |", "|---|---|---|---|"]
    for numerator, denominator, meaning in ratio_pairs(result.own, list(result.estimators)):
        parts = result.ratios[f"{numerator}/{denominator}"]
        lines.append(f"| {numerator}/{denominator} | {parts['total']:.3f} | {parts['action']:.3f} | {meaning} |")
    return "\n".join(lines)
