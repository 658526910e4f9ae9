"""The one CPU setting that decides how fast a small policy trains: torch's thread count."""

from __future__ import annotations

import warnings

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import FlattenExtractor


def warn_if_threads_are_slow(model: BaseAlgorithm) -> None:
    """Warn, once, when an MLP policy trains on the CPU with several torch threads.

    Its matrices are too small to split: the threads mostly wait on each other, and on a machine whose
    cores are busy that costs a large factor (benchmarks/threads). Leaving torch's global setting to the
    user is SB3's habit too; train.py and the Run API's CLIs set one thread by default.
    """
    if (
        model.device.type == "cpu"
        and th.get_num_threads() > 1
        and isinstance(model.policy.features_extractor, FlattenExtractor)
    ):
        warnings.warn(
            f"{type(model).__name__} is training an MLP policy on the CPU with {th.get_num_threads()} torch threads; "
            "such small networks run fastest on one (see benchmarks/threads/README.md): call "
            "torch.set_num_threads(1) first (train.py does, see its --threads)",
            stacklevel=3,
        )
