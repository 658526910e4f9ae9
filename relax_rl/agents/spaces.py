"""Which relaxation an action space needs, and the errors for spaces RELAX-A2C cannot handle."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from relax_rl.estimators import (
    BernoulliRelaxation,
    CategoricalRelaxation,
    MultiCategoricalRelaxation,
    Relaxation,
)


class UnsupportedActionSpaceError(ValueError):
    """Raised for an action space that RELAX-A2C has no relaxation for."""


SUPPORTED_ACTION_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def relaxation_for(action_space: spaces.Space) -> tuple[Relaxation, int]:
    """The relaxation of the policy's action distribution, and the size of ``z``.

    ``z`` lives in logit space, so its size is the policy head's output size.
    """
    if isinstance(action_space, spaces.Discrete):
        return CategoricalRelaxation(), int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        if action_space.nvec.ndim != 1:
            raise UnsupportedActionSpaceError(
                f"MultiDiscrete action spaces must be flat, got nvec of shape {action_space.nvec.shape}; "
                "flatten the action space with a wrapper"
            )
        nvec = [int(n) for n in action_space.nvec]
        return MultiCategoricalRelaxation(nvec), sum(nvec)
    if isinstance(action_space, spaces.MultiBinary):
        return BernoulliRelaxation(), int(np.prod(action_space.shape))
    raise UnsupportedActionSpaceError(
        f"RelaxA2C supports Discrete, MultiDiscrete and MultiBinary action spaces, got {action_space}"
    )


def actions_for_relaxation(actions, action_space: spaces.Space):
    """Rollout-buffer actions (float) in the dtype and shape the relaxation expects."""
    if isinstance(action_space, spaces.Discrete):
        return actions.long().flatten()
    if isinstance(action_space, spaces.MultiDiscrete):
        return actions.long()
    return actions.float().reshape(actions.shape[0], -1)
