"""A model's whole trainable state, to compare two models (a save and its load, two runs) exactly."""

from __future__ import annotations

import torch

from relax_rl import RelaxA2C


def parameters_and_optimiser_states(model: RelaxA2C) -> dict[str, torch.Tensor]:
    """The policy's tensors (θ, φ, V, τ) and both optimisers' states, by name."""
    state = {f"policy.{k}": v for k, v in model.policy.state_dict().items()}
    for name, opt in [("policy_opt", model.policy.optimizer), ("cv_opt", model.cv_optimizer)]:
        for pid, pstate in opt.state_dict()["state"].items():
            state.update({f"{name}.{pid}.{k}": torch.as_tensor(v) for k, v in pstate.items()})
    return state
