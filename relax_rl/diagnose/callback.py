"""The decomposition logged during training."""

from __future__ import annotations

import warnings

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback

from relax_rl.diagnose.report import diagnose
from relax_rl.diagnose.sampling import EnvNotCopyableError, check_copyable
from relax_rl.diagnose.statistics import check_sizes


class ActionVarianceCallback(BaseCallback):
    """Logs the variance decomposition every ``interval`` timesteps, for the model's estimator and A2C's.

    Keys: ``train/action_var_frac`` (the model's own estimator; A2C's for a model without a control
    variate) and ``train/action_var_frac_a2c``, each with ``..._se``; ``train/var_ratio_loo_a2c``
    (what a better state baseline leaves of A2C's variance) and, with a control variate,
    ``train/var_ratio_own_state`` (what its action dependence leaves of its state part's) and
    ``train/var_ratio_own_a2c``.

    Each call draws ``n_states`` independent rollout rows (see :func:`diagnose`) on private copies
    of the environment. Rare rows are weighted by their probability, nothing more: where ~1% of rows
    hold an episode end in their window and carry most of the variance (CartPole), 64 states miss
    them all about half the time, so single calls scatter (and their SEs understate it then); the
    estimates are consistent, and averaging over calls is what sees the rare rows. Everything is drawn
    from forked or private random streams, so training is the same with or without it. An
    environment that cannot be copied faithfully (see :func:`check_copyable`) turns it off with a
    warning.

    Cost: about 1–1.5 s a call on CartPole-v1 at the defaults (measured on two shared CPU cores), most
    of it drawing the states (on average at most the episode limit in env steps per state): some 5% of
    RelaxA2C's training time at the default interval of 50k timesteps, and more of SB3's faster A2C's.
    """

    def __init__(
        self,
        env_id: str,
        interval: int = 50_000,
        n_states: int = 64,
        n_actions: int = 4,
        n_continuations: int = 2,
        max_age: int | None = None,
    ):
        super().__init__()
        check_sizes(n_states, n_actions, n_continuations)
        self.env: gym.Env | None = gym.make(env_id)
        self.interval, self.sizes, self.max_age = interval, (n_states, n_actions, n_continuations), max_age
        self._next = interval
        try:
            check_copyable(self.env)
        except EnvNotCopyableError as err:
            warnings.warn(
                f"train/action_var_frac is off for {env_id}: the decomposition resamples actions on copies of "
                f"the env, and {err}; --diagnose-freq 0 (diagnose_freq: 0) turns it off without this warning",
                stacklevel=2,
            )
            self.env = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.env is None or self.num_timesteps < self._next:
            return
        self._next = (self.num_timesteps // self.interval + 1) * self.interval
        result = diagnose(self.model, self.env, *self.sizes, seed=self.num_timesteps, max_age=self.max_age)
        own, a2c = result.estimators[result.own or "a2c"], result.estimators["a2c"]
        self.logger.record("train/action_var_frac", own.action_fraction.value)
        self.logger.record("train/action_var_frac_se", own.action_fraction.se)
        self.logger.record("train/action_var_frac_a2c", a2c.action_fraction.value)
        self.logger.record("train/action_var_frac_a2c_se", a2c.action_fraction.se)
        self.logger.record("train/var_ratio_mc_v_a2c", result.ratios["mc_v/a2c"]["total"].value)
        if result.own is not None:
            own_state = result.ratios[f"{result.own}/{result.own}_state"]["total"]
            self.logger.record("train/var_ratio_own_state", own_state.value)
            self.logger.record("train/var_ratio_own_a2c", result.ratios[f"{result.own}/a2c"]["total"].value)
