"""How RELAX-A2C estimates the policy gradient for each kind of action space, and the errors for
spaces it cannot handle.

The policy hands the update one row of *distribution parameters* per step: the logits for
discrete spaces, ``[μ, log σ]`` (see :func:`split_mean_log_std`) for a ``Box``. An
:class:`ActionEstimator` turns them, the actions taken and the advantages into a per-step
surrogate whose gradient with respect to that row is ``ĝ_t``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from torch import Tensor

from relax_rl.estimators import (
    BernoulliRelaxation,
    CategoricalRelaxation,
    ControlVariate,
    GaussianReparam,
    MultiCategoricalRelaxation,
    Relaxation,
    all_action,
    lax,
    reinforce,
    relax,
)


class UnsupportedActionSpaceError(ValueError):
    """Raised for an action space that RELAX-A2C has no relaxation for."""


SUPPORTED_ACTION_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Box)


def relaxation_for(action_space: spaces.Space) -> tuple[Relaxation | GaussianReparam, int]:
    """The relaxation of the policy's action distribution, and the size of what ``ĉ`` reads.

    For discrete spaces ``z`` lives in logit space, so its size is the policy head's output size;
    for a ``Box`` the control variate reads the action itself.
    """
    if isinstance(action_space, spaces.Discrete):
        return CategoricalRelaxation(), int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        if action_space.nvec.ndim != 1:
            raise UnsupportedActionSpaceError(
                f"MultiDiscrete action spaces must be flat, got nvec of shape {action_space.nvec.shape}; "
                "flatten the action space with a wrapper"
            )
        nvec = [int(n) for n in action_space.nvec]
        return MultiCategoricalRelaxation(nvec), sum(nvec)
    if isinstance(action_space, spaces.MultiBinary):
        return BernoulliRelaxation(), int(np.prod(action_space.shape))
    if isinstance(action_space, spaces.Box):
        if len(action_space.shape) != 1:
            raise UnsupportedActionSpaceError(
                f"Box action spaces must be flat, got shape {action_space.shape}; "
                "reshape the actions to one dimension with a gymnasium.ActionWrapper"
            )
        if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
            raise UnsupportedActionSpaceError(
                f"Box action spaces need finite bounds (the Gaussian policy's actions are clipped to them "
                f"for the environment), got low={action_space.low}, high={action_space.high}; "
                "give the action space finite low and high, e.g. with a gymnasium.ActionWrapper"
            )
        return GaussianReparam(), int(action_space.shape[0])
    names = ", ".join(space.__name__ for space in SUPPORTED_ACTION_SPACES)
    raise UnsupportedActionSpaceError(f"RelaxA2C supports {names} action spaces, got {action_space}")


def sub_actions(action_space: spaces.Space) -> int:
    """How many sub-actions one action has: 1 for Discrete, one per dimension otherwise."""
    if isinstance(action_space, spaces.Discrete):
        return 1
    if isinstance(action_space, spaces.MultiDiscrete):
        return len(action_space.nvec)
    return int(np.prod(action_space.shape))


def actions_for_relaxation(actions: Tensor, action_space: spaces.Space) -> Tensor:
    """Rollout-buffer actions (float) in the dtype and shape the relaxation expects."""
    if isinstance(action_space, spaces.Discrete):
        return actions.long().flatten()
    if isinstance(action_space, spaces.MultiDiscrete):
        return actions.long()
    return actions.float().reshape(actions.shape[0], -1)


def split_mean_log_std(params: Tensor) -> tuple[Tensor, Tensor]:
    """A Gaussian policy's per-step distribution parameters ``[μ, log σ]``, split into ``μ`` and ``log σ``."""
    mean, log_std = params.chunk(2, dim=-1)
    return mean, log_std


def distribution_from_params(action_dist: Distribution, params: Tensor) -> Distribution:
    """SB3's ``action_dist`` set to rows of distribution parameters: logits, or ``[μ, log σ]`` for a Gaussian."""
    if isinstance(action_dist, DiagGaussianDistribution):
        return action_dist.proba_distribution(*split_mean_log_std(params))
    return action_dist.proba_distribution(action_logits=params)


#: The policy-gradient estimators RelaxA2C offers: RELAX (LAX for a ``Box``), the all-action form with an
#: additive ``q̂`` (discrete spaces), and A2C's own ``Â ∇log π``, the control with the same critic training.
PG_ESTIMATORS = ("relax", "all_action", "a2c")


