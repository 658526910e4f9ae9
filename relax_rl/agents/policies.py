"""Actor-critic policies that also own the control-variate head ``ĉ_φ``."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import Schedule

from relax_rl.agents.distributions import batched, distribution_from_params
from relax_rl.agents.pg_estimators import control_variate_architecture, estimator_for
from relax_rl.estimators import READS_PARAMS, make_control_variate


def distribution_params(policy: ActorCriticPolicy, latent_pi: th.Tensor) -> th.Tensor:
    """One row of distribution parameters per step: the logits, or ``[μ, log σ]`` for a ``Box``.

    A state-independent ``log σ`` (SB3's) is expanded to one row per step, so that each step's
    gradient ``ĝ_t`` has its own ``log σ`` part; :class:`RelaxActorCriticPolicy`'s ``log_std_head`` is read.
    """
    out = policy.action_net(latent_pi)
    if not isinstance(policy.action_dist, DiagGaussianDistribution):
        return out
    log_std = policy.log_std_net(latent_pi) if getattr(policy, "log_std_head", False) else policy.log_std.expand_as(out)
    return th.cat([out, log_std], dim=-1)


def params_values_features(
    policy: ActorCriticPolicy, obs: th.Tensor, with_values: bool = True
) -> tuple[th.Tensor, th.Tensor | None, th.Tensor]:
    """The forward pass of any SB3 actor-critic policy, SB3's own and :class:`RelaxActorCriticPolicy`, from
    SB3's public pieces: per-step :func:`distribution_params` (connected to θ), state values ``(N, 1)`` (None
    without ``with_values``: the critic's pass is skipped) and the actor's features (what ``ĉ_φ`` reads)."""
    features = policy.extract_features(obs)
    if policy.share_features_extractor:
        pi_features = vf_features = features
    else:
        pi_features, vf_features = features
    params = distribution_params(policy, policy.mlp_extractor.forward_actor(pi_features))
    values = policy.value_net(policy.mlp_extractor.forward_critic(vf_features)) if with_values else None
    return params, values, pi_features


class RelaxActorCriticPolicy(ActorCriticPolicy):
    """SB3's actor-critic policy plus ``ĉ_φ(stopgrad(features(s)), relax(z, τ))``.

    The control variate reads the shared features *detached*: it must not
    carry gradient into the policy through ``s`` (docs/design.md §4). Its
    parameters, temperature included, are left out of the policy optimiser;
    the algorithm trains them on the variance objective with an optimiser of
    their own. For a ``Box`` action space the policy is SB3's diagonal Gaussian and
    ``ĉ_φ`` reads the action itself (no relaxation, no temperature).

    :param pg_estimator: ``"relax"`` (LAX for a ``Box``), ``"all_action"`` (discrete spaces: ``q̂`` affine in
        the action's one-hot blocks or bits, summed over the actions exactly) or ``"a2c"`` (no control
        variate: A2C's estimator, the control); RelaxA2C passes its own
    :param cv_net_arch: hidden layer sizes of ``ĉ_φ``
    :param cv_activation_fn: ``ĉ_φ``'s activation, as SB3's ``activation_fn`` is the policy's (default ``Tanh``)
    :param cv_sub_action_net_arch: hidden layer sizes of the network that the ``"per_sub_action"`` head runs
        for every sub-action of every row: at hundreds of sub-actions it sets ``φ``'s cost. RelaxA2C's design
        for ``MultiBinary`` actions passes ``[16]``
    :param cv_arch: ``"mlp"`` on ``[features, relaxed action]``; ``"linear"``, linear in the relaxed
        action with weights from the features; ``"centred"``, the same centred on the policy's mean
        (``w · (x − π) + b``, so that the slopes and the state part ``b`` are fitted apart); ``"per_sub_action"``,
        centred, each sub-action's slopes from one network shared by the sub-actions that reads that sub-action's
        own (detached) logits; ``"factorised"``, a sum of one shared network over sub-actions. The
        ``"centred"`` and ``"per_sub_action"`` heads are for discrete action spaces. Default: ``"mlp"``; for
        ``"all_action"``, which takes the affine heads only (``linear``, ``centred``, ``per_sub_action``),
        ``"per_sub_action"`` on a ``MultiBinary`` space and ``"linear"`` on the others
    :param cv_relaxed_input: feed ``ĉ_φ`` the relaxed action ``softmax(z/τ)`` (True) or ``z`` itself;
        ``"all_action"`` feeds it the action's indicator
    :param cv_temperature: initial temperature ``τ`` of the relaxation (discrete spaces only; default 0.5)
    :param learn_temperature: whether ``τ`` is one of the parameters ``φ`` (discrete spaces only; default True)
    :param cv_temperature_bounds: the range ``τ`` is kept in while it learns
    :param cv_horizon: the rollout length ``n``, when ``ĉ_φ`` also reads a row's steps to the bootstrap
        ``h`` (as ``h / n``); 0 for not. RelaxA2C sets it from ``cv_horizon_input``
    :param cv_reads_policy: ``ĉ_φ`` also reads the policy's distribution parameters at ``s`` (detached):
        what the policy has learned about ``s`` already, e.g. each sub-action's logit
    :param log_std_head: ``Box`` spaces only: ``log σ`` is a linear head on the policy's latent,
        initialised to ``log_std_init``, instead of SB3's state-independent parameter
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        pg_estimator: str = "relax",
        cv_net_arch: Sequence[int] = (64, 64),
        cv_activation_fn: type[th.nn.Module] = th.nn.Tanh,
        cv_sub_action_net_arch: Sequence[int] = (32,),
        cv_arch: str | None = None,
        cv_relaxed_input: bool | None = None,
        cv_temperature: float | None = None,
        learn_temperature: bool | None = None,
        cv_temperature_bounds: tuple[float, float] = (0.1, 5.0),
        cv_horizon: int = 0,
        cv_reads_policy: bool = False,
        log_std_head: bool = False,
        **kwargs: Any,
    ):
        self.estimator = estimator_for(action_space, pg_estimator)
        cv_arch = control_variate_architecture(
            self.estimator,
            pg_estimator,
            cv_arch=cv_arch,
            cv_relaxed_input=cv_relaxed_input,
            cv_temperature=cv_temperature,
            learn_temperature=learn_temperature,
            cv_reads_policy=cv_reads_policy,
            log_std_head=log_std_head,
            use_sde=bool(kwargs.get("use_sde")),
        )
        if cv_horizon < 0:
            raise ValueError(f"policy_kwargs cv_horizon must be 0 (off) or the rollout length, got {cv_horizon}")
        self.pg_estimator = pg_estimator
        self.cv_net_arch = list(cv_net_arch)
        self.cv_activation_fn = cv_activation_fn
        self.cv_sub_action_net_arch = list(cv_sub_action_net_arch)
        self.cv_arch = cv_arch
        self.cv_relaxed_input = pg_estimator != "all_action" if cv_relaxed_input is None else cv_relaxed_input
        self.cv_temperature = cv_temperature
        self.learn_temperature = learn_temperature
        self.cv_temperature_bounds = tuple(cv_temperature_bounds)
        self.cv_horizon = cv_horizon
        self.cv_reads_policy = cv_reads_policy
        self.log_std_head = log_std_head
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        self.action_dist = batched(self.action_dist)
        super()._build(lr_schedule)
        if self.log_std_head:
            del self.log_std  # replaced by a state-dependent head
            self.log_std_net = th.nn.Linear(self.mlp_extractor.latent_dim_pi, self.estimator.kind.z_dim)
            if self.ortho_init:
                self.log_std_net.apply(partial(self.init_weights, gain=0.01))  # as SB3 initialises action_net
            th.nn.init.constant_(self.log_std_net.bias, self.log_std_init)
        options = {"temperature": self.cv_temperature, "learn_temperature": self.learn_temperature}
        if self.cv_arch in READS_PARAMS:
            options["params_dim"] = self.estimator.kind.params_dim
        if self.cv_arch == "per_sub_action":
            options["block_hidden"] = self.cv_sub_action_net_arch
        self.control_variate = make_control_variate(
            self.cv_arch,
            self.estimator.relaxation,
            z_dim=self.estimator.kind.z_dim,
            n_blocks=self.estimator.kind.n_sub_actions,
            context_dim=self.features_dim + bool(self.cv_horizon) + self._reads_params * self.estimator.kind.params_dim,
            hidden=self.cv_net_arch,
            activation=self.cv_activation_fn,
            relaxed_input=self.cv_relaxed_input,
            temperature_bounds=None if self.estimator.kind.continuous else self.cv_temperature_bounds,
            **{key: value for key, value in options.items() if value is not None},
        ).to(self.device)
        self._list_parameter_groups()
        # SB3 built its optimiser before the modules above existed: rebuild it over θ and ψ only.
        self.optimizer = self.optimizer_class(
            self.actor_critic_parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _list_parameter_groups(self) -> None:
        # Listed once, when the modules are built (moving or loading the policy keeps the same Parameter objects):
        # an update reads these lists several times, and walking the modules costs more than its small steps.
        cv_ids = {id(p) for p in self.control_variate.parameters()}
        self._theta_psi = [p for p in self.parameters() if id(p) not in cv_ids]
        extractor = self.features_extractor if self.share_features_extractor else self.vf_features_extractor
        critic = (extractor, self.mlp_extractor.value_net, self.value_net)
        self._psi = [p for module in critic for p in module.parameters()]
        value_only = {id(p) for p in (*self.mlp_extractor.value_net.parameters(), *self.value_net.parameters())}
        if not self.share_features_extractor:
            value_only |= {id(p) for p in self.vf_features_extractor.parameters()}
        self._theta = [p for p in self._theta_psi if id(p) not in value_only]

    def actor_critic_parameters(self) -> list[th.nn.Parameter]:
        """``θ`` and ``ψ``: every parameter except the control variate's ``φ``."""
        return self._theta_psi

    def critic_parameters(self) -> list[th.nn.Parameter]:
        """``ψ``: what the value loss trains (features shared with the actor included)."""
        return self._psi

    def actor_parameters(self) -> list[th.nn.Parameter]:
        """``θ``: what the policy gradient trains (features shared with the critic included)."""
        return self._theta

    @property
    def _reads_params(self) -> bool:
        return self.cv_reads_policy or self.cv_arch in READS_PARAMS

    def cv_context(self, features: th.Tensor, params: th.Tensor, horizon: th.Tensor) -> th.Tensor:
        """What ``ĉ_φ`` reads besides the action: the features; with ``cv_horizon`` the steps ``h`` left to the
        bootstrap (as ``h/n``); last, with ``cv_reads_policy`` or a head centred on the policy, the distribution
        parameters. All detached, so that ``ĉ`` carries no gradient into θ through ``s``, and all fixed before
        the action is drawn, which keeps the estimator unbiased (docs/design.md §4b)."""
        parts = [features.detach()]
        if self.cv_horizon:
            parts.append((horizon.to(features.dtype) / self.cv_horizon).unsqueeze(-1))
        if self._reads_params:
            parts.append(params.detach())
        return th.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def distribution_params(self, latent_pi: th.Tensor) -> th.Tensor:
        """One row of distribution parameters per step (:func:`distribution_params`)."""
        return distribution_params(self, latent_pi)

    def distribution_from_params(self, params: th.Tensor) -> Distribution:
        """SB3's action distribution for rows of :meth:`distribution_params`."""
        return distribution_from_params(self.action_dist, params)

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        # Acting and the update share one parameterisation (and the log σ head, when there is one).
        return self.distribution_from_params(self.distribution_params(latent_pi))

    def distribution_params_values_features(
        self, obs: th.Tensor, with_values: bool = True
    ) -> tuple[th.Tensor, th.Tensor | None, th.Tensor, th.Tensor]:
        """Per-step distribution parameters, state values (None without ``with_values``: the critic's
        pass is skipped), entropies and the features the control variate reads."""
        params, values, features = params_values_features(self, obs, with_values)
        entropy = self.distribution_from_params(params).entropy()
        return params, None if values is None else values.flatten(), entropy, features

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """SB3's ``forward``: actions, values and ``log π(a|s)``, with SB3's law and random numbers, drawn from
        the distribution parameters directly: building SB3's distribution objects at every step cost acting
        about 45% of its time."""
        params, values, _ = params_values_features(self, obs)
        actions = self.estimator.act(params, deterministic)
        return actions.reshape((-1, *self.action_space.shape)), values, self.estimator.log_prob(params, actions)

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        params, _, _ = params_values_features(self, observation, with_values=False)
        return self.estimator.act(params, deterministic)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            pg_estimator=self.pg_estimator,
            cv_net_arch=self.cv_net_arch,
            cv_activation_fn=self.cv_activation_fn,
            cv_sub_action_net_arch=self.cv_sub_action_net_arch,
            cv_arch=self.cv_arch,
            cv_relaxed_input=self.cv_relaxed_input,
            cv_temperature=self.cv_temperature,
            learn_temperature=self.learn_temperature,
            cv_temperature_bounds=self.cv_temperature_bounds,
            cv_horizon=self.cv_horizon,
            cv_reads_policy=self.cv_reads_policy,
            log_std_head=self.log_std_head,
        )
        return data


class RelaxActorCriticCnnPolicy(RelaxActorCriticPolicy):
    """:class:`RelaxActorCriticPolicy` on image observations (NatureCNN features)."""

    def __init__(self, *args: Any, features_extractor_class=NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class RelaxMultiInputActorCriticPolicy(RelaxActorCriticPolicy):
    """:class:`RelaxActorCriticPolicy` on dict observations."""

    def __init__(self, *args: Any, features_extractor_class=CombinedExtractor, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
