"""Gradient estimators for black-box functions of random variables. Pure math, no RL."""

from relax_rl.estimators.control_variates import (
    ARCHITECTURES,
    ControlVariate,
    FactorisedControlVariate,
    LinearControlVariate,
    MLPControlVariate,
    RebarControlVariate,
    SumControlVariate,
    Temperature,
    make_control_variate,
    mlp,
)
from relax_rl.estimators.estimators import (
    apply_gradients,
    concrete,
    lax,
    rebar,
    reinforce,
    relax,
    relaxed_rebar,
    variance_loss,
)
from relax_rl.estimators.relaxations import (
    BernoulliRelaxation,
    CategoricalRelaxation,
    GaussianReparam,
    MultiCategoricalRelaxation,
    Relaxation,
    RelaxedSample,
)

__all__ = [
    "ARCHITECTURES",
    "BernoulliRelaxation",
    "CategoricalRelaxation",
    "ControlVariate",
    "FactorisedControlVariate",
    "GaussianReparam",
    "LinearControlVariate",
    "MLPControlVariate",
    "MultiCategoricalRelaxation",
    "RebarControlVariate",
    "Relaxation",
    "RelaxedSample",
    "SumControlVariate",
    "Temperature",
    "apply_gradients",
    "concrete",
    "lax",
    "make_control_variate",
    "mlp",
    "rebar",
    "reinforce",
    "relax",
    "relaxed_rebar",
    "variance_loss",
]
