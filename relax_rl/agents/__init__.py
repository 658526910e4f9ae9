"""Stable-Baselines3 algorithms and policies that use RELAX control variates."""

from relax_rl.agents.action_spaces import UnsupportedActionSpaceError
from relax_rl.agents.policies import RelaxActorCriticCnnPolicy, RelaxActorCriticPolicy, RelaxMultiInputActorCriticPolicy
from relax_rl.agents.relax_a2c import RelaxA2C

__all__ = [
    "RelaxA2C",
    "RelaxActorCriticCnnPolicy",
    "RelaxActorCriticPolicy",
    "RelaxMultiInputActorCriticPolicy",
    "UnsupportedActionSpaceError",
]
