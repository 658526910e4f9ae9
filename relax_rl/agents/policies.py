"""Actor-critic policies that also own the control-variate head ``ĉ_φ``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import Schedule

from relax_rl.agents.spaces import relaxation_for
from relax_rl.estimators import MLPControlVariate


class RelaxActorCriticPolicy(ActorCriticPolicy):
    """SB3's actor-critic policy plus ``ĉ_φ(stopgrad(features(s)), relax(z, τ))``.

    The control variate reads the shared features *detached*: it must not
    carry gradient into the policy through ``s`` (DESIGN.md §4). Its
    parameters, temperature included, are left out of the policy optimiser;
    the algorithm trains them on the variance objective with an optimiser of
    their own.

    :param cv_net_arch: hidden layer sizes of ``ĉ_φ``
    :param cv_temperature: initial temperature ``τ`` of the relaxation
    :param learn_temperature: whether ``τ`` is one of the parameters ``φ``
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        cv_net_arch: Sequence[int] = (64, 64),
        cv_temperature: float = 0.5,
        learn_temperature: bool = True,
        **kwargs: Any,
    ):
        self.relaxation, self.z_dim = relaxation_for(action_space)
        self.cv_net_arch = list(cv_net_arch)
        self.cv_temperature = cv_temperature
        self.learn_temperature = learn_temperature
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)  # builds the optimiser over the actor and critic only
        self.control_variate = MLPControlVariate(
            self.relaxation,
            z_dim=self.z_dim,
            context_dim=self.features_dim,
            hidden=self.cv_net_arch,
            temperature=self.cv_temperature,
            learn_temperature=self.learn_temperature,
        ).to(self.device)

    def actor_critic_parameters(self) -> list[th.nn.Parameter]:
        """``θ`` and ``ψ``: every parameter except the control variate's ``φ``."""
        cv_ids = {id(p) for p in self.control_variate.parameters()}
        return [p for p in self.parameters() if id(p) not in cv_ids]

    def logits_values_features(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """Action logits, state values, entropies and the features the control variate reads."""
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
            cv_features = features
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
            cv_features = pi_features
        logits = self.action_net(latent_pi)
        entropy = self.action_dist.proba_distribution(logits).entropy()
        return logits, self.value_net(latent_vf).flatten(), entropy, cv_features

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            cv_net_arch=self.cv_net_arch,
            cv_temperature=self.cv_temperature,
            learn_temperature=self.learn_temperature,
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
