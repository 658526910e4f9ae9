"""Does a faster-moving V keep up with the policy? ``V`` (ψ) with its own learning rate, ``k`` times θ's.

A probe of issue 21's "state baseline that does not lag": θ and ψ share one RMSprop in A2C and RelaxA2C, so
the replayed ``V`` steps at θ's learning rate (``vf_coef`` scales its loss, which RMSprop normalises away). Here
ψ gets a parameter group of its own at ``k`` times θ's rate (the schedule applied to both), and the critics'
fit is recorded against the exact ``V*`` of target matching, as ``run.py`` records it.

    for k in 1 2 4; do python benchmarks/critic_replay/v_learning_rate.py --ratio $k; done

One ratio per process: the patch applies to the whole process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from run import HERE, run_one, study_meta

from relax_rl import RelaxA2C


def give_v_its_own_learning_rate(ratio: float) -> None:
    """Patches RelaxA2C (this process only): ψ in a parameter group of its own, at ``ratio`` × θ's rate."""
    setup_model = RelaxA2C._setup_model

    def setup(self: RelaxA2C) -> None:
        setup_model(self)
        psi = {id(p) for p in self.policy.critic_parameters()}
        theta = [p for p in self.policy.actor_critic_parameters() if id(p) not in psi]
        defaults = self.policy.optimizer.param_groups[0]
        groups = [dict(defaults, params=theta), dict(defaults, params=self.policy.critic_parameters())]
        self.policy.optimizer = type(self.policy.optimizer)(groups)

    def update_learning_rate(self: RelaxA2C, optimizers: object) -> None:
        lr = self.lr_schedule(self._current_progress_remaining)
        self.policy.optimizer.param_groups[0]["lr"] = lr
        self.policy.optimizer.param_groups[1]["lr"] = ratio * lr

    RelaxA2C._setup_model = setup
    RelaxA2C._update_learning_rate = update_learning_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="relax_rl/TargetMatching-D64-v0")
    parser.add_argument("--variants", nargs="+", default=["a2c_replay", "relax_phi_on_rollout"])
    parser.add_argument("--ratio", type=float, required=True, help="ψ's learning rate over θ's")
    parser.add_argument("--lr", type=float, default=5.6e-3)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=600_000)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=HERE / "v_learning_rate.jsonl")
    args = parser.parse_args()
    sidecar = args.out.with_suffix(".meta.json")
    if not sidecar.exists():
        sidecar.write_text(json.dumps({"results": args.out.name, **study_meta("v_learning_rate.py", args)}, indent=2))
    ratio = args.ratio
    give_v_its_own_learning_rate(ratio)
    for variant in args.variants:
        for seed in args.seeds:
            result = run_one(args.env, variant, args.lr, seed, args.budget, args.threshold)
            result.pop("curve", None)
            result["v_lr_ratio"] = ratio
            print(f"{variant} k={ratio:g} s{seed}: {result['updates']} updates", flush=True)
            with args.out.open("a") as out:
                out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
