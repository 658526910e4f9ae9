"""Environment factories, and the environments relax-rl adds to gymnasium's registry."""

from relax_rl.envs.ale_vec import AleVecEnv
from relax_rl.envs.factory import BACKENDS, UnknownEnvError, get_spec, is_atari, make_vec_env
from relax_rl.envs.reference import AffineReward, exact_reference
from relax_rl.envs.target_matching import TargetMatchingEnv, register_target_matching
from relax_rl.envs.torch_envs import TORCH_ENVS, TorchVecEnv

register_target_matching()

__all__ = [
    "BACKENDS",
    "TORCH_ENVS",
    "AffineReward",
    "AleVecEnv",
    "TargetMatchingEnv",
    "TorchVecEnv",
    "UnknownEnvError",
    "exact_reference",
    "get_spec",
    "is_atari",
    "make_vec_env",
]
