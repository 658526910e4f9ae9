"""Torch-native vectorised environments; adding one is a subclass of :class:`TorchVecEnv` and an entry in
:data:`TORCH_ENVS`."""

from __future__ import annotations

from relax_rl.envs.torch_envs.base import TorchVecEnv
from relax_rl.envs.torch_envs.cartpole import CartPoleTorchEnv

#: gymnasium id -> class; the time limit comes from the id's gymnasium spec (500 steps for v1, 200 for v0).
TORCH_ENVS: dict[str, type[TorchVecEnv]] = {"CartPole-v1": CartPoleTorchEnv, "CartPole-v0": CartPoleTorchEnv}

__all__ = ["TORCH_ENVS", "CartPoleTorchEnv", "TorchVecEnv"]
