"""Warnings for the settings that decide how fast a policy trains: torch's thread count, the number of envs
each update is paid for, and a critic replay that runs a CNN."""

from __future__ import annotations

import warnings

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN


def warn_if_threads_are_slow(model: BaseAlgorithm) -> None:
    """Warn, once, when an MLP policy trains on the CPU with several torch threads.

    Its matrices are too small to split: the threads mostly wait on each other, and on a machine whose
    cores are busy that costs a large factor (benchmarks/threads). Leaving torch's global setting to the
    user is SB3's habit too; ``relax-rl`` and the Run API set one thread by default.
    """
    if (
        model.device.type == "cpu"
        and th.get_num_threads() > 1
        and isinstance(model.policy.features_extractor, FlattenExtractor)
    ):
        warnings.warn(
            f"{type(model).__name__} is training an MLP policy on the CPU with {th.get_num_threads()} torch threads; "
            "such small networks run fastest on one (see benchmarks/threads/README.md): call "
            "torch.set_num_threads(1) first (relax-rl train does, see its --threads)",
            stacklevel=3,
        )


def warn_if_one_env(model: BaseAlgorithm) -> None:
    """Warn, once, when an A2C-style model trains on a single env: every update then buys only ``n_steps``
    timesteps, and RelaxA2C's update (θ, ĉ, and V's replayed minibatches) costs the same however few rows it
    has, so one env trains several times slower per timestep than the configs' 8 (or more)."""
    if model.n_envs == 1:
        warnings.warn(
            f"{type(model).__name__} is training on a single env, so each update buys only {model.n_steps} "
            "timesteps; give it several envs, as configs/relax_a2c.yml does: make_vec_env(env_id, n_envs=8) "
            "(stable_baselines3.common.env_util) in Python, --n-envs 8 on the command line",
            stacklevel=3,
        )


def warn_if_replay_runs_a_cnn(model: BaseAlgorithm) -> None:
    """Warn, once, when ``V`` trains on a replay through a CNN: each of its ``critic_steps`` runs the CNN forward
    and backward on ``critic_batch_size`` replayed frames, several times A2C's whole update (on Pong, 16 envs,
    one CPU thread, with 2 such steps: 0.26x SB3 A2C's SPS, against 1.14x with ``critic_replay=0``;
    benchmarks/speed)."""
    if getattr(model, "critic_replay", 0) > 0 and isinstance(model.policy.features_extractor, NatureCNN):
        warnings.warn(
            f"{type(model).__name__}'s critic replay runs the CNN on {model.critic_steps} x "
            f"{model.replay_batch_size} replayed frames per update, several times A2C's cost per step; "
            "critic_replay=0 trains V on the rollout, as A2C does, at A2C's pace (configs/relax_a2c.yml does so "
            "for Atari)",
            stacklevel=3,
        )
