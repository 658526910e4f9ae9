"""RELAX-A2C: A2C with a learned, action-dependent control variate (docs/design.md §4, and §5 for Box actions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch as th
import torch.nn.functional as F
from stable_baselines3 import A2C
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv

from relax_rl.agents.action_spaces import action_space_kind
from relax_rl.agents.buffers import whole_rollout
from relax_rl.agents.critic_targets import ValueTargets
from relax_rl.agents.cv_objective import CvBatch, CvObjective
from relax_rl.agents.policies import (
    RelaxActorCriticCnnPolicy,
    RelaxActorCriticPolicy,
    RelaxMultiInputActorCriticPolicy,
)
from relax_rl.agents.relax_options import check_critic_target, check_options, check_owned_policy_kwargs, design_for
from relax_rl.agents.replay import ReplayRows, RolloutEnd, RolloutReplay
from relax_rl.agents.speed_hints import warn_if_one_env, warn_if_replay_runs_a_cnn, warn_if_threads_are_slow
from relax_rl.agents.tensor_rollout import TensorRolloutMixin
from relax_rl.agents.update_log import log_update

SelfRelaxA2C = TypeVar("SelfRelaxA2C", bound="RelaxA2C")


class RelaxA2C(TensorRolloutMixin, A2C):
    """Advantage actor-critic whose baseline is ``c(s, z) = V(s) + ĉ_φ(s, relax(z, τ))``.

    Discrete, MultiDiscrete and MultiBinary actions use RELAX (docs/design.md §4) or the all-action form
    (§4b). ``Box`` actions use a diagonal Gaussian policy and LAX with ``c(s, a) = V(s) + ĉ_φ(s, a)``
    at the executed action (§5); actions are clipped to the bounds for the environment only. Takes
    every argument of SB3's :class:`~stable_baselines3.A2C` except ``use_sde``, plus:

    :param pg_estimator: ``"relax"``, ``"all_action"`` (discrete spaces) or ``"a2c"``: A2C's own estimator,
        which with the same critic settings is the honest control for the other two (None: by action space)
    :param cv_learning_rate: Adam learning rate (or schedule) for ``φ``, the control variate
    :param cv_objective: ``"params"`` minimises ``‖Σ_t ĝ_t‖²`` over the policy parameters (the
        paper's objective, double backprop); ``"logits"`` minimises ``mean_t ‖ĝ_t^ℓ‖²`` for each
        step's distribution parameters (cheaper); ``"regression"`` fits ``ĉ`` where the score term
        reads it to the advantage (MSE; ``τ`` is left out of it); ``"regression+logits"`` and
        ``"regression+params"`` add the two
    :param cv_steps: gradient steps on ``φ`` per update: on this rollout (fresh ``z``, ``z̃`` each), or
        minibatches from the replay when ``critic_replay`` is on (None: by action space)
    :param cv_horizon_input: ``ĉ`` also reads each row's steps to the bootstrap ``h = n − j``
    :param cv_data: with ``critic_replay``, where φ trains: ``"rollout"``, on this rollout's rows and ``ĝ``
        after θ's gradient is taken (as without a replay), or ``"replay"``, on replay minibatches after ``V``
        (None: by action space)
    :param critic_replay: ``V`` and ``φ`` train on a replay of the last K rollouts after θ's gradient is
        taken (docs/design.md §4b); 0 trains ``V`` with θ on this rollout, as A2C does
    :param critic_steps: ``V``'s minibatch steps per update on the replay (with ``critic_replay``)
    :param critic_batch_size: rows per replay minibatch, for ``V`` and ``φ``, and never fewer than one
        rollout's rows (None: one rollout's)
    :param cv_batch_size: rows of ``φ``'s replay minibatch, if not ``critic_batch_size`` (None)
    :param critic_target: what ``V`` regresses on a replayed row: ``"returns"`` (stored at collection),
        ``"recomputed"`` (λ-returns with the current ``V``), ``"vtrace"`` (also weighted for the current π) or
        ``"corrected"`` (the stored return less ``ĉ``'s action effect, for an affine ``ĉ``)
    :param critic_half_life: draw a rollout ``k`` updates old with weight ``2^(−k / half_life)`` (None: uniformly)
    :param baseline: ``"value"``: ``c = V + ĉ``, the estimator reads A2C's advantage ``R̂ − V(s)`` and ``ĉ`` is
        fitted to it; ``"control_variate"``: ``c = ĉ``, the estimator reads the return ``R̂`` itself and ``ĉ``,
        fitted to it, carries the whole baseline (its state part ``E_π[ĉ]``); ``V`` then only bootstraps
        ``R̂``. On one-step tasks ``ĉ``'s target ``r(s, a)`` does not change with π, so a replayed ``ĉ`` does
        not lag the policy as a replayed ``V`` does; on longer ones ``ĉ`` must learn the return-to-go, and
        needs ``V``'s training to do it (``cv_data="replay"``, several ``cv_steps``; docs/design.md §4b, §9).
        None: by action space (under ``pg_estimator="a2c"``, ``"value"``)

    The defaults are those of ``benchmarks/critic_replay/``'s best unbiased design for each kind of action
    space. Everywhere, ``V`` trains on a replay of 32 rollouts, 4 steps of 256 rows. For ``Discrete``,
    ``MultiDiscrete`` and ``Box`` actions, the design fastest in wall-clock time to solve CartPole (SB3's
    8 x 5 setting) without detectably more episodes than the others, and no worse on LunarLander: RELAX (LAX
    for a ``Box``) with ``c = V + ĉ``, ``ĉ`` fitted on each rollout, before θ steps, by regression to the
    advantage (no double backward), reading ``h``. For ``MultiBinary`` actions, the design that needs the
    fewest updates on 64- and 256-bit target matching: the all-action form with ``ĉ`` as the whole baseline,
    a per-bit ``q̂`` (``cv_arch="per_sub_action"``, 16 units per bit) fitted on the replay after ``V``, 4 steps
    (``pg_estimator="all_action"``, ``baseline="control_variate"``, ``cv_data="replay"``, ``cv_steps=4``,
    ``policy_kwargs={"cv_sub_action_net_arch": [16]}``).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": RelaxActorCriticPolicy,
        "CnnPolicy": RelaxActorCriticCnnPolicy,
        "MultiInputPolicy": RelaxMultiInputActorCriticPolicy,
    }
    policy: RelaxActorCriticPolicy

    def __init__(
        self,
        policy: str | type[RelaxActorCriticPolicy],
        env: GymEnv | str,
        *args: Any,
        pg_estimator: str | None = None,
        cv_learning_rate: float | Schedule = 1e-3,
        cv_objective: str = "regression",
        cv_steps: int | None = None,
        cv_horizon_input: bool = True,
        cv_data: str | None = None,
        critic_replay: int = 32,
        critic_steps: int = 4,
        critic_batch_size: int | None = 256,
        cv_batch_size: int | None = None,
        critic_target: str = "returns",
        critic_half_life: float | None = None,
        baseline: str | None = None,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        self.cv_learning_rate = cv_learning_rate
        self.skipped_updates = 0  # updates skipped for a non-finite loss or gradient, in total
        self.bad_update_streak = 0  # ... and in a row, up to the last update
        self.cv_objective = cv_objective
        self.cv_horizon_input = cv_horizon_input
        self.critic_replay = critic_replay
        self.critic_steps = critic_steps
        self.critic_batch_size = critic_batch_size
        self.cv_batch_size = cv_batch_size
        self.critic_target = critic_target
        self.critic_half_life = critic_half_life
        super().__init__(policy, env, *args, _init_setup_model=False, **kwargs)
        # The design options left None follow the action space. SB3's load builds the model without setup and
        # then sets the file's values: a file saved before an option existed keeps the value it trained with.
        kind = action_space_kind(self.action_space) if _init_setup_model else None
        given = {"pg_estimator": pg_estimator, "baseline": baseline, "cv_data": cv_data, "cv_steps": cv_steps}
        design = design_for(kind, given, self.policy_kwargs)
        self.pg_estimator, self.baseline = design["pg_estimator"], design["baseline"]
        self.cv_data, self.cv_steps = design["cv_data"], design["cv_steps"]
        self.policy_kwargs = {**design.get("policy_kwargs", {}), **self.policy_kwargs}  # saved: old files keep theirs
        check_options(
            cv_objective=cv_objective,
            cv_data=self.cv_data,
            critic_target=critic_target,
            critic_half_life=critic_half_life,
            baseline=self.baseline,
            pg_estimator=self.pg_estimator,
            counts={
                "cv_steps": (self.cv_steps, 1),
                "critic_replay": (critic_replay, 0),
                "critic_steps": (critic_steps, 1),
            },
            batch_sizes={"critic_batch_size": critic_batch_size, "cv_batch_size": cv_batch_size},
        )
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        env = A2C._wrap_env(env, verbose, monitor_wrapper)
        # SB3 checks the action space next, with bare assertions; say what is wrong and how to fix it first.
        action_space_kind(env.action_space)
        return env

    def _setup_model(self) -> None:
        # The policy builds the estimator and the control variate's input; the algorithm owns the choice.
        owned = {"pg_estimator": self.pg_estimator, "cv_horizon": self.n_steps if self.cv_horizon_input else 0}
        check_owned_policy_kwargs(self.policy_kwargs, owned)
        self.policy_kwargs = {**self.policy_kwargs, **owned}
        if self.policy_kwargs.get("optimizer_class") is th.optim.RMSprop:  # A2C's: the same steps, fused over tensors
            self.policy_kwargs["optimizer_kwargs"] = {"foreach": True, **self.policy_kwargs.get("optimizer_kwargs", {})}
        super()._setup_model()
        self.cv_lr_schedule = FloatSchedule(self.cv_learning_rate)
        self.cv_optimizer = th.optim.Adam(
            self.policy.control_variate.parameters(), lr=self.cv_lr_schedule(1), fused=True
        )
        self.replay = RolloutReplay(self.critic_replay) if self.critic_replay else None
        check_critic_target(
            self.critic_target,
            replayed=self.replay is not None,
            control_variate=self.policy.control_variate,
            normalize_advantage=self.normalize_advantage,
            uses_control_variate=self.policy.estimator.uses_control_variate,
            cv_objective=self.cv_objective,
        )
        # The schedule, chosen once. V steps with θ on this rollout (A2C's), or on the replay after θ. φ trains
        # when the estimator reads ĉ, or when V's corrected targets read its slopes (then also for A2C's): on
        # this rollout before θ steps, or on the replay after V.
        self.objective = CvObjective.parse(self.cv_objective)
        self.v_on_rollout = self.replay is None
        fits_phi = self.policy.estimator.uses_control_variate or self.critic_target == "corrected"
        self.phi_on_rollout = fits_phi and (self.v_on_rollout or self.cv_data == "rollout")
        self.phi_on_replay = fits_phi and not self.phi_on_rollout
        # Never fewer rows than one rollout: with many envs, V must not see less than A2C would show it.
        rollout_rows = self.n_steps * self.n_envs
        self.replay_batch_size = max(self.critic_batch_size or 0, rollout_rows)
        self.cv_replay_batch_size = max(self.cv_batch_size or self.critic_batch_size or 0, rollout_rows)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, tensors = super()._get_torch_save_params()
        return [*state_dicts, "cv_optimizer"], tensors

    def _excluded_save_params(self) -> list[str]:
        # Like SB3's replay buffers, the replay is not part of the model file (checkpoints keep it).
        return [
            *super()._excluded_save_params(),
            *("cv_optimizer", "replay", "objective", "v_on_rollout", "phi_on_rollout", "phi_on_replay"),
        ]

    def train(self) -> None:
        """One RELAX-A2C update (docs/design.md §4, §4b; §5 for ``Box`` actions).

        θ's gradient comes first, from a ``V`` (the advantages, computed at collection) and a ``φ`` that
        have not seen this rollout; only then do ``V`` and ``φ`` train on it. The reverse order is biased.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        update_learning_rate(self.cv_optimizer, self.cv_lr_schedule(self._current_progress_remaining))
        policy, estimator, c_hat = self.policy, self.policy.estimator, self.policy.control_variate
        rollout, horizon = whole_rollout(self.rollout_buffer)
        # One row per step t: the logits, or [μ, log σ] for a Box; V's values only when V steps here.
        params, values, entropy, features = policy.distribution_params_values_features(
            rollout.observations, with_values=self.v_on_rollout
        )
        actions = estimator.kind.to_relaxation(rollout.actions)  # a Box's sampled, unclipped actions
        # f_t: A2C's Â_t = R̂_t − V(s_t), the V part of c = V + ĉ; or R̂_t itself where ĉ is the whole baseline
        a2c_advantages = self._normalised(rollout.advantages)  # also logged: the variance of A2C's ĝ beside ours
        advantages = self._normalised(rollout.returns) if self.baseline == "control_variate" else a2c_advantages
        context = policy.cv_context(features, params, horizon)  # ĉ's input besides a_t, fixed before a_t was drawn

        # ĝ_t = [Â_t − ĉ(s_t, z̃_t)] ∇θ log π(a_t|s_t) + ∇θ ĉ(s_t, z_t) − ∇θ ĉ(s_t, z̃_t), or the all-action
        # form [Â_t − q̂(s_t, a_t)] ∇θ log π(a_t|s_t) + ∇θ Σ_a π(a|s_t) q̂(s_t, a), or A2C's Â_t ∇θ log π(a_t|s_t).
        # It is differentiable in φ only when φ's variance objective reads it, on this rollout.
        reads_g = self.phi_on_rollout and self.objective.variance is not None
        surrogate, g_params = estimator.estimate(params, actions, advantages, c_hat, context, create_graph=reads_g)
        batch = CvBatch(params, actions, advantages, context, g_params)
        # θ reaches the surrogate only through the distribution parameters, so pushing ĝ^ℓ back through
        # the network gives ∇θ of −mean_t surrogate_t, without differentiating ĉ a second time.
        entropy_loss = -entropy.mean()
        loss = -(g_params.detach() * params).sum() / len(params) + self.ent_coef * entropy_loss
        value_loss = cv_loss = None
        if self.v_on_rollout:  # A2C's schedule: V steps with θ, on the rollout whose advantages it made
            value_loss = F.mse_loss(rollout.returns, values)
            loss = loss + self.vf_coef * value_loss
        theta_or_theta_psi = policy.actor_critic_parameters() if self.v_on_rollout else policy.actor_parameters()
        healthy = self._backward_clipped(loss, theta_or_theta_psi, retain_graph=reads_g)
        if healthy and self.phi_on_rollout:  # φ before θ steps, first on the very ĝ that θ's gradient came from
            cv_loss, healthy = self._fit_phi(lambda step: batch if step == 0 else batch._replace(g_params=None))
        if healthy:
            policy.optimizer.step()
        if healthy and not self.v_on_rollout:  # the replay's schedule: then V, and φ if it trains there
            self.replay.add(
                ReplayRows.of_rollout(self.rollout_buffer, rollout, horizon),
                RolloutEnd.of(self._last_obs, self._last_episode_starts, self.device),
            )
            value_loss, healthy = self._fit_v_on_replay()
            if healthy and self.phi_on_replay:
                cv_loss, healthy = self._fit_phi(lambda step: self._replay_minibatch())

        self.bad_update_streak = 0 if healthy else self.bad_update_streak + 1
        self.skipped_updates += not healthy
        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/skipped_updates", self.skipped_updates)
        losses = dict(entropy_loss=entropy_loss, policy_loss=-surrogate.mean(), value_loss=value_loss, cv_loss=cv_loss)
        log_update(self.logger, policy, rollout, batch, a2c_advantages, losses, self.cv_optimizer.param_groups[0]["lr"])

    def _normalised(self, advantages: th.Tensor) -> th.Tensor:
        # computed only when asked for: A2C's default leaves advantages as they are
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8) if self.normalize_advantage else advantages

    def _backward_clipped(self, loss: th.Tensor, parameters: list[th.nn.Parameter], retain_graph: bool = False) -> bool:
        """``parameters``' gradients of ``loss``, their total norm clipped; False if the loss or a gradient is not
        finite, and the update must then be skipped. The total norm is NaN or infinite exactly when some gradient
        entry is (or when its sum of squares overflows, a gradient no update should take): one check, not one
        per tensor."""
        self.policy.optimizer.zero_grad()
        loss.backward(inputs=parameters, retain_graph=retain_graph)
        norm = th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        return bool(th.isfinite(th.stack([loss.detach(), norm])).all())

    def _fit_phi(self, batch_at: Callable[[int], CvBatch]) -> tuple[th.Tensor, bool]:
        """``cv_steps`` Adam steps of φ on its objective, step ``i`` on ``batch_at(i)``; False on a non-finite one."""
        for step in range(self.cv_steps):
            self.cv_optimizer.zero_grad()
            cv_loss = self.objective.backward(batch_at(step), self.policy)
            grads = [p.grad for p in self.policy.control_variate.parameters() if p.grad is not None]
            if not bool(th.stack([th.isfinite(t).all() for t in (cv_loss, *grads)]).all()):  # one wait for the device
                return cv_loss, False
            self.cv_optimizer.step()
        return cv_loss, True

    def _fit_v_on_replay(self) -> tuple[th.Tensor, bool]:
        """``critic_steps`` minibatch steps of ``V`` on the replay, against ``critic_target``."""
        targets = ValueTargets(self.critic_target, self.policy, self.replay, self.n_envs, self.gamma, self.gae_lambda)
        for _ in range(self.critic_steps):
            observations, target = targets.sample(self.replay_batch_size, self.critic_half_life)
            value_loss = F.mse_loss(target, self.policy.predict_values(observations).flatten())
            if not self._backward_clipped(self.vf_coef * value_loss, self.policy.critic_parameters()):
                return value_loss, False
            self.policy.optimizer.step()  # only ψ has gradients: θ's entries are skipped
        return value_loss, True

    def _replay_minibatch(self) -> CvBatch:
        """A fresh replay minibatch for φ, at the current θ and ``V``."""
        rows = self.replay.take(self.replay.sample_indices(self.cv_replay_batch_size))
        with th.set_grad_enabled(self.objective.variance == "params"):  # only that objective differentiates θ
            params, values, _, features = self.policy.distribution_params_values_features(rows.observations)
        params.requires_grad_()  # ĝ^ℓ is a gradient for the parameters, connected to θ or not
        return CvBatch(
            params,
            self.policy.estimator.kind.to_relaxation(rows.actions),
            self._normalised(rows.returns - (values.detach() if self.baseline == "value" else 0)),  # ĉ's target
            self.policy.cv_context(features, params, rows.horizon),
        )

    def learn(
        self: SelfRelaxA2C,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "RelaxA2C",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRelaxA2C:
        warn_if_threads_are_slow(self)
        warn_if_one_env(self)
        warn_if_replay_runs_a_cnn(self)
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
