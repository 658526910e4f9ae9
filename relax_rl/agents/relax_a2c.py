"""RELAX-A2C: A2C with a learned, action-dependent control variate (docs/design.md §4, and §5 for Box actions)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch as th
import torch.nn.functional as F
from stable_baselines3 import A2C
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, RolloutBufferSamples, Schedule
from stable_baselines3.common.utils import FloatSchedule, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv

from relax_rl.agents.action_spaces import action_space_kind
from relax_rl.agents.buffers import whole_rollout
from relax_rl.agents.critic_targets import action_effect, replay_targets
from relax_rl.agents.policies import (
    RelaxActorCriticCnnPolicy,
    RelaxActorCriticPolicy,
    RelaxMultiInputActorCriticPolicy,
)
from relax_rl.agents.relax_options import (
    CvObjective,
    check_critic_target,
    check_options,
    check_owned_policy_kwargs,
)
from relax_rl.agents.replay import ReplayRows, RolloutEnd, RolloutReplay
from relax_rl.agents.speed_hints import warn_if_one_env, warn_if_threads_are_slow
from relax_rl.agents.tensor_rollout import TensorRolloutMixin

SelfRelaxA2C = TypeVar("SelfRelaxA2C", bound="RelaxA2C")


class CvBatch(NamedTuple):
    """What one step of φ trains on, one row per step."""

    params: th.Tensor
    """The distribution parameters (logits, or ``[μ, log σ]``), connected to θ where an objective reads it."""
    actions: th.Tensor
    advantages: th.Tensor
    """What ``V`` leaves for ``ĉ`` to explain."""
    context: th.Tensor
    """``ĉ``'s input besides the action, fixed before the action was drawn."""
    g_params: th.Tensor | None = None
    """``ĝ^ℓ``, differentiable in φ; None for the regression, which does not read it."""


def _all_finite(tensors: list[th.Tensor]) -> bool:
    # One wait for the device per check, however many tensors it covers.
    return bool(th.stack([th.isfinite(t).all() for t in tensors]).all())


def _clip_and_check(loss: th.Tensor, parameters: list[th.nn.Parameter], max_norm: float) -> bool:
    """Clips the gradients' total norm to ``max_norm``; True if the loss and every gradient are finite.

    The total norm that the clip computes anyway is NaN or infinite exactly when some gradient entry is (or
    when the sum of squares overflows, a gradient no update should take), so one check replaces one per tensor.
    """
    norm = th.nn.utils.clip_grad_norm_(parameters, max_norm)
    return bool(th.isfinite(th.stack([loss.detach(), norm])).all())


def _grads(parameters: list[th.nn.Parameter]) -> list[th.Tensor]:
    return [p.grad for p in parameters if p.grad is not None]


