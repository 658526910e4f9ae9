"""Where the policy gradient's variance comes from: the decomposition (:mod:`.decomposition`), the
callback that logs it during training, and the critics' fit against exact references (:mod:`.reference`).
``relax-rl diagnose`` is :mod:`relax_rl.cli.diagnose`."""

from relax_rl.diagnose.decomposition import (
    DEFAULT_MAX_AGE,
    ActionVarianceCallback,
    Diagnosis,
    EnvNotCopyableError,
    VarianceDecomposition,
    check_copyable,
    continue_rows,
    decompose_variance,
    diagnose,
    format_table,
    observes_raw_env,
    on_policy_states,
    parameter_space_statistics,
    sample_estimates,
)
from relax_rl.diagnose.reference import CriticFitCallback, critic_fit, r_squared

__all__ = [
    "DEFAULT_MAX_AGE",
    "ActionVarianceCallback",
    "CriticFitCallback",
    "Diagnosis",
    "EnvNotCopyableError",
    "VarianceDecomposition",
    "check_copyable",
    "continue_rows",
    "critic_fit",
    "decompose_variance",
    "diagnose",
    "format_table",
    "observes_raw_env",
    "on_policy_states",
    "parameter_space_statistics",
    "r_squared",
    "sample_estimates",
]
