"""RELAX-A2C: A2C with a learned, action-dependent control variate (DESIGN.md §4, and §5 for Box actions)."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import A2C
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv

from relax_rl.agents.policies import (
    RelaxActorCriticCnnPolicy,
    RelaxActorCriticPolicy,
    RelaxMultiInputActorCriticPolicy,
)
from relax_rl.agents.spaces import actions_for_relaxation, estimator_for, split_mean_log_std
from relax_rl.agents.tensor_rollout import TensorRolloutMixin

SelfRelaxA2C = TypeVar("SelfRelaxA2C", bound="RelaxA2C")

CV_OBJECTIVES = ("logits", "params")


def _all_finite(tensors: list[th.Tensor]) -> bool:
    return all(bool(th.isfinite(t).all()) for t in tensors)


class RelaxA2C(TensorRolloutMixin, A2C):
    """Advantage actor-critic whose baseline is ``c(s, z) = V(s) + ĉ_φ(s, relax(z, τ))``.

    Discrete, MultiDiscrete and MultiBinary actions use RELAX (DESIGN.md §4). ``Box`` actions use a
    diagonal Gaussian policy and LAX with ``c(s, a) = V(s) + ĉ_φ(s, a)`` at the executed action
    (DESIGN.md §5); actions are clipped to the bounds for the environment only. Takes every
    argument of SB3's :class:`~stable_baselines3.A2C` except ``use_sde``, plus:

    :param cv_learning_rate: Adam learning rate (or schedule) for ``φ``, the control variate
    :param cv_objective: ``"params"`` minimises ``‖Σ_t ĝ_t‖²`` over the policy parameters (the
        paper's objective, double backprop); ``"logits"`` minimises ``mean_t ‖ĝ_t^ℓ‖²`` for each
        step's distribution parameters: the logits, or ``(μ, log σ)`` for a ``Box`` (cheaper)
    :param cv_steps: gradient steps on ``φ`` per update (discrete spaces draw fresh ``z`` and ``z̃`` for each)
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
        cv_learning_rate: float | Schedule = 1e-3,
        cv_objective: str = "logits",
        cv_steps: int = 1,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        if cv_objective not in CV_OBJECTIVES:
            raise ValueError(f"cv_objective must be one of {CV_OBJECTIVES}, got {cv_objective!r}")
        if cv_steps < 1:
            raise ValueError(f"cv_steps must be a positive integer, got {cv_steps}")
        self.cv_learning_rate = cv_learning_rate
        self.skipped_updates = 0  # updates skipped for a non-finite loss or gradient, in total
        self.bad_update_streak = 0  # ... and in a row, up to the last update
        self.cv_objective = cv_objective
        self.cv_steps = cv_steps
        super().__init__(policy, env, *args, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        env = A2C._wrap_env(env, verbose, monitor_wrapper)
        # SB3 checks the action space next, with bare assertions; say what is wrong and how to fix it first.
        estimator_for(env.action_space)
        return env

    def _setup_model(self) -> None:
        super()._setup_model()
        self.cv_lr_schedule = FloatSchedule(self.cv_learning_rate)
        self.cv_optimizer = th.optim.Adam(
            self.policy.control_variate.parameters(), lr=self.cv_lr_schedule(1), foreach=True
        )

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, tensors = super()._get_torch_save_params()
        return [*state_dicts, "cv_optimizer"], tensors

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "cv_optimizer"]

    def train(self) -> None:
        """One RELAX-A2C update on the rollout buffer (DESIGN.md §4; §5 for ``Box`` actions)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        update_learning_rate(self.cv_optimizer, self.cv_lr_schedule(self._current_progress_remaining))
        c_hat, theta = self.policy.control_variate, self.policy.actor_critic_parameters()

        rollout = next(self.rollout_buffer.get(batch_size=None))
        # For a Box these are the sampled actions, stored before SB3 clips them for the env.
        actions = actions_for_relaxation(rollout.actions, self.action_space)
        # One row per step t: the logits, or [μ, log σ] for a Box.
        params, values, entropy, features = self.policy.distribution_params_values_features(rollout.observations)
        advantages = rollout.advantages  # Â_t = R̂_t − V(s_t): the V part of c = V + ĉ
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        context = features.detach()  # ĉ must not carry gradient into θ through s

        surrogate, g_params = self.relax_estimate(params, actions, advantages, context)
        # θ reaches the surrogate only through the distribution parameters, so pushing ĝ^ℓ back through
        # the network gives ∇θ of −mean_t surrogate_t, without differentiating ĉ a second time.
        policy_loss = -(g_params.detach() * params).sum() / len(params)
        value_loss = F.mse_loss(rollout.returns, values)
        entropy_loss = -entropy.mean()
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        self.policy.optimizer.zero_grad()
        loss.backward(inputs=theta, retain_graph=True)  # θ is stepped only after φ's objective is built

        # A non-finite loss or gradient must never reach the parameters: such an update is skipped.
        healthy = _all_finite([loss, *(p.grad for p in theta if p.grad is not None)])
        g_cv = g_params
        for step in range(self.cv_steps):
            if step > 0:  # ĝ at the updated φ, for the same actions and θ (with fresh z, z̃ if discrete)
                _, g_cv = self.relax_estimate(params, actions, advantages, context)
            cv_loss = self._variance_objective(g_cv, params, theta)
            self.cv_optimizer.zero_grad()
            cv_loss.backward(inputs=list(c_hat.parameters()), retain_graph=step < self.cv_steps - 1)
            healthy = healthy and _all_finite([cv_loss, *(p.grad for p in c_hat.parameters() if p.grad is not None)])
            if not healthy:
                break
            self.cv_optimizer.step()

        if healthy:
            th.nn.utils.clip_grad_norm_(theta, self.max_grad_norm)
            self.policy.optimizer.step()
        self.bad_update_streak = 0 if healthy else self.bad_update_streak + 1
        self.skipped_updates += not healthy
        self.logger.record("train/skipped_updates", self.skipped_updates)

        self._n_updates += 1
        self._log_update(surrogate, g_params, params, entropy_loss, value_loss, cv_loss)
        self._log_a2c_gradient_variance(params, actions, advantages)

    def relax_estimate(
        self, params: th.Tensor, actions: th.Tensor, advantages: th.Tensor, context: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        """The per-step surrogate (RELAX; LAX for a ``Box``) and ``ĝ_t^ℓ``, its gradient for step t's
        distribution parameters, differentiable in φ."""
        surrogate = self.policy.estimator.surrogate(params, actions, advantages, self.policy.control_variate, context)
        return surrogate, th.autograd.grad(surrogate.sum(), params, create_graph=True)[0]

    def _variance_objective(self, g_params: th.Tensor, params: th.Tensor, theta: list[th.Tensor]) -> th.Tensor:
        """A single-sample estimate of the estimator's variance, up to a constant free of φ (DESIGN.md §4)."""
        if self.cv_objective == "logits":  # mean_t ‖ĝ_t^ℓ‖² over each step's distribution parameters
            return g_params.pow(2).sum(-1).mean()
        # ‖Σ_t ĝ_t‖² over the policy parameters: ĝ_θ = (∂params/∂θ)ᵀ ĝ^ℓ, by double backprop.
        g_theta = th.autograd.grad(params, theta, g_params / len(params), create_graph=True, allow_unused=True)
        return sum(g.pow(2).sum() for g in g_theta if g is not None)

    def _log_update(
        self,
        surrogate: th.Tensor,
        g_params: th.Tensor,
        params: th.Tensor,
        entropy_loss: th.Tensor,
        value_loss: th.Tensor,
        cv_loss: th.Tensor,
    ) -> None:
        """SB3's A2C keys, plus the control variate's loss (and temperature) and the gradient variance.

        ``policy_grad_var`` is the trace of the covariance of the per-step estimates ``ĝ_t^ℓ`` across
        the rollout: a cheap proxy for the policy gradient's variance, computed every update.
        """
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/policy_loss", -surrogate.mean().item())
        self.logger.record("train/value_loss", value_loss.item())
        self.logger.record("train/cv_loss", cv_loss.item())
        self.logger.record("train/cv_learning_rate", self.cv_optimizer.param_groups[0]["lr"])
        c_hat = self.policy.control_variate
        if c_hat.relaxation.has_temperature:
            self.logger.record("train/temperature", c_hat.temperature().item())
        if isinstance(self.action_space, spaces.Box):
            self.logger.record("train/std", split_mean_log_std(params)[1].detach().exp().mean().item())
        self.logger.record("train/policy_grad_var", g_params.detach().var(dim=0).sum().item())

    def _log_a2c_gradient_variance(self, params: th.Tensor, actions: th.Tensor, advantages: th.Tensor) -> None:
        """``policy_grad_var`` for A2C's estimate ``Â_t ∇ log π(a_t|s_t)`` on the same rollout, for comparison."""
        g_a2c = advantages.detach().unsqueeze(-1) * self.policy.estimator.score(params.detach(), actions)
        self.logger.record("train/policy_grad_var_a2c", g_a2c.var(dim=0).sum().item())

    def learn(
        self: SelfRelaxA2C,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "RelaxA2C",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRelaxA2C:
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
