"""CartPoles that misbehave on purpose, registered with gymnasium on import (in subprocesses too):

- ``relax-rl-test/TripwireCartPole-v1`` trips at a chosen step when ``RELAX_RL_TEST_TRIPWIRE`` asks:
  ``"<step>:pause:<file>"`` creates ``file`` and hangs, for the test to kill the process;
  ``"<step>:SIGTERM"`` (or any signal name) sends that signal to its own process. The setting is read
  at every step, never stored, so the copy of the env that a checkpoint holds does not trip again
  in the resumed run; and it trips once per process, in whichever training env gets there first.
  Evaluation envs (seeded from ``EVAL_SEED_OFFSET`` on) never trip: how many steps they have taken by
  a given timestep depends on how well the policy plays, which is no fixed point to interrupt at.
- ``relax-rl-test/NaNRewardCartPole-v1`` returns NaN rewards after its first ``NAN_AFTER`` steps.
- ``relax-rl-test/HollowCopyCartPole-v1`` deep-copies without error into a copy that cannot step, as
  Box2D's envs do (their bodies live in native code); ``.../DriftingCopyCartPole-v1`` copies into one
  that steps differently.
"""

import copy
import math
import os
import signal
import time
from pathlib import Path

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from relax_rl.run import EVAL_SEED_OFFSET

TRIPWIRE = "RELAX_RL_TEST_TRIPWIRE"
NAN_AFTER = 60
HANG_LIMIT_S = 120  # a paused process that nobody kills exits by itself
_tripped: set[str] = set()


class TripwireCartPole(CartPoleEnv):
    """CartPole-v1 that counts its steps and trips as ``RELAX_RL_TEST_TRIPWIRE`` says."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = 0
        self.evaluation: bool | None = None  # known at the first seeded reset

    def reset(self, *, seed=None, options=None):
        if seed is not None and self.evaluation is None:
            self.evaluation = seed >= EVAL_SEED_OFFSET
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps += 1
        setting = os.environ.get(TRIPWIRE, "")
        step, _, what = setting.partition(":")
        if setting and not self.evaluation and int(step) == self.steps and setting not in _tripped:
            _tripped.add(setting)
            _trip(what)
        return super().step(action)


def _trip(what: str) -> None:
    kind, _, argument = what.partition(":")
    if kind != "pause":
        os.kill(os.getpid(), signal.Signals[kind])
        return
    Path(argument).touch()
    deadline = time.monotonic() + HANG_LIMIT_S
    while time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(99)


class NaNRewardCartPole(CartPoleEnv):
    """CartPole-v1 whose reward is NaN from its ``NAN_AFTER + 1``-th step on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, math.nan if self.steps > NAN_AFTER else reward, terminated, truncated, info


class HollowCopyCartPole(CartPoleEnv):
    """CartPole-v1 whose deep copy has lost its state: stepping the copy fails, like a copied Box2D env."""

    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        clone.state = None
        return clone


class DriftingCopyCartPole(CartPoleEnv):
    """CartPole-v1 whose deep copy steps without error but from a perturbed state."""

    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        clone.state = tuple(x + 0.01 for x in self.state)
        return clone


gym.register("relax-rl-test/HollowCopyCartPole-v1", entry_point=HollowCopyCartPole, max_episode_steps=500)
gym.register("relax-rl-test/DriftingCopyCartPole-v1", entry_point=DriftingCopyCartPole, max_episode_steps=500)
gym.register("relax-rl-test/TripwireCartPole-v1", entry_point=TripwireCartPole, max_episode_steps=500)
gym.register("relax-rl-test/NaNRewardCartPole-v1", entry_point=NaNRewardCartPole, max_episode_steps=500)
