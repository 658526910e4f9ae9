"""How RELAX-A2C estimates the policy gradient, per kind of action space: the estimators, their factory, and
the policy options that only some estimators or action spaces take.

An :class:`ActionEstimator` turns one row of distribution parameters per step (see
:mod:`relax_rl.agents.action_spaces`), the actions taken and the advantages into a per-step surrogate whose
gradient with respect to that row is ``ĝ_t``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from gymnasium import spaces
from torch import Tensor
from torch.autograd import grad

from relax_rl.agents.action_spaces import ActionSpaceKind, action_space_kind, split_mean_log_std
from relax_rl.estimators import (
    AFFINE,
    ARCHITECTURES,
    READS_PARAMS,
    ControlVariate,
    GaussianReparam,
    Relaxation,
    all_action,
    lax,
    reinforce,
    relax,
)

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

    :param kind: the action space's kind; its relaxation is what the control variate ``ĉ_φ`` reads the
        action through
    """

    #: Whether the surrogate reads a control variate ``ĉ_φ`` (that the algorithm must train).
    uses_control_variate = True

    def __init__(self, kind: ActionSpaceKind):
        self.kind = kind
        self.relaxation: Relaxation | GaussianReparam = kind.relaxation

    @abstractmethod
    def surrogate(
        self,
        params: Tensor,
        actions: Tensor,
        f: Tensor,
        control_variate: ControlVariate,
        context: Tensor,
        *,
        phi_path: bool = True,
    ) -> Tensor:
        """Per-step surrogate whose gradient w.r.t. row ``t`` of ``params`` is ``ĝ_t``, differentiable in ``φ`` unless
        ``phi_path`` is False (then the control variate may be evaluated at fewer rows)."""

    def estimate(
        self,
        params: Tensor,
        actions: Tensor,
        f: Tensor,
        control_variate: ControlVariate,
        context: Tensor,
        create_graph: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """The per-step surrogate and ``ĝ_t^ℓ``, its gradient for step t's row of ``params``: differentiable in φ
        unless ``create_graph`` is False (no φ objective reads it, so neither the double-backward graph nor the
        surrogate's φ-path is built)."""
        surrogate = self.surrogate(params, actions, f, control_variate, context, phi_path=create_graph)
        return surrogate, grad(surrogate.sum(), params, create_graph=create_graph)[0]

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
        self,
        params: Tensor,
        actions: Tensor,
        f: Tensor,
        control_variate: ControlVariate,
        context: Tensor,
        *,
        phi_path: bool = True,
    ) -> Tensor:
        # z ~ p(z | a_t) and z̃ ~ p(z | a_t), both reparameterised in θ through the logits.
        sample = self.relaxation.sample_given(params, actions)
        # ĝ_t = [f_t − ĉ(s_t, z̃_t)] ∇θ log π(a_t|s_t) + ∇θ ĉ(s_t, z_t) − ∇θ ĉ(s_t, z̃_t)
        return relax(f, sample.log_prob, sample.z, sample.z_tilde, control_variate, context, phi_path=phi_path)

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
        self,
        params: Tensor,
        actions: Tensor,
        f: Tensor,
        control_variate: ControlVariate,
        context: Tensor,
        *,
        phi_path: bool = True,
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
        self,
        params: Tensor,
        actions: Tensor,
        f: Tensor,
        control_variate: ControlVariate,
        context: Tensor,
        *,
        phi_path: bool = True,
    ) -> Tensor:
        mean, log_std = split_mean_log_std(params)
        std = log_std.exp()
        # a_t(θ) = μ_θ + σ_θ ε_t with ε_t rebuilt (detached) from the action taken: ĉ must see a_t itself,
        # a fresh sample would bias ĝ. ``actions`` are the sampled ones, before clipping for the env.
        a = self.relaxation.rebuild(mean, std, self.relaxation.recover_eps(actions, mean, std))
        # ĝ_t = [f_t − ĉ(s_t, a_t)] ∇θ log π(a_t|s_t) + ∇θ ĉ(s_t, μ_θ + σ_θ ε_t)
        return lax(f, self.log_prob(params, actions), a, control_variate, context, phi_path=phi_path)

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
        super().__init__(inner.kind)
        self.inner = inner

    def surrogate(
        self,
        params: Tensor,
        actions: Tensor,
        f: Tensor,
        control_variate: ControlVariate,
        context: Tensor,
        *,
        phi_path: bool = True,
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
    """The estimator for ``action_space``; raises :class:`~relax_rl.agents.action_spaces.UnsupportedActionSpaceError`
    for unusable spaces."""
    if pg_estimator not in PG_ESTIMATORS:
        raise ValueError(f"pg_estimator must be one of {', '.join(PG_ESTIMATORS)}, got {pg_estimator!r}")
    kind = action_space_kind(action_space)
    if kind.continuous:
        if pg_estimator == "all_action":
            raise ValueError(
                "pg_estimator 'all_action' sums over the actions, so it needs a discrete action space; "
                f"use 'relax' (LAX) or 'a2c' for {action_space}"
            )
        base: ActionEstimator = LaxEstimator(kind)
    else:
        base = (AllActionEstimator if pg_estimator == "all_action" else RelaxEstimator)(kind)
    return ScoreFunctionEstimator(base) if pg_estimator == "a2c" else base


def control_variate_architecture(
    estimator: ActionEstimator,
    pg_estimator: str,
    *,
    cv_arch: str | None,
    cv_relaxed_input: bool | None,
    cv_temperature: float | None,
    learn_temperature: bool | None,
    cv_reads_policy: bool,
    log_std_head: bool,
    use_sde: bool,
) -> str:
    """Check the policy options that only some estimators or action spaces take, against each other; the
    control variate's architecture, resolved (``cv_arch`` None: ``per_sub_action`` for the all-action form on
    bits, ``linear`` on other discrete spaces, else ``mlp``). Raises ValueError naming the option and the fix."""
    kind = estimator.kind
    space = type(kind.space).__name__
    temperature_options = {"cv_temperature": cv_temperature, "learn_temperature": learn_temperature}
    given = [name for name, value in temperature_options.items() if value is not None]
    if given and kind.continuous:
        options, verb, pronoun = (given[0], "is", "it") if len(given) == 1 else (" and ".join(given), "are", "them")
        raise ValueError(
            f"policy_kwargs {options} {verb} for discrete action spaces only (the temperature of their "
            f"relaxation); a {space} action space has nothing to relax, so remove {pronoun}"
        )
    if cv_reads_policy and kind.continuous:
        raise ValueError(
            f"policy_kwargs cv_reads_policy is for discrete action spaces (ĉ reads each sub-action's logits); "
            f"a {space} action space's ĉ reads the action itself: remove it"
        )
    if log_std_head and not kind.continuous:
        raise ValueError(f"policy_kwargs log_std_head only applies to Box action spaces, not {kind.space}")
    if use_sde:
        raise ValueError(
            "RelaxA2C does not support use_sde: gSDE shares its noise across steps, so a step's ε "
            "cannot be rebuilt from its action alone; use the default diagonal Gaussian"
        )
    if pg_estimator == "all_action" and (cv_arch not in (None, *AFFINE) or cv_relaxed_input):
        raise ValueError(
            "pg_estimator 'all_action' needs q̂ affine in the action, so that its mean over the actions is "
            f"exact: cv_arch must be {', '.join(AFFINE)} (a head on the action's indicator), "
            "and cv_relaxed_input unset"
        )
    cv_arch = cv_arch or (kind.all_action_head if pg_estimator == "all_action" else "mlp")
    if cv_arch not in ARCHITECTURES:
        raise ValueError(f"policy_kwargs cv_arch must be one of {', '.join(ARCHITECTURES)}, got {cv_arch!r}")
    if cv_arch in READS_PARAMS and kind.continuous:
        raise ValueError(
            f"policy_kwargs cv_arch {cv_arch!r} centres ĉ on a discrete policy's probabilities; a "
            f"{space} action space has none: use 'mlp' or 'linear'"
        )
    return cv_arch
