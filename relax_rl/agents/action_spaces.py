"""One object per kind of action space (SB3's pattern, as in ``make_proba_distribution``): everything the
policy, the update, the rollouts and ``diagnose`` need to know about it, and the errors for spaces RelaxA2C
cannot handle.

The policy hands the update one row of *distribution parameters* per step: the logits for discrete spaces
(one-hot blocks for ``Discrete`` and ``MultiDiscrete``, one logit per bit for ``MultiBinary``), and
``[μ, log σ]`` (:func:`split_mean_log_std`) for a ``Box``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch as th
from gymnasium import spaces
from torch import Tensor

from relax_rl.estimators import (
    BernoulliRelaxation,
    CategoricalRelaxation,
    GaussianReparam,
    MultiCategoricalRelaxation,
    Relaxation,
)


class UnsupportedActionSpaceError(ValueError):
    """Raised for an action space that RELAX-A2C has no relaxation for."""


SUPPORTED_ACTION_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Box)


def split_mean_log_std(params: Tensor) -> tuple[Tensor, Tensor]:
    """A Gaussian policy's per-step distribution parameters ``[μ, log σ]``, split into ``μ`` and ``log σ``."""
    mean, log_std = params.chunk(2, dim=-1)
    return mean, log_std


class ActionSpaceKind(ABC):
    """What one kind of action space means to RelaxA2C.

    :param space: the env's action space
    """

    #: The relaxation of the policy's action distribution, which ``ĉ_φ`` reads the action through.
    relaxation: Relaxation | GaussianReparam
    #: Whether the actions are continuous (a ``Box``): nothing to relax, no temperature, no probabilities.
    continuous = False
    #: ``q̂``'s default head for the all-action form.
    all_action_head = "linear"

    def __init__(self, space: spaces.Space):
        self.space = space

    @property
    @abstractmethod
    def z_dim(self) -> int:
        """The size of what ``ĉ`` reads of the action: the logits' width, or the action's for a ``Box``."""

    @property
    def params_dim(self) -> int:
        """The size of one row of distribution parameters."""
        return self.z_dim

    @property
    @abstractmethod
    def n_sub_actions(self) -> int:
        """How many sub-actions one action has: 1 for ``Discrete``, one per dimension otherwise."""

    def to_relaxation(self, actions: Tensor) -> Tensor:
        """Rollout-buffer actions (float) in the dtype and shape the relaxation reads."""
        return actions.float().reshape(actions.shape[0], -1)

    def to_env(self, actions: Tensor) -> Tensor:
        """The policy's actions as the env executes them."""
        return actions

    def logged(self, params: Tensor) -> dict[str, Tensor]:
        """Scalars of this kind's distribution worth logging after an update (``train/<key>``)."""
        return {}


class DiscreteActions(ActionSpaceKind):
    """``Discrete(n)``: one categorical, ``n`` logits."""

    def __init__(self, space: spaces.Discrete):
        super().__init__(space)
        self.relaxation = CategoricalRelaxation()

    @property
    def z_dim(self) -> int:
        return int(self.space.n)

    @property
    def n_sub_actions(self) -> int:
        return 1

    def to_relaxation(self, actions: Tensor) -> Tensor:
        return actions.long().flatten()


class MultiDiscreteActions(ActionSpaceKind):
    """``MultiDiscrete(nvec)``, flat: independent categoricals, their logits concatenated."""

    def __init__(self, space: spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise UnsupportedActionSpaceError(
                f"MultiDiscrete action spaces must be flat, got nvec of shape {space.nvec.shape}; "
                "flatten the action space with a wrapper"
            )
        super().__init__(space)
        self.relaxation = MultiCategoricalRelaxation([int(n) for n in space.nvec])

    @property
    def z_dim(self) -> int:
        return int(self.space.nvec.sum())

    @property
    def n_sub_actions(self) -> int:
        return len(self.space.nvec)

    def to_relaxation(self, actions: Tensor) -> Tensor:
        return actions.long()


class MultiBinaryActions(ActionSpaceKind):
    """``MultiBinary``: independent Bernoullis, one logit per bit."""

    # Each bit's slope read from its own logit fits where one linear map of the features does not: on 64- and
    # 256-bit target matching (benchmarks/critic_replay/README.md, issue 21). One-hot blocks showed no such gain.
    all_action_head = "per_sub_action"

    def __init__(self, space: spaces.MultiBinary):
        super().__init__(space)
        self.relaxation = BernoulliRelaxation()

    @property
    def z_dim(self) -> int:
        return int(np.prod(self.space.shape))

    @property
    def n_sub_actions(self) -> int:
        return self.z_dim


class BoxActions(ActionSpaceKind):
    """A flat ``Box`` with finite bounds: a diagonal Gaussian, whose samples are stored as drawn and clipped
    to the bounds for the env only (LAX rebuilds the noise from the stored, unclipped action)."""

    continuous = True

    def __init__(self, space: spaces.Box):
        if len(space.shape) != 1:
            raise UnsupportedActionSpaceError(
                f"Box action spaces must be flat, got shape {space.shape}; "
                "reshape the actions to one dimension with a gymnasium.ActionWrapper"
            )
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise UnsupportedActionSpaceError(
                f"Box action spaces need finite bounds (the Gaussian policy's actions are clipped to them "
                f"for the environment), got low={space.low}, high={space.high}; "
                "give the action space finite low and high, e.g. with a gymnasium.ActionWrapper"
            )
        super().__init__(space)
        self.relaxation = GaussianReparam()
        self._bounds: dict[th.device, tuple[Tensor, Tensor]] = {}

    @property
    def z_dim(self) -> int:
        return int(self.space.shape[0])

    @property
    def params_dim(self) -> int:
        return 2 * self.z_dim  # [μ, log σ]

    @property
    def n_sub_actions(self) -> int:
        return self.z_dim

    def to_env(self, actions: Tensor) -> Tensor:
        if actions.device not in self._bounds:  # built once per device: no host-to-device copy per step
            self._bounds[actions.device] = tuple(
                th.as_tensor(bound, dtype=actions.dtype, device=actions.device)
                for bound in (self.space.low, self.space.high)
            )
        return th.clamp(actions, *self._bounds[actions.device])

    def logged(self, params: Tensor) -> dict[str, Tensor]:
        return {"std": split_mean_log_std(params)[1].detach().exp().mean()}


_KINDS: dict[type[spaces.Space], type[ActionSpaceKind]] = {
    spaces.Discrete: DiscreteActions,
    spaces.MultiDiscrete: MultiDiscreteActions,
    spaces.MultiBinary: MultiBinaryActions,
    spaces.Box: BoxActions,
}


def action_space_kind(space: spaces.Space) -> ActionSpaceKind:
    """The object for ``space``'s kind; raises :class:`UnsupportedActionSpaceError` for unusable spaces."""
    for space_type, kind in _KINDS.items():
        if isinstance(space, space_type):
            return kind(space)
    names = ", ".join(space.__name__ for space in SUPPORTED_ACTION_SPACES)
    raise UnsupportedActionSpaceError(f"RelaxA2C supports {names} action spaces, got {space}")
