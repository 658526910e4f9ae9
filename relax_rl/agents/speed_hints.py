"""Warnings for the two settings that decide how fast a small policy trains: torch's thread count, and the
number of envs each update is paid for."""

from __future__ import annotations

import warnings

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import FlattenExtractor


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
