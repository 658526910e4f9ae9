"""Exact values for environments whose reward is known in closed form: the ceiling every learned critic is
measured against (docs/design.md §4b, exact references).

An :class:`AffineReward` environment pays ``r(s, a) = w*(s) · ind(a) + c*(s)``, where ``ind(a)`` is the action's
indicator: its bits (``MultiBinary``) or one-hot blocks (``Discrete``, ``MultiDiscrete``), the layout of the
policy's logits. Its actions do not change the states that follow. Then, under a policy with ``p = E_π[ind(a)]``:

- the exact action effect at any episode length is ``A*(s, a) = w*(s) · (ind(a) − p(s))``: the rest of the return
  does not depend on ``a``;
- with one-step episodes the exact state value is ``V*(s) = w*(s) · p(s) + c*(s)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor
from torch import Tensor


class AffineReward(ABC):
    """The closed form of an environment's reward, affine in the action's indicator."""

    #: Episodes of one step: then ``V*`` is known exactly, not only the action effects.
    one_step: bool

    @abstractmethod
    def coefficients(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(w*, c*)`` at each observation: ``(batch, indicator size)`` and ``(batch,)``."""

    def action_effects(self, obs: Tensor, mean_indicator: Tensor, indicator: Tensor) -> Tensor:
        """``A*(s, a) = w*(s) · (ind(a) − p(s))``, one value per row."""
        slopes, _ = self.coefficients(obs)
        return (slopes * (indicator - mean_indicator)).sum(-1)

    def state_values(self, obs: Tensor, mean_indicator: Tensor) -> Tensor:
        """``V*(s) = E_π[r | s]``, one value per row (one-step episodes only)."""
        if not self.one_step:
            raise ValueError("V* is known in closed form for one-step episodes only")
        slopes, offset = self.coefficients(obs)
        return (slopes * mean_indicator).sum(-1) + offset


def exact_reference(env: Any) -> AffineReward | None:
    """The :class:`AffineReward` of a gymnasium env, or of the first env of an SB3 vectorised one, or None.

    None also for a vectorised env behind a wrapper that may change what the policy observes
    (``VecNormalize``, frame stacks): the reference reads the env's own observations.
    """
    if isinstance(env, VecEnv):
        if isinstance(env, VecEnvWrapper) and not isinstance(env, VecMonitor):
            return None
        try:
            return env.env_method("exact_reference", indices=[0])[0]
        except (AttributeError, NotImplementedError):  # the env has none, or the VecEnv calls no env methods
            return None
    unwrapped = getattr(env, "unwrapped", env)
    return unwrapped.exact_reference() if hasattr(unwrapped, "exact_reference") else None
