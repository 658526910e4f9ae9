"""Same maths, whatever the speed-ups: the parameters after a few updates equal those the code made before them.

``tests/data/update_reference.pt`` holds, for each configuration below, every parameter of the policy
(θ, ψ and φ) after ``N_UPDATES`` updates, as the code at the commit named in it produced them. A change
that is meant to keep the maths (fused optimisers, fewer device waits, skipped diagnostics) must leave
them equal up to float rounding; one that changes the algorithm must regenerate the file, on purpose:

    .venv/bin/python tests/test_update_reference.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

from relax_rl import RelaxA2C

REFERENCE = Path(__file__).resolve().parent / "data" / "update_reference.pt"
N_UPDATES = 12
CONFIGS: dict[str, tuple[str, dict]] = {
    "default-cartpole": ("CartPole-v1", {}),  # φ by regression on each rollout, V in 4 replay steps (since 2026-12-06)
    "two-v-steps-cartpole": ("CartPole-v1", {"critic_steps": 2}),  # faster on CartPole, worse on LunarLander
    "previous-default-cartpole": ("CartPole-v1", {"cv_objective": "regression+logits", "critic_steps": 4}),
    "phi-on-replay-cartpole": (  # the default before 2026-12-04
        "CartPole-v1",
        {"cv_data": "replay", "cv_objective": "regression+logits", "critic_steps": 4},
    ),
    "no-replay": ("CartPole-v1", {"critic_replay": 0, "cv_objective": "logits"}),
    "control": ("CartPole-v1", {"pg_estimator": "a2c"}),
    "params-objective": ("CartPole-v1", {"critic_replay": 0, "cv_objective": "params", "cv_steps": 2}),
    "default-bits": ("relax_rl/TargetMatching-D8-v0", {}),  # ĉ the whole baseline, per-bit q̂ of 16 units (12-07)
    "all-action-bits": (  # the options as they were before bits had defaults of their own
        "relax_rl/TargetMatching-D8-v0",
        {
            "pg_estimator": "all_action",
            "baseline": "value",
            "cv_data": "rollout",
            "cv_steps": 1,
            "policy_kwargs": {"cv_arch": "linear"},
        },
    ),
    "per-sub-action-corrected": (
        "relax_rl/TargetMatching-D8-v0",
        {
            "pg_estimator": "all_action",
            "baseline": "value",
            "cv_data": "rollout",
            "cv_objective": "regression",
            "cv_steps": 2,
            "critic_target": "corrected",
            "policy_kwargs": {"cv_arch": "per_sub_action", "cv_sub_action_net_arch": [32]},  # as before bits' design
        },
    ),
    "multidiscrete-target-matching": ("relax_rl/TargetMatchingMultiDiscrete-D8-v0", {}),
    "lax-pendulum": ("Pendulum-v1", {}),
}


def parameters_after_updates(name: str) -> list[torch.Tensor]:
    import relax_rl.envs  # noqa: F401  (registers target matching)

    env_id, kwargs = CONFIGS[name]
    torch.set_num_threads(1)
    model = RelaxA2C("MlpPolicy", make_vec_env(env_id, n_envs=4, seed=0), seed=0, device="cpu", **kwargs)
    model.learn(N_UPDATES * model.n_steps * model.n_envs)
    return [p.detach().clone() for p in model.policy.parameters()]


@pytest.mark.parametrize("name", CONFIGS)
def test_parameters_after_updates_equal_the_reference(name: str) -> None:
    reference = torch.load(REFERENCE)["parameters"][name]
    now = parameters_after_updates(name)
    assert len(now) == len(reference)
    for i, (a, b) in enumerate(zip(now, reference, strict=True)):
        # Float rounding where the order of operations differs (another CPU's kernels); a change in the maths
        # moves parameters by far more after 12 updates.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=lambda m, i=i: f"{name}, parameter {i}: {m}")


if __name__ == "__main__":
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    REFERENCE.parent.mkdir(exist_ok=True)
    torch.save({"commit": commit, "parameters": {name: parameters_after_updates(name) for name in CONFIGS}}, REFERENCE)
    print(f"wrote {REFERENCE} from commit {commit}", file=sys.stderr)
