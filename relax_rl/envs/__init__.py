"""Environment factories."""

from relax_rl.envs.factory import BACKENDS, UnknownEnvError, get_spec, is_atari, make_vec_env

__all__ = ["BACKENDS", "UnknownEnvError", "get_spec", "is_atari", "make_vec_env"]
