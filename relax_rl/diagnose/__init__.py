"""Where does the policy gradient's variance come from? (Tucker et al., 2018; docs/design.md §4b, §8)

At a fixed policy, the single-row estimate ``ĝ`` of one rollout row varies because the row's state
``s`` varies, because the action ``a ~ π(·|s)`` varies, and because what follows the action (the
rest of the return, and the relaxation noise of RELAX) varies. The law of total variance splits
``Var(ĝ)`` into those three parts. A learned control variate can only remove the action part.

What is measured is what training uses. Each sampled row is an independent rollout row: its own
copy of the environment, reset with its own seed and run on-policy to a state drawn from the state
distribution of a training env that has run for a while (see :func:`on_policy_states`; no two rows
share a trajectory). Its position ``j ~ U{0, …, n−1}`` in an ``n``-step window gives it ``h = n − j``
steps to the bootstrap, and its advantage is training's: GAE(λ) over those ``h`` steps,
bootstrapped with ``V`` at the window end, cut at a termination, and a truncation bootstrapped with
``V(terminal observation)`` as SB3 does. At each of ``N`` rows, ``M`` actions and ``K`` continuations
of each give the nested (hierarchical ANOVA) estimates of the parts, and a jackknife over the
independent rows gives every number a standard error.

The estimators, on the same rows, actions and continuations:

- ``reinforce``: REINFORCE, no baseline, with the λ-return ``R̂ = Â + V̂(s)``;
- ``a2c``: baseline ``V̂(s)``. Its "action" part holds ``(V(s) − V̂(s)) ∇log π``, which a better
  *state* baseline would remove (docs/design.md §4b);
- ``mc_v``: baseline a Monte Carlo estimate of the true ``V(s)``: the mean return of ``L`` *other* actions
  drawn at the same state, each continued once (independent of the sample, so unbiased). Its sampling
  noise, ``Var(R̂|s)/L`` times the score's norm, would sit in its action part; it is estimated from the
  same ``L`` returns and taken out, so ``mc_v`` estimates A2C with the exact ``V``, and ``mc_v / a2c`` is
  what a better ``V`` removes. (Returns are counted as samples only when independent: with deterministic
  rewards, one action's continuations are copies, which a baseline from those would not see.)
- the model's own estimator if it has a control variate (``relax``, or ``all_action``), and its own
  state part (``relax_state``, ``all_action_state``): A2C's estimator with baseline
  ``V̂(s) + E_{a~π}[ĉ(s, ·)]``. ``relax / relax_state`` is what the action dependence removes.
- on an environment with an exact reference (:mod:`relax_rl.envs.reference`, target matching): A2C with the
  exact ``V*`` (``a2c_exact_v``, one-step episodes), the model's estimator with ``V*`` in place of ``V̂``
  (``<own>_exact_v``), and the all-action estimator with the exact action value (``exact_q``: ``q = r − V̂`` on
  one-step episodes, whose estimate is then exact given the state; the exact action effect otherwise). They
  are the ceiling every learned critic is measured against.

    relax-rl diagnose --model runs/relax_a2c/CartPole-v1_s0/final_model.zip --samples 256 --json

The modules: the ANOVA and its jackknife (:mod:`.statistics`), the rows (:mod:`.sampling`), the estimates
(:mod:`.estimates`), their statistics in parameter space (:mod:`.parameter_space`), :func:`diagnose` and its
tables (:mod:`.report`), the callback that logs it during training (:mod:`.callback`), and the critics' fit
against exact references (:mod:`.reference`). ``relax-rl diagnose`` is :mod:`relax_rl.cli.diagnose`.
"""

from relax_rl.diagnose.callback import ActionVarianceCallback
from relax_rl.diagnose.estimates import sample_estimates
from relax_rl.diagnose.parameter_space import parameter_space_statistics
from relax_rl.diagnose.reference import CriticFitCallback, critic_fit, r_squared
from relax_rl.diagnose.report import Diagnosis, diagnose, format_table
from relax_rl.diagnose.sampling import (
    DEFAULT_MAX_AGE,
    EnvNotCopyableError,
    check_copyable,
    continue_rows,
    on_policy_states,
)
from relax_rl.diagnose.statistics import VarianceDecomposition, decompose_variance

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
    "on_policy_states",
    "parameter_space_statistics",
    "r_squared",
    "sample_estimates",
]
