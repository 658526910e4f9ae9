"""RelaxA2C's own options: their values and the checks between them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from relax_rl.agents.action_spaces import ActionSpaceKind, MultiBinaryActions
from relax_rl.estimators import AFFINE

#: φ's objectives: the variance of ĝ (docs/design.md §4), a regression of ĉ on the advantage, or their sum.
CV_OBJECTIVES = ("logits", "params", "regression", "regression+logits", "regression+params")
#: What ``V`` regresses on a replayed row (docs/design.md §4b): the λ-return stored at collection; the λ-return
#: recomputed with the current ``V``; V-trace, which also weights each step by ``min(1, π/μ)`` for the current
#: policy; or the stored return with the row's action effect under the current ĉ, ``w · (ind(a) − π)``, swapped
#: for its mean under the current policy (zero).
CRITIC_TARGETS = ("returns", "recomputed", "vtrace", "corrected")
#: Where φ trains when the critic has a replay: on each rollout, before θ steps (the rows and ĝ that θ's
#: gradient came from), or on minibatches of the replay after V.
CV_DATA = ("rollout", "replay")
#: Where the baseline ``c`` gets its state part: ``V`` (``c = V + ĉ``, A2C's advantage), or ``ĉ`` itself, regressed
#: on the return (``c = ĉ``, its state part ``E_π[ĉ]``; ``V`` only bootstraps the return).
BASELINES = ("value", "control_variate")
#: RelaxA2C's design for the options left None, by kind of action space (docs/design.md §4, §9). Where every
#: sub-action is a bit: the all-action form with ĉ as the whole baseline, its per-bit ``q̂`` fitted on the
#: replay after V, 4 steps, its per-bit network 16 units wide: the policy's 32 take twice the time at 256 bits
#: and learn no faster (benchmarks/critic_replay/README.md, "Defaults by action space", "A narrower per-bit
#: head"). Elsewhere, or with another estimator or a head the all-action form cannot sum exactly: RELAX with
#: ``c = V + ĉ``, ĉ fitted on each rollout.
DESIGNS: dict[type[ActionSpaceKind], dict[str, Any]] = {
    MultiBinaryActions: {
        "pg_estimator": "all_action",
        "baseline": "control_variate",
        "cv_data": "replay",
        "cv_steps": 4,
        "policy_kwargs": {"cv_sub_action_net_arch": [16]},
    }
}
OTHER_DESIGN = {"pg_estimator": "relax", "baseline": "value", "cv_data": "rollout", "cv_steps": 1}


def design_for(
    kind: ActionSpaceKind | None, given: Mapping[str, Any], policy_kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The design options' values: ``given``'s, and for those left None ``kind``'s design, if ``given`` and
    ``policy_kwargs`` choose nothing it cannot use, else :data:`OTHER_DESIGN`. A design's ``policy_kwargs``, where
    it has them, are its defaults for the policy, below those the caller gives."""
    design = DESIGNS.get(type(kind), OTHER_DESIGN)
    head_fits = policy_kwargs.get("cv_arch") in (None, *AFFINE) and not policy_kwargs.get("cv_relaxed_input")
    if given.get("pg_estimator") not in (None, design["pg_estimator"]) or not head_fits:
        design = OTHER_DESIGN
    return {**design, **{name: value for name, value in given.items() if value is not None}}


def check_options(
    *,
    cv_objective: str,
    cv_data: str,
    critic_target: str,
    critic_half_life: float | None,
    baseline: str,
    pg_estimator: str,
    counts: Mapping[str, tuple[Any, int]],
    batch_sizes: Mapping[str, int | None],
) -> None:
    """Raise ValueError for the first option value RelaxA2C cannot take (``counts``: name → (value, minimum))."""
    for name, value, choices in (
        ("cv_objective", cv_objective, CV_OBJECTIVES),
        ("cv_data", cv_data, CV_DATA),
        ("critic_target", critic_target, CRITIC_TARGETS),
        ("baseline", baseline, BASELINES),
    ):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    if baseline == "control_variate" and pg_estimator == "a2c":
        raise ValueError(
            "baseline 'control_variate' takes the state value out of the advantage and leaves the baseline to ĉ, "
            "which pg_estimator 'a2c' does not read: use pg_estimator 'relax' or 'all_action', or baseline 'value'"
        )
    if critic_half_life is not None and not critic_half_life > 0:
        raise ValueError(f"critic_half_life must be a positive number of rollouts (or None), got {critic_half_life}")
    for name, (value, low) in counts.items():
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, size in batch_sizes.items():
        if size is not None and size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size}")


def check_critic_target(
    critic_target: str,
    *,
    replayed: bool,
    control_variate: nn.Module,
    normalize_advantage: bool,
    uses_control_variate: bool,
    cv_objective: str,
) -> None:
    """The options ``critic_target`` needs besides itself, once the policy is built."""
    if critic_target != "returns" and not replayed:
        raise ValueError(f"critic_target {critic_target!r} is for a replayed critic: set critic_replay > 0")
    if critic_target != "corrected":
        return
    if not hasattr(control_variate, "slopes_and_offset"):
        raise ValueError(
            "critic_target 'corrected' reads ĉ's slopes: use the policy_kwargs cv_arch linear, centred or "
            "per_sub_action"
        )
    if normalize_advantage:
        raise ValueError("critic_target 'corrected' needs ĉ in the returns' units: set normalize_advantage=False")
    if not uses_control_variate and cv_objective != "regression":
        raise ValueError(
            "with pg_estimator 'a2c', ĉ trains only for critic_target 'corrected', by regression: "
            "set cv_objective='regression'"
        )


def check_owned_policy_kwargs(policy_kwargs: Mapping[str, Any], owned: Mapping[str, Any]) -> None:
    """The policy options the algorithm sets (its estimator, ĉ's horizon input) must not be set otherwise in
    ``policy_kwargs``; a saved model's policy_kwargs hold the same values, which is fine."""
    for key, value in owned.items():
        if policy_kwargs.get(key, value) != value:
            source = "cv_horizon_input and n_steps" if key == "cv_horizon" else key
            raise ValueError(
                f"policy_kwargs {key}={policy_kwargs[key]!r} conflicts with RelaxA2C's own setting ({value!r}, "
                f"from its {source}): set that on RelaxA2C and leave {key} out of policy_kwargs"
            )
