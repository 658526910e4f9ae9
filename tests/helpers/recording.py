"""Recording what an update's θ gradient uses, for the agent-level unbiasedness tests."""

from __future__ import annotations

import torch

from relax_rl import RelaxA2C


def record_theta_estimates(model: RelaxA2C) -> list[torch.Tensor]:
    """Records ĝ^ℓ as each update's θ gradient uses it: the first estimate of every ``train``. Later ones,
    on the replay, train φ and are not what θ steps with."""
    estimates: list[torch.Tensor] = []
    estimator = model.policy.estimator
    estimate, train = estimator.estimate, model.train
    state = {"first": False}

    def recording(*args, **kwargs):
        surrogate, g_logits = estimate(*args, **kwargs)
        if state["first"]:
            estimates.append(g_logits.detach().clone())
            state["first"] = False
        return surrogate, g_logits

    def recording_train():
        state["first"] = True
        train()

    estimator.estimate, model.train = recording, recording_train
    return estimates
