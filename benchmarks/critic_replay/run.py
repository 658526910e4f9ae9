"""Issue 12's study: what the critic's replay gives, and what the action dependence adds on top.

Every run is one (variant, learning rate, seed) at SB3's A2C setting (8 envs x 5 steps), trained until
the 100-episode mean return of the training episodes reaches the env's threshold, or the budget runs
out (censored). Variants:

- ``a2c``: SB3's own A2C at its defaults (RMSprop; only the learning rate varies in the grid).
- ``a2c_replay``: RelaxA2C with ``pg_estimator="a2c"``: A2C's estimator, the critic on a replay. The
  honest control: the same critic training as the two below.
- ``relax_replay``: RELAX, ``ĉ`` (MLP on features, softmax(z/τ), h) on the same replay.
- ``all_action_replay``: the all-action form, ``q̂`` linear in the action's one-hot / bits, same replay.

Results go to ``results.jsonl`` (one line per run, appended as runs finish: a killed study resumes
where it stopped). ``aggregate.py`` makes the tables and plots.

    .venv/bin/python benchmarks/critic_replay/run.py --env CartPole-v1 --seeds 0 1 2 --lrs 3.5e-4 7e-4 1.4e-3 2.8e-3
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from relax_rl import RelaxA2C
from relax_rl.diagnose import critic_fit
from relax_rl.envs import AffineReward, exact_reference, get_spec, make_vec_env
from relax_rl.estimators import reinforce
from relax_rl.provenance import provenance

HERE = Path(__file__).resolve().parent
#: The replay of the probe in issue 12: 32 rollouts, 4 minibatch steps of 256 rows for V; one for φ
#: (four made RELAX 8x slower than A2C per timestep).
#: φ (where a variant trains one) on replay minibatches after V: RelaxA2C's default until 2026-12-04, pinned so
#: that the variants keep meaning what they measured; the default is now ``relax_phi_on_rollout``'s.
REPLAY = {"critic_replay": 32, "critic_steps": 4, "critic_batch_size": 256, "cv_data": "replay"}
Q_CRITIC = {
    "pg_estimator": "all_action",
    "baseline": "control_variate",
    "cv_objective": "regression",
    "cv_horizon_input": True,
    "policy_kwargs": {"cv_arch": "per_sub_action"},
    **REPLAY,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "a2c": {},
    "a2c_replay": {"pg_estimator": "a2c", **REPLAY},
    "relax_replay": {
        "pg_estimator": "relax",
        "cv_objective": "regression+logits",
        "cv_steps": 1,
        "cv_horizon_input": True,
        **REPLAY,
    },
    "all_action_replay": {
        "pg_estimator": "all_action",
        "cv_objective": "regression",
        "cv_steps": 1,
        "cv_horizon_input": True,
        **REPLAY,
    },
    # Issue 21's designs. Centred: q̂ = w·(ind(a) − π) + b, so a slope error cannot move the state part.
    "all_action_centred": {
        "pg_estimator": "all_action",
        "cv_objective": "regression",
        "cv_horizon_input": True,
        "policy_kwargs": {"cv_arch": "centred"},
        **REPLAY,
    },
    # Per-sub-action slopes from each sub-action's own logit, 16 φ steps, and V trained on r − q̂'s action
    # effect ("corrected"), which ĉ in the returns' units needs.
    "all_action_per_sub_action": {
        "pg_estimator": "all_action",
        "cv_objective": "regression",
        "cv_steps": 16,
        "cv_horizon_input": True,
        "critic_target": "corrected",
        "policy_kwargs": {"cv_arch": "per_sub_action"},
        **REPLAY,
    },
    # Its honest control: A2C's estimator with the same V (and the same ĉ, trained only for V's target).
    "a2c_replay_corrected": {
        "pg_estimator": "a2c",
        "cv_objective": "regression",
        "cv_steps": 16,
        "cv_horizon_input": True,
        "critic_target": "corrected",
        "policy_kwargs": {"cv_arch": "per_sub_action"},
        **REPLAY,
    },
    "relax_per_sub_action": {
        "pg_estimator": "relax",
        "cv_objective": "regression+logits",
        "cv_steps": 8,
        "cv_horizon_input": True,
        "policy_kwargs": {"cv_arch": "per_sub_action"},
        **REPLAY,
    },
    # φ fitted on each rollout (before θ steps), V on the replay: finding 6 of issue 21.
    "relax_phi_on_rollout": {
        **REPLAY,
        "pg_estimator": "relax",
        "cv_objective": "regression+logits",
        "cv_horizon_input": True,
        "cv_data": "rollout",  # RelaxA2C's default since 2026-12-04
    },
    # V's targets that should not lag the policy: V-trace for the current π, and an age-weighted replay.
    "a2c_replay_vtrace": {"pg_estimator": "a2c", "critic_target": "vtrace", **REPLAY},
    "a2c_replay_half_life_8": {"pg_estimator": "a2c", "critic_half_life": 8.0, **REPLAY},
    # Issue 22's cheaper critic schedule: V's 4 x 256 replay rows in one step instead of four; φ keeps 256 rows.
    "relax_replay_one_v_step": {
        "pg_estimator": "relax",
        "cv_objective": "regression+logits",
        "cv_steps": 1,
        "cv_horizon_input": True,
        "critic_replay": 32,
        "critic_steps": 1,
        "critic_batch_size": 1024,
        "cv_batch_size": 256,
    },
    # Issue 22's cheaper variants of the default (φ on each rollout, V on the replay), one change each: φ by
    # regression alone (no variance term, so no double backward); V in 2 steps of 256 rows; or 2 of 512.
    "relax_rollout_regression": {**REPLAY, "pg_estimator": "relax", "cv_objective": "regression", "cv_data": "rollout"},
    "relax_rollout_two_v_steps": {**REPLAY, "pg_estimator": "relax", "cv_data": "rollout", "critic_steps": 2},
    "relax_rollout_two_v_steps_512": {
        **REPLAY,
        "pg_estimator": "relax",
        "cv_data": "rollout",
        "critic_steps": 2,
        "critic_batch_size": 512,
    },
    "relax_rollout_regression_two_v_steps": {
        **REPLAY,
        "pg_estimator": "relax",
        "cv_objective": "regression",
        "cv_data": "rollout",
        "critic_steps": 2,
    },
    "a2c_replay_two_v_steps": {**REPLAY, "pg_estimator": "a2c", "critic_steps": 2},  # the control of the above
    # Issue 21's "V = E_π[q̂]" (one-step tasks): ĉ is the whole baseline (baseline="control_variate"), the
    # per-sub-action q̂ regressed on the return itself on the replay. On one-step episodes that target, r(x, a),
    # does not change with π, so old rows are not stale, and the centred offset tracks E_π[r|x] at the current π.
    "all_action_cv_baseline": {**Q_CRITIC, "cv_steps": 16},
    "all_action_cv_baseline_4": {**Q_CRITIC, "cv_steps": 4},
    # RelaxA2C's defaults with ĉ as the whole baseline, for episodes longer than one step, where R̂ holds the
    # later rewards (which do depend on π) and ĉ must learn the return-to-go that V would.
    "relax_cv_baseline": {"baseline": "control_variate"},
    # ... with ĉ trained as much as V is: on the replay, 4 steps of 256 rows per update
    "relax_cv_baseline_replay": {"baseline": "control_variate", "cv_data": "replay", "cv_steps": 4},
    # Their honest control: the same q̂, trained the same way, but only as a state value: A2C's estimator with
    # the baseline E_π[q̂(s, ·)] (see with_a2c_estimator()).
    "a2c_cv_state_baseline": {**Q_CRITIC, "cv_steps": 16},
    "a2c_cv_state_baseline_4": {**Q_CRITIC, "cv_steps": 4},
    # The ceilings, on envs with an exact reference only: A2C with V = V*, and the all-action form with the
    # exact q = w*·ind(a) + c* − V̂ (q̂'s fit switched off). See with_exact_critic().
    "a2c_exact_v": {"pg_estimator": "a2c", **REPLAY},
    "all_action_exact_q": {
        "pg_estimator": "all_action",
        "cv_objective": "regression",
        "policy_kwargs": {"cv_arch": "linear", "cv_net_arch": []},
        **REPLAY,
    },
}
#: The options whose defaults RelaxA2C takes from the action space since 2026-12-07, at the values every variant
#: above was measured with (the all-action head was linear on every space), so that each keeps meaning what it
#: measured. ``default`` is RelaxA2C's own defaults, whatever they are on the env.
MEASURED_WITH = {"pg_estimator": "relax", "baseline": "value", "cv_data": "rollout", "cv_steps": 1}
#: The per-bit network's width before bits' design narrowed it to 16 units (2026-12-07): every all-action variant
#: above, and the bits default's variants below that were measured with it.
HEAD_32 = {"policy_kwargs": {"cv_sub_action_net_arch": [32]}}
VARIANTS = {name: {**MEASURED_WITH, **kwargs} for name, kwargs in VARIANTS.items()}
for kwargs in VARIANTS.values():
    if kwargs["pg_estimator"] == "all_action":
        head = {"cv_arch": "linear", **HEAD_32["policy_kwargs"]}
        kwargs["policy_kwargs"] = {**head, **kwargs.get("policy_kwargs", {})}
VARIANTS["default"] = {}
# The default with φ's Adam at a larger step: on bits, does it fit q̂'s slopes as 16 steps do, at 4 steps' cost?
VARIANTS["default_cv_lr_3e-3"] = {"cv_learning_rate": 3e-3, **HEAD_32}
VARIANTS["default_cv_lr_1e-2"] = {"cv_learning_rate": 1e-2, **HEAD_32}
# The same question for the 16-unit head, the bits default since 2026-12-07 (issue 21's slope R² goal)
VARIANTS["default_head_16_cv_lr_2e-3"] = {"cv_learning_rate": 2e-3}
VARIANTS["default_head_16_cv_lr_3e-3"] = {"cv_learning_rate": 3e-3}
# Faster slope fits at the default's cost (issue 21's R² goal): on one-step tasks ĉ's target r(x, a) does not age, so a
# longer replay only adds data; or twice the Adam steps on half the rows; or both with the larger step
VARIANTS["default_replay_128"] = {"critic_replay": 128}
VARIANTS["default_8_steps_128_rows"] = {"cv_steps": 8, "cv_batch_size": 128}
VARIANTS["default_8_steps_128_rows_cv_lr_3e-3"] = {"cv_steps": 8, "cv_batch_size": 128, "cv_learning_rate": 3e-3}
# Issue 22's "capping φ's minibatch": on bits the per-bit head runs a network per bit and row, so φ's replay
# minibatch sets the default's cost there
VARIANTS["default_cv_batch_64"] = {"cv_batch_size": 64, **HEAD_32}
VARIANTS["default_cv_batch_128"] = {"cv_batch_size": 128, **HEAD_32}
# The bits default with its per-bit head's output layer refitted in closed form after each update (issue 21: a fit
# that converges faster than Adam; `refit_output_layer`)
VARIANTS["default_ridge_output"] = {}
# Issue 22, wall-clock time to solve CartPole: at 8 envs an update costs the same whatever the rollout's length,
# so longer rollouts spread it over more steps. SB3's A2C takes 5 steps per env.
VARIANTS["default_n_steps_10"] = {"n_steps": 10}
VARIANTS["default_n_steps_20"] = {"n_steps": 20}
VARIANTS["a2c_n_steps_10"] = {"n_steps": 10}  # their control: SB3's A2C given the same rollouts
#: The variants that are SB3's own A2C, with their keywords
SB3_A2C = {"a2c": {}, "a2c_n_steps_10": VARIANTS["a2c_n_steps_10"]}
# Issue 22, the bits default's cost: the per-bit head's hidden layer (32 tanh units, for each bit of each row) was
# most of it. Narrower or ReLU heads, and the φ steps that the time saved would buy; ``default_head_tanh_16_4_steps``
# is the bits default since then, ``default_head_tanh_32_4_steps`` the one before.
for width in (16, 32):
    for name, activation in (("tanh", torch.nn.Tanh), ("relu", torch.nn.ReLU)):
        for steps in (4, 8):
            head = {"cv_activation_fn": activation, "cv_sub_action_net_arch": [width]}
            VARIANTS[f"default_head_{name}_{width}_{steps}_steps"] = {"cv_steps": steps, "policy_kwargs": head}
EXACT = {"a2c_exact_v": "v", "all_action_exact_q": "q"}
#: Timesteps at which a run on an env with an exact reference records its critics' fit (and at its end).
FIT_AT = (2_000, 8_000, 20_000)
SOLVE_WINDOW = 100
#: Steps between the points of a run's learning curve (the 100-episode mean), stored with its result.
CURVE_EVERY = 10_000


class StopWhenSolved(BaseCallback):
    """Stops training when the mean of the last 100 training episodes reaches ``threshold``; keeps that
    mean every ``CURVE_EVERY`` steps as the run's learning curve."""

    def __init__(self, threshold: float, progress: int = 0, label: str = ""):
        super().__init__()
        self.threshold, self.returns, self.solved_at = threshold, [], None
        self.progress, self.label, self.next_report = progress, label, progress  # a line every `progress` steps
        self.curve: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        if self.num_timesteps >= CURVE_EVERY * (len(self.curve) + 1) and self.returns:
            self.curve.append((self.num_timesteps, float(np.mean(self.returns[-SOLVE_WINDOW:]))))
        if self.progress and self.num_timesteps >= self.next_report:
            self.next_report += self.progress
            recent = self.returns[-SOLVE_WINDOW:]
            mean = f"{np.mean(recent):.3f}" if recent else "-"
            print(f"  {self.label}: {self.num_timesteps} steps, {len(self.returns)} episodes, mean {mean}", flush=True)
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(float(info["episode"]["r"]))
                recent = self.returns[-SOLVE_WINDOW:]
                if len(recent) == SOLVE_WINDOW and np.mean(recent) >= self.threshold:
                    self.solved_at = len(self.returns)
                    return False
        return True


