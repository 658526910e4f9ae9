"""RELAX-A2C: A2C with a learned, action-dependent control variate (DESIGN.md §4)."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import torch as th
import torch.nn.functional as F
from stable_baselines3 import A2C
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance, update_learning_rate

from relax_rl.agents.policies import (
    RelaxActorCriticCnnPolicy,
    RelaxActorCriticPolicy,
    RelaxMultiInputActorCriticPolicy,
)
from relax_rl.agents.spaces import SUPPORTED_ACTION_SPACES, UnsupportedActionSpaceError, actions_for_relaxation
from relax_rl.estimators import relax

SelfRelaxA2C = TypeVar("SelfRelaxA2C", bound="RelaxA2C")

CV_OBJECTIVES = ("logits", "params")


class RelaxA2C(A2C):
    """Advantage actor-critic whose baseline is ``c(s, z) = V(s) + ĉ_φ(s, relax(z, τ))``.

    Takes every argument of SB3's :class:`~stable_baselines3.A2C`, plus:

    :param cv_learning_rate: Adam learning rate (or schedule) for ``φ``, the control variate
    :param cv_objective: ``"params"`` minimises ``‖Σ_t ĝ_t‖²`` over the policy parameters (the
        paper's objective, double backprop); ``"logits"`` minimises ``mean_t ‖ĝ_t^ℓ‖²`` for the
        logits of each step (cheaper)
    :param cv_steps: gradient steps on ``φ`` per update, each with fresh ``z`` and ``z̃``
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
        self.cv_objective = cv_objective
        self.cv_steps = cv_steps
        super().__init__(policy, env, *args, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if not isinstance(self.action_space, SUPPORTED_ACTION_SPACES):
            raise UnsupportedActionSpaceError(
                f"RelaxA2C supports Discrete, MultiDiscrete and MultiBinary action spaces, got {self.action_space}"
            )
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
        """One RELAX-A2C update on the rollout buffer (DESIGN.md §4)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        update_learning_rate(self.cv_optimizer, self.cv_lr_schedule(self._current_progress_remaining))
        c_hat, theta = self.policy.control_variate, self.policy.actor_critic_parameters()

        rollout = next(self.rollout_buffer.get(batch_size=None))
        actions = actions_for_relaxation(rollout.actions, self.action_space)
        logits, values, entropy, features = self.policy.logits_values_features(rollout.observations)
        advantages = rollout.advantages  # Â_t = R̂_t − V(s_t): the V part of c = V + ĉ
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        context = features.detach()  # ĉ must not carry gradient into θ through s

        surrogate, g_logits = self.relax_estimate(logits, actions, advantages, context)
        # θ reaches the surrogate only through the logits, so pushing ĝ^ℓ back through the
        # network gives ∇θ of −mean_t surrogate_t, without differentiating ĉ a second time.
        policy_loss = -(g_logits.detach() * logits).sum() / len(logits)
        value_loss = F.mse_loss(rollout.returns, values)
        entropy_loss = -entropy.mean()
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        self.policy.optimizer.zero_grad()
        loss.backward(inputs=theta, retain_graph=True)  # θ is stepped only after φ's objective is built

        g_cv = g_logits
        for step in range(self.cv_steps):
            if step > 0:  # fresh z and z̃ for the same actions, at the same θ
                _, g_cv = self.relax_estimate(logits, actions, advantages, context)
            cv_loss = self._variance_objective(g_cv, logits, theta)
            self.cv_optimizer.zero_grad()
            cv_loss.backward(inputs=list(c_hat.parameters()), retain_graph=step < self.cv_steps - 1)
            self.cv_optimizer.step()

        th.nn.utils.clip_grad_norm_(theta, self.max_grad_norm)
        self.policy.optimizer.step()

        self._n_updates += 1
        self._log_update(surrogate, g_logits, entropy_loss, value_loss, cv_loss)
        self._log_a2c_gradient_variance(logits, actions, advantages)

    def relax_estimate(
        self, logits: th.Tensor, actions: th.Tensor, advantages: th.Tensor, context: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        """The per-step RELAX surrogate and ``ĝ_t^ℓ``, its gradient for step t's logits, differentiable in φ."""
        # z ~ p(z | a_t) and z̃ ~ p(z | a_t), both reparameterised in θ through the logits.
        sample = self.policy.relaxation.sample_given(logits, actions)
        # ĝ_t = [Â_t − ĉ(s_t, z̃_t)] ∇θ log π(a_t|s_t) + ∇θ ĉ(s_t, z_t) − ∇θ ĉ(s_t, z̃_t)
        surrogate = relax(advantages, sample.log_prob, sample.z, sample.z_tilde, self.policy.control_variate, context)
        return surrogate, th.autograd.grad(surrogate.sum(), logits, create_graph=True)[0]

    def _variance_objective(self, g_logits: th.Tensor, logits: th.Tensor, theta: list[th.Tensor]) -> th.Tensor:
        """A single-sample estimate of the estimator's variance, up to a constant free of φ (DESIGN.md §4)."""
        if self.cv_objective == "logits":  # mean_t ‖ĝ_t^ℓ‖²
            return g_logits.pow(2).sum(-1).mean()
        # ‖Σ_t ĝ_t‖² over the policy parameters: ĝ_θ = (∂logits/∂θ)ᵀ ĝ^ℓ, by double backprop.
        g_theta = th.autograd.grad(logits, theta, g_logits / len(logits), create_graph=True, allow_unused=True)
        return sum(g.pow(2).sum() for g in g_theta if g is not None)

    def _log_update(
        self,
        surrogate: th.Tensor,
        g_logits: th.Tensor,
        entropy_loss: th.Tensor,
        value_loss: th.Tensor,
        cv_loss: th.Tensor,
    ) -> None:
        """SB3's A2C keys, plus the control variate's loss and temperature and the gradient variance.

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
        self.logger.record("train/temperature", self.policy.control_variate.temperature().item())
        self.logger.record("train/policy_grad_var", g_logits.detach().var(dim=0).sum().item())

    def _log_a2c_gradient_variance(self, logits: th.Tensor, actions: th.Tensor, advantages: th.Tensor) -> None:
        """``policy_grad_var`` for A2C's estimate ``Â_t ∇ log π(a_t|s_t)`` on the same rollout, for comparison."""
        g_a2c = advantages.detach().unsqueeze(-1) * self.policy.relaxation.score(logits.detach(), actions)
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