class RelaxA2C(TensorRolloutMixin, A2C):
    """Advantage actor-critic whose baseline is ``c(s, z) = V(s) + ĉ_φ(s, relax(z, τ))``.

    Discrete, MultiDiscrete and MultiBinary actions use RELAX (docs/design.md §4) or the all-action form
    (§4b). ``Box`` actions use a diagonal Gaussian policy and LAX with ``c(s, a) = V(s) + ĉ_φ(s, a)``
    at the executed action (§5); actions are clipped to the bounds for the environment only. Takes
    every argument of SB3's :class:`~stable_baselines3.A2C` except ``use_sde``, plus:

    :param pg_estimator: ``"relax"``, ``"all_action"`` (discrete spaces) or ``"a2c"``: A2C's own estimator,
        which with the same critic settings is the honest control for the other two
    :param cv_learning_rate: Adam learning rate (or schedule) for ``φ``, the control variate
    :param cv_objective: ``"params"`` minimises ``‖Σ_t ĝ_t‖²`` over the policy parameters (the
        paper's objective, double backprop); ``"logits"`` minimises ``mean_t ‖ĝ_t^ℓ‖²`` for each
        step's distribution parameters (cheaper); ``"regression"`` fits ``ĉ`` where the score term
        reads it to the advantage (MSE; ``τ`` is left out of it); ``"regression+logits"`` and
        ``"regression+params"`` add the two
    :param cv_steps: gradient steps on ``φ`` per update: on this rollout (fresh ``z``, ``z̃`` each), or
        minibatches from the replay when ``critic_replay`` is on
    :param cv_horizon_input: ``ĉ`` also reads each row's steps to the bootstrap ``h = n − j``
    :param cv_data: with ``critic_replay``, where φ trains: ``"rollout"`` (default), on this rollout's rows and
        ``ĝ`` after θ's gradient is taken (as without a replay), or ``"replay"``, on replay minibatches after ``V``
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

    The defaults are the unbiased design of ``benchmarks/critic_replay/`` fastest to solve CartPole (SB3's
    8 x 5 setting; 10 seeds, no more episodes than the others): ``V`` on a replay of 32 rollouts, 4 steps of
    256 rows, and ``ĉ`` fitted on each rollout, before θ steps, by regression plus the logits objective,
    reading ``h``.
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
        pg_estimator: str = "relax",
        cv_learning_rate: float | Schedule = 1e-3,
        cv_objective: str = "regression+logits",
        cv_steps: int = 1,
        cv_horizon_input: bool = True,
        cv_data: str = "rollout",
        critic_replay: int = 32,
        critic_steps: int = 4,
        critic_batch_size: int | None = 256,
        cv_batch_size: int | None = None,
        critic_target: str = "returns",
        critic_half_life: float | None = None,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        check_options(
            cv_objective=cv_objective,
            cv_data=cv_data,
            critic_target=critic_target,
            critic_half_life=critic_half_life,
            counts={"cv_steps": (cv_steps, 1), "critic_replay": (critic_replay, 0), "critic_steps": (critic_steps, 1)},
            batch_sizes={"critic_batch_size": critic_batch_size, "cv_batch_size": cv_batch_size},
        )
        self.pg_estimator = pg_estimator
        self.cv_learning_rate = cv_learning_rate
        self.skipped_updates = 0  # updates skipped for a non-finite loss or gradient, in total
        self.bad_update_streak = 0  # ... and in a row, up to the last update
        self.cv_objective = cv_objective
        self.cv_steps = cv_steps
        self.cv_horizon_input = cv_horizon_input
        self.cv_data = cv_data
        self.critic_replay = critic_replay
        self.critic_steps = critic_steps
        self.critic_batch_size = critic_batch_size
        self.cv_batch_size = cv_batch_size
        self.critic_target = critic_target
        self.critic_half_life = critic_half_life
        super().__init__(policy, env, *args, _init_setup_model=False, **kwargs)
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
            self.policy.control_variate.parameters(), lr=self.cv_lr_schedule(1), foreach=True
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
        rollout, horizon = whole_rollout(self.rollout_buffer)
        # One row per step t: the logits, or [μ, log σ] for a Box; V's values only when V steps here.
        params, values, entropy, features = self.policy.distribution_params_values_features(
            rollout.observations, with_values=self.v_on_rollout
        )
        batch = CvBatch(
            params,
            self.policy.estimator.kind.to_relaxation(rollout.actions),  # a Box's sampled, unclipped actions
            self._normalised(rollout.advantages),  # Â_t = R̂_t − V(s_t): the V part of c = V + ĉ
            self.policy.cv_context(features, params, horizon),  # fixed before a_t was drawn
        )

        # ĝ_t = [Â_t − ĉ(s_t, z̃_t)] ∇θ log π(a_t|s_t) + ∇θ ĉ(s_t, z_t) − ∇θ ĉ(s_t, z̃_t), or the all-action
        # form [Â_t − q̂(s_t, a_t)] ∇θ log π(a_t|s_t) + ∇θ Σ_a π(a|s_t) q̂(s_t, a), or A2C's Â_t ∇θ log π(a_t|s_t).
        # It is differentiable in φ only when φ's variance objective reads it, on this rollout.
        reads_g = self.phi_on_rollout and self.objective.variance is not None
        surrogate, g_params = self.estimate(*batch[:4], differentiable=reads_g)
        batch = batch._replace(g_params=g_params)
        # θ reaches the surrogate only through the distribution parameters, so pushing ĝ^ℓ back through
        # the network gives ∇θ of −mean_t surrogate_t, without differentiating ĉ a second time.
        policy_loss = -(g_params.detach() * params).sum() / len(params)
        entropy_loss = -entropy.mean()
        loss = policy_loss + self.ent_coef * entropy_loss
        value_loss = None
        if self.v_on_rollout:  # A2C: V steps with θ, on this rollout, whose advantages it already made
            value_loss = F.mse_loss(rollout.returns, values)
            loss = loss + self.vf_coef * value_loss
        stepped = self.policy.actor_critic_parameters() if self.v_on_rollout else self.policy.actor_parameters()
        self.policy.optimizer.zero_grad()
        loss.backward(inputs=stepped, retain_graph=reads_g)  # φ's objective on this rollout reuses the graph
        # A non-finite loss or gradient must never reach the parameters: such an update is skipped.
        healthy = _clip_and_check(loss, stepped, self.max_grad_norm)
        cv_loss = None
        if healthy and self.phi_on_rollout:
            # φ before θ steps: ĝ's graph is still the one θ's gradient came from. After the first step, ĝ
            # at the updated φ (with fresh z, z̃ if discrete).
            cv_loss, healthy = self._fit_control_variate(
                lambda step: batch if step == 0 else batch._replace(g_params=self.estimate(*batch[:4])[1])
            )
        if healthy:
            self.policy.optimizer.step()
        if healthy and not self.v_on_rollout:  # then V, and φ if it trains there, on the replay
            self.replay.add(
                ReplayRows.of_rollout(self.rollout_buffer, rollout, horizon),
                RolloutEnd.of(self._last_obs, self._last_episode_starts, self.device),
            )
            value_loss, healthy = self._fit_critic_on_replay()
            if healthy and self.phi_on_replay:
                cv_loss, healthy = self._fit_control_variate(self._replay_minibatch)
        self.bad_update_streak = 0 if healthy else self.bad_update_streak + 1
        self.skipped_updates += not healthy
        self.logger.record("train/skipped_updates", self.skipped_updates)

        self._n_updates += 1
        self._log_update(rollout, batch, surrogate, entropy_loss, value_loss, cv_loss)

    def estimate(
        self,
        params: th.Tensor,
        actions: th.Tensor,
        advantages: th.Tensor,
        context: th.Tensor,
        differentiable: bool = True,
    ) -> tuple[th.Tensor, th.Tensor]:
        """The per-step surrogate of the model's estimator and ``ĝ_t^ℓ``, its gradient for step t's
        distribution parameters, differentiable in φ unless ``differentiable`` is False (no φ objective
        reads it: the double-backward graph would be built for nothing)."""
        surrogate = self.policy.estimator.surrogate(params, actions, advantages, self.policy.control_variate, context)
        return surrogate, th.autograd.grad(surrogate.sum(), params, create_graph=differentiable)[0]

    def _normalised(self, advantages: th.Tensor) -> th.Tensor:
        if not self.normalize_advantage:
            return advantages
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    def _fit_control_variate(self, batch: Callable[[int], CvBatch]) -> tuple[th.Tensor, bool]:
        """``cv_steps`` steps of φ's objective, step ``i`` on the rows and ĝ^ℓ that ``batch(i)`` gives."""
        for step in range(self.cv_steps):
            cv_loss, healthy = self._control_variate_step(batch(step))
            if not healthy:
                break
        return cv_loss, healthy

    def _control_variate_step(self, batch: CvBatch) -> tuple[th.Tensor, bool]:
        """One step of φ on its objective. The regression leaves τ alone: fitting values pulls τ to 0, where
        the relaxation's gradients, and so the variance, blow up."""
        c_hat = self.policy.control_variate
        phi = list(c_hat.parameters())
        self.cv_optimizer.zero_grad()
        losses = []
        if self.objective.regression:
            fitted = self.policy.estimator.control_variate_at_action(batch.params, batch.actions, c_hat, batch.context)
            regression = F.mse_loss(fitted, batch.advantages.detach())
            tau = {id(p) for p in c_hat.temperature.parameters()}
            retain = self.objective.variance is not None
            regression.backward(inputs=[p for p in phi if id(p) not in tau], retain_graph=retain)
            losses.append(regression)
        if self.objective.variance is not None:
            variance = self._variance_objective(batch.g_params, batch.params, self.objective.variance)
            variance.backward(inputs=phi, retain_graph=True)
            losses.append(variance)
        cv_loss = sum(loss.detach() for loss in losses)
        healthy = _all_finite([cv_loss, *_grads(phi)])
        if healthy:
            self.cv_optimizer.step()
        return cv_loss, healthy

    def _variance_objective(self, g_params: th.Tensor, params: th.Tensor, objective: str) -> th.Tensor:
        """A single-sample estimate of the estimator's variance, up to a constant free of φ (docs/design.md §4)."""
        if objective == "logits":  # mean_t ‖ĝ_t^ℓ‖² over each step's distribution parameters
            return g_params.pow(2).sum(-1).mean()
        # ‖Σ_t ĝ_t‖² over the policy parameters: ĝ_θ = (∂params/∂θ)ᵀ ĝ^ℓ, by double backprop.
        theta = self.policy.actor_parameters()
        g_theta = th.autograd.grad(params, theta, g_params / len(params), create_graph=True, allow_unused=True)
        return sum(g.pow(2).sum() for g in g_theta if g is not None)

    def _fit_critic_on_replay(self) -> tuple[th.Tensor, bool]:
        """``critic_steps`` minibatch steps of ``V`` on the replay, against ``critic_target``."""
        psi = self.policy.critic_parameters()
        recomputed = None
        if self.critic_target in ("recomputed", "vtrace"):
            weighted = self.critic_target == "vtrace"
            recomputed = replay_targets(self.policy, self.replay, self.n_envs, self.gamma, self.gae_lambda, weighted)
        for _ in range(self.critic_steps):
            index = self.replay.sample_indices(self.replay_batch_size, self.critic_half_life)
            rows = self.replay.take(index)
            targets = rows.returns if recomputed is None else recomputed[index]
            if self.critic_target == "corrected":
                targets = targets - action_effect(self.policy, rows)
            value_loss = F.mse_loss(targets, self.policy.predict_values(rows.observations).flatten())
            self.policy.optimizer.zero_grad()
            (self.vf_coef * value_loss).backward(inputs=psi)
            if not _clip_and_check(value_loss, psi, self.max_grad_norm):
                return value_loss, False
            self.policy.optimizer.step()  # only ψ has gradients: θ's entries are skipped
        return value_loss, True

    def _replay_minibatch(self, step: int) -> CvBatch:
        """A fresh replay minibatch for φ, at the current θ and ``V``."""
        rows = self.replay.take(self.replay.sample_indices(self.cv_replay_batch_size))
        through_theta = self.objective.variance == "params"  # only the params objective differentiates θ
        with th.set_grad_enabled(through_theta):
            params, values, _, features = self.policy.distribution_params_values_features(rows.observations)
        if not through_theta:
            params = params.requires_grad_()
        batch = CvBatch(
            params,
            self.policy.estimator.kind.to_relaxation(rows.actions),
            self._normalised(rows.returns - values.detach()),  # what V leaves for ĉ to explain
            self.policy.cv_context(features, params, rows.horizon),
        )
        if self.objective.variance is None:  # the regression reads ĉ only: no estimate, and no graph for one
            return batch
        return batch._replace(g_params=self.estimate(*batch[:4])[1])

    def _log_update(
        self,
        rollout: RolloutBufferSamples,
        batch: CvBatch,
        surrogate: th.Tensor,
        entropy_loss: th.Tensor,
        value_loss: th.Tensor | None,
        cv_loss: th.Tensor | None,
    ) -> None:
        """SB3's A2C keys, plus the control variate's loss (and temperature) and the gradient variance,
        copied to the host together: the logs wait for the device once per update.

        ``policy_grad_var`` is the trace of the covariance of the per-step estimates ``ĝ_t^ℓ`` across
        the rollout: a cheap proxy for the policy gradient's variance, computed every update;
        ``policy_grad_var_a2c`` is the same for A2C's estimate ``Â_t ∇ log π(a_t|s_t)`` on the same rollout.
        """
        params, actions, advantages, _, g_params = batch
        values, returns = rollout.old_values, rollout.returns
        g_a2c = advantages.detach().unsqueeze(-1) * self.policy.estimator.score(params.detach(), actions)
        scalars = {
            "entropy_loss": entropy_loss,
            "policy_loss": -surrogate.mean(),
            "policy_grad_var": g_params.detach().var(dim=0).sum(),
            "policy_grad_var_a2c": g_a2c.var(dim=0).sum(),
            "var_returns": returns.var(correction=0),  # for SB3's explained_variance, as numpy computes it
            "var_residual": (returns - values).var(correction=0),
        }
        if value_loss is not None:  # None when the update was skipped before V trained on the replay
            scalars["value_loss"] = value_loss
        c_hat = self.policy.control_variate
        if cv_loss is not None:  # φ was trained: not for A2C's estimator, nor in a skipped update
            scalars["cv_loss"] = cv_loss
            if c_hat.relaxation.has_temperature and c_hat.relaxed_input:
                scalars["temperature"] = c_hat.temperature()
        scalars.update(self.policy.estimator.kind.logged(params))  # a Gaussian's σ
        host = th.stack([v.detach().float().reshape(()) for v in scalars.values()]).tolist()
        logged = dict(zip(scalars, host, strict=True))
        var_returns, var_residual = logged.pop("var_returns"), logged.pop("var_residual")
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", math.nan if var_returns == 0 else 1 - var_residual / var_returns)
        for key, value in logged.items():
            self.logger.record(f"train/{key}", value)
        if cv_loss is not None:
            self.logger.record("train/cv_learning_rate", self.cv_optimizer.param_groups[0]["lr"])

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
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