class FitRecorder(BaseCallback):
    """Records :func:`relax_rl.diagnose.critic_fit` at the timesteps of ``FIT_AT``, on 1024 fixed contexts
    drawn as the env draws them (each with a horizon uniform over the window)."""

    def __init__(self, reference: AffineReward, obs_dim: int, n_steps: int):
        super().__init__()
        generator = torch.Generator().manual_seed(12345)
        self.obs = torch.randn(1024, obs_dim, generator=generator)
        self.horizon = torch.randint(1, n_steps + 1, (1024,), generator=generator).float()
        self.reference, self.fits, self.pending = reference, {}, list(FIT_AT)

    def record(self, key: str) -> None:
        self.fits[key] = critic_fit(self.model, self.reference, self.obs, self.horizon)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        while self.pending and self.num_timesteps >= self.pending[0]:
            self.record(str(self.pending.pop(0)))

    def _on_training_end(self) -> None:
        self.record("end")


def with_exact_critic(model: RelaxA2C, reference: AffineReward, kind: str) -> None:
    """Replaces a critic by the exact one (a benchmark's ceiling, not an option of the library).

    ``"v"``: the values the rollout's advantages are made with are ``V*(s)`` (one-step episodes). ``"q"``: the
    all-action ``q̂`` is ``w*(s)·ind(a) + c*(s) − V̂(s)``, ``r − V̂`` exactly, and φ's fit is skipped. An MLP
    policy's features are the observation itself, the first columns of ``ĉ``'s context.
    """
    policy, obs_dim = model.policy, model.observation_space.shape[0]
    if kind == "v":
        forward = policy.forward

        def exact_v_forward(obs: torch.Tensor, deterministic: bool = False):
            actions, values, log_prob = forward(obs, deterministic)
            params = policy.distribution_params_values_features(obs, with_values=False)[0]
            v_star = reference.state_values(obs, policy.estimator.relaxation.mean_indicator(params))
            return actions, v_star.view_as(values), log_prob

        policy.forward = exact_v_forward
        return

    def exact_q(context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = context[:, :obs_dim]
        slopes, offset = reference.coefficients(obs)
        return slopes, offset - policy.predict_values(obs).flatten().detach()

    policy.control_variate.slopes_and_offset = exact_q
    model._fit_phi = lambda batch_at: (torch.zeros(()), True)


def with_a2c_estimator(model: RelaxA2C) -> None:
    """The all-action estimator replaced by A2C's with the baseline ``E_π[q̂(s, ·)]``, detached: ``q̂`` still
    trains as before (on the return, ``baseline="control_variate"``), but only its state part reaches θ's
    gradient. A benchmark's control, not an option of the library."""
    estimator = model.policy.estimator

    def a2c_surrogate(params, actions, f, control_variate, context, *, phi_path=True):
        baseline = estimator.mean_control_variate(params, control_variate, context)
        return reinforce(f, estimator.log_prob(params, actions), baseline)

    estimator.surrogate = a2c_surrogate


@torch.no_grad()
def refit_output_layer(model: RelaxA2C, ridge: float = 1e-3) -> None:
    """The per-bit head's output layer set to its ridge-regression optimum on the whole replay, given the hidden
    units: ``ĉ = Σ_i [w_i (x_i − m_i) + b_i] + b_0`` is linear in that layer's weights, so the fit is closed-form.
    For a per-sub-action ``ĉ`` with one hidden layer and sub-actions of one column (bits)."""
    policy, c_hat = model.policy, model.policy.control_variate
    rows = model.replay.rows
    params, _, _, features = policy.distribution_params_values_features(rows.observations, with_values=False)
    context = policy.cv_context(features, params, rows.horizon)
    hidden = c_hat.block_net[1](c_hat._block_net_first_layer(context))  # (rows, bits, width)
    indicator = policy.estimator.relaxation.indicator(params, policy.estimator.kind.to_relaxation(rows.actions))
    deviation = indicator - c_hat.centre(context)  # (rows, bits)
    columns = [
        (hidden * deviation.unsqueeze(-1)).sum(1),  # the slopes' weights
        deviation.sum(1, keepdim=True),  # their bias
        hidden.sum(1),  # the per-bit offsets' weights
        torch.full_like(deviation[:, :1], deviation.shape[1]),  # their bias
    ]
    design = torch.cat(columns, dim=1).double()
    target = (model._normalised(rows.returns) - c_hat.net(context).squeeze(-1)).double()
    gram = design.T @ design
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    solution = torch.linalg.solve(gram, design.T @ target).float()
    width = hidden.shape[-1]
    output = c_hat.block_net[-1]
    output.weight[0], output.bias[0] = solution[:width], solution[width]
    output.weight[1], output.bias[1] = solution[width + 1 : 2 * width + 1], solution[-1]


def with_ridge_output_fit(model: RelaxA2C) -> None:
    """After each update, :func:`refit_output_layer` (a benchmark's prototype, not an option of the library): φ
    still trains on the replay after ``V``, so rollout ``k``'s θ gradient comes from a ``ĉ`` that has not seen it."""
    train = model.train

    def train_then_refit() -> None:
        train()
        refit_output_layer(model)

    model.train = train_then_refit


def relax_model(variant: str, env: Any, **kwargs: Any) -> RelaxA2C:
    """The RelaxA2C of ``variant``: its keywords, and A2C's estimator or the output layer's refit for the variants
    that need them."""
    model = RelaxA2C("MlpPolicy", env, **VARIANTS[variant], **kwargs)
    if variant.startswith("a2c_cv_state_baseline"):
        with_a2c_estimator(model)
    if variant.startswith("default_ridge_output"):
        with_ridge_output_fit(model)
    return model


def study_meta(script: str, args: argparse.Namespace) -> dict[str, str]:
    """What a results file of this study carries besides its results: the command, date, machine and commit."""
    flags = (
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
    )
    command = f"python benchmarks/critic_replay/{script} " + " ".join(f for f in flags if not f.startswith("--out "))
    return provenance(command)


def threshold_of(result: dict[str, Any]) -> float:
    """The threshold a stored run was made to: results from before ``--threshold`` used the env's."""
    return result.get("threshold", get_spec(result["env"]).reward_threshold)


def run_one(
    env_id: str,
    variant: str,
    lr: float,
    seed: int,
    budget: int,
    threshold: float,
    normalize: bool = False,
    progress: int = 0,
) -> dict[str, Any]:
    torch.set_num_threads(1)
    env = make_vec_env(env_id, 8, seed, backend="gymnasium")
    if normalize:  # as the zoo's configs do for MuJoCo; the episode returns read are the raw ones
        env = VecNormalize(env)
    kwargs = {"learning_rate": lr, "seed": seed, "device": "cpu"}
    if variant in SB3_A2C:
        model = A2C("MlpPolicy", env, **SB3_A2C[variant], **kwargs)
    else:
        model = relax_model(variant, env, **kwargs)
    stopper = StopWhenSolved(threshold, progress, f"{variant} lr={lr:g} s{seed}")
    callbacks: list[BaseCallback] = [stopper]
    reference = None if normalize else exact_reference(env)
    if variant in EXACT:
        if reference is None:
            raise SystemExit(f"{variant} needs an env with an exact reference (target matching), not {env_id}")
        with_exact_critic(model, reference, EXACT[variant])
    if reference is not None and variant not in SB3_A2C:
        callbacks.append(FitRecorder(reference, env.observation_space.shape[0], model.n_steps))
    start = time.perf_counter()
    model.learn(budget, callback=callbacks)
    wall = time.perf_counter() - start
    return {
        "env": env_id,
        "variant": variant,
        "lr": lr,
        "seed": seed,
        "budget": budget,
        "threshold": threshold,
        "normalize": normalize,
        "solved": stopper.solved_at is not None,
        "episodes": stopper.solved_at if stopper.solved_at is not None else len(stopper.returns),
        "timesteps": model.num_timesteps,
        "updates": model.num_timesteps // (8 * model.n_steps),
        "wall_s": wall,
        "sps": model.num_timesteps / wall,
        "final_mean_return": float(np.mean(stopper.returns[-SOLVE_WINDOW:])) if stopper.returns else None,
        "curve": stopper.curve,
        "fit": callbacks[-1].fits if isinstance(callbacks[-1], FitRecorder) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--lrs", nargs="+", type=float, default=[3.5e-4, 7e-4, 1.4e-3, 2.8e-3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=300_000, help="timesteps before a run counts as unsolved")
    parser.add_argument(
        "--threshold", type=float, help="the 100-episode mean that counts as solved (default: the env's)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--normalize", action="store_true", help="VecNormalize observations and rewards")
    parser.add_argument("--progress", type=int, default=0, help="print a progress line every this many steps")
    parser.add_argument("--out", type=Path, default=HERE / "results.jsonl")
    args = parser.parse_args()
    threshold = args.threshold if args.threshold is not None else get_spec(args.env).reward_threshold
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["env"], r["variant"], r["lr"], r["seed"], r["budget"], threshold_of(r)))
    jobs = [
        (args.env, v, lr, s, args.budget, threshold)
        for s in args.seeds
        for lr in args.lrs
        for v in args.variants
        if (args.env, v, lr, s, args.budget, threshold) not in done
    ]
    print(f"{len(jobs)} runs to go ({len(done)} already in {args.out})", flush=True)
    sidecar = args.out.with_suffix(".meta.json")
    if not sidecar.exists():  # the JSONL's own records stay bare; what made them is said once, beside them
        meta = {"results": args.out.name, **study_meta("run.py", args)}
        meta["note"] = "the first runs written; later appends (other variants, seeds) may come from later commits"
        sidecar.write_text(json.dumps(meta, indent=2) + "\n")
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run_one, *job, args.normalize, args.progress): job for job in jobs}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            result = future.result()
            with args.out.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(
                f"[{i}/{len(jobs)}] {result['variant']} lr={result['lr']:g} s{result['seed']}: "
                f"{'solved' if result['solved'] else 'UNSOLVED'} at episode {result['episodes']} "
                f"({result['timesteps']} steps, {result['sps']:.0f} SPS)",
                flush=True,
            )


if __name__ == "__main__":
    main()