def _mean_over_draws(
    draw: Callable[[Tensor], Tensor], params: Tensor, control_variate: ControlVariate, context: Tensor, n: int
) -> Tensor:
    """``E[ĉ(s, x)]`` per row, estimated from ``n`` draws ``x = draw(params)`` of what ``ĉ`` reads."""
    values = control_variate(draw(params.detach().repeat(n, 1)), context.repeat(n, 1))
    return values.view(n, -1).mean(0)


class ActionEstimator(ABC):
    """The per-step policy-gradient surrogate of one kind of action space.

    :param relaxation: what the control variate ``ĉ_φ`` relaxes its input with
    :param z_dim: the size of that input
    """

    #: Whether the surrogate reads a control variate ``ĉ_φ`` (that the algorithm must train).
    uses_control_variate = True

    def __init__(self, relaxation: Relaxation | GaussianReparam, z_dim: int):
        self.relaxation = relaxation
        self.z_dim = z_dim

    @abstractmethod
    def surrogate(
        self, params: Tensor, actions: Tensor, f: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        """Per-step surrogate whose gradient w.r.t. row ``t`` of ``params`` is ``ĝ_t``, differentiable in ``φ``."""

    @abstractmethod
    def act(self, params: Tensor, deterministic: bool = False) -> Tensor:
        """An action per step drawn from ``π(· | params_t)`` (its mode if ``deterministic``), in the form
        :meth:`log_prob` reads, with the random numbers SB3's distribution objects would draw."""

    @abstractmethod
    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        """``log π(a_t | params_t)``, one value per step."""

    @abstractmethod
    def score(self, params: Tensor, actions: Tensor) -> Tensor:
        """``∇_params log π(a_t | params_t)`` in closed form, one row per step."""

    @abstractmethod
    def control_variate_at_action(
        self, params: Tensor, actions: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        """``ĉ`` where the score term reads it (at ``z̃ | a_t``, ``a_t`` or its indicator), free of ``θ``:
        what a regression objective fits to the advantage."""

    @abstractmethod
    def mean_control_variate(
        self, params: Tensor, control_variate: ControlVariate, context: Tensor, n_samples: int = 64
    ) -> Tensor:
        """``E_{a~π}[ĉ]`` per step: the control variate's state-only part (a state baseline)."""


class RelaxEstimator(ActionEstimator):
    """Discrete actions: RELAX, with ``z`` and ``z̃`` drawn given the stored action (docs/design.md §4)."""

    relaxation: Relaxation

    def surrogate(
        self, params: Tensor, actions: Tensor, f: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        # z ~ p(z | a_t) and z̃ ~ p(z | a_t), both reparameterised in θ through the logits.
        sample = self.relaxation.sample_given(params, actions)
        # ĝ_t = [f_t − ĉ(s_t, z̃_t)] ∇θ log π(a_t|s_t) + ∇θ ĉ(s_t, z_t) − ∇θ ĉ(s_t, z̃_t)
        return relax(f, sample.log_prob, sample.z, sample.z_tilde, control_variate, context)

    def act(self, params: Tensor, deterministic: bool = False) -> Tensor:
        return self.relaxation.mode(params) if deterministic else self.relaxation.draw(params)

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        return self.relaxation.log_prob(params, actions)

    def score(self, params: Tensor, actions: Tensor) -> Tensor:
        return self.relaxation.score(params, actions)

    def control_variate_at_action(
        self, params: Tensor, actions: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        return control_variate(self.relaxation.conditional_z(params.detach(), actions), context)

    def mean_control_variate(
        self, params: Tensor, control_variate: ControlVariate, context: Tensor, n_samples: int = 64
    ) -> Tensor:
        # z̃ | a with a ~ π is distributed as z itself: average ĉ over fresh z.
        return _mean_over_draws(self.relaxation.sample_z, params, control_variate, context, n_samples)


class AllActionEstimator(RelaxEstimator):
    """Discrete actions: ``[Â − q̂(s, a)] ∇log π(a|s) + ∇θ Σ_a π(a|s) q̂(s, a)`` (docs/design.md §4b).

    ``q̂`` is affine in the action's indicator (one-hot blocks, or bits), hence additive over
    sub-actions, and its expectation under ``π`` is exact: no relaxation noise at all.
    """

    def surrogate(
        self, params: Tensor, actions: Tensor, f: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        indicator, mean = self.relaxation.indicator(params, actions), self.relaxation.mean_indicator(params)
        return all_action(f, self.log_prob(params, actions), indicator, mean, control_variate, context)

    def control_variate_at_action(
        self, params: Tensor, actions: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        return control_variate(self.relaxation.indicator(params, actions), context)

    def mean_control_variate(
        self, params: Tensor, control_variate: ControlVariate, context: Tensor, n_samples: int = 64
    ) -> Tensor:
        return control_variate(self.relaxation.mean_indicator(params.detach()), context)


class LaxEstimator(ActionEstimator):
    """``Box`` actions from a diagonal Gaussian: LAX at the executed action (docs/design.md §5)."""

    relaxation: GaussianReparam

    def surrogate(
        self, params: Tensor, actions: Tensor, f: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        mean, log_std = split_mean_log_std(params)
        std = log_std.exp()
        # a_t(θ) = μ_θ + σ_θ ε_t with ε_t rebuilt (detached) from the action taken: ĉ must see a_t itself,
        # a fresh sample would bias ĝ. ``actions`` are the sampled ones, before clipping for the env.
        a = self.relaxation.rebuild(mean, std, self.relaxation.recover_eps(actions, mean, std))
        # ĝ_t = [f_t − ĉ(s_t, a_t)] ∇θ log π(a_t|s_t) + ∇θ ĉ(s_t, μ_θ + σ_θ ε_t)
        return lax(f, self.log_prob(params, actions), a, control_variate, context)

    def act(self, params: Tensor, deterministic: bool = False) -> Tensor:
        mean, log_std = split_mean_log_std(params)
        return mean if deterministic else self.relaxation.sample(mean, log_std.exp())

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        mean, log_std = split_mean_log_std(params)
        return self.relaxation.log_prob(mean, log_std.exp(), actions)

    def score(self, params: Tensor, actions: Tensor) -> Tensor:
        mean, log_std = split_mean_log_std(params)
        return self.relaxation.score(mean, log_std.exp(), actions)

    def control_variate_at_action(
        self, params: Tensor, actions: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        return control_variate(actions, context)

    def mean_control_variate(
        self, params: Tensor, control_variate: ControlVariate, context: Tensor, n_samples: int = 64
    ) -> Tensor:
        def draw(rows: Tensor) -> Tensor:
            mean, log_std = split_mean_log_std(rows)
            return self.relaxation.sample(mean, log_std.exp())

        return _mean_over_draws(draw, params, control_variate, context, n_samples)


class ScoreFunctionEstimator(ActionEstimator):
    """A2C's ``Â_t ∇log π(a_t|s_t)``: the baseline is ``V`` alone, and no control variate is read.

    Inside RelaxA2C it is the honest control: the same critic training, the same code path.
    """

    uses_control_variate = False

    def __init__(self, inner: ActionEstimator):
        super().__init__(inner.relaxation, inner.z_dim)
        self.inner = inner

    def surrogate(
        self, params: Tensor, actions: Tensor, f: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        return reinforce(f, self.log_prob(params, actions))

    def act(self, params: Tensor, deterministic: bool = False) -> Tensor:
        return self.inner.act(params, deterministic)

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        return self.inner.log_prob(params, actions)

    def score(self, params: Tensor, actions: Tensor) -> Tensor:
        return self.inner.score(params, actions)

    def control_variate_at_action(
        self, params: Tensor, actions: Tensor, control_variate: ControlVariate, context: Tensor
    ) -> Tensor:
        # A2C's estimator reads no ĉ, but a critic's corrected targets may: the form is the inner estimator's.
        return self.inner.control_variate_at_action(params, actions, control_variate, context)

    def mean_control_variate(
        self, params: Tensor, control_variate: ControlVariate, context: Tensor, n_samples: int = 64
    ) -> Tensor:
        return self.inner.mean_control_variate(params, control_variate, context, n_samples)


def estimator_for(action_space: spaces.Space, pg_estimator: str = "relax") -> ActionEstimator:
    """The estimator for ``action_space``; raises :class:`UnsupportedActionSpaceError` for unusable spaces."""
    if pg_estimator not in PG_ESTIMATORS:
        raise ValueError(f"pg_estimator must be one of {', '.join(PG_ESTIMATORS)}, got {pg_estimator!r}")
    relaxation, z_dim = relaxation_for(action_space)
    if isinstance(relaxation, GaussianReparam):
        if pg_estimator == "all_action":
            raise ValueError(
                "pg_estimator 'all_action' sums over the actions, so it needs a discrete action space; "
                f"use 'relax' (LAX) or 'a2c' for {action_space}"
            )
        base: ActionEstimator = LaxEstimator(relaxation, z_dim)
    else:
        base = (AllActionEstimator if pg_estimator == "all_action" else RelaxEstimator)(relaxation, z_dim)
    return ScoreFunctionEstimator(base) if pg_estimator == "a2c" else base
