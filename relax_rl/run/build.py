"""Build what a run trains: its envs (training and evaluation) and its model, from a RunConfig."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from relax_rl.config import RunConfig, load_algo_class
from relax_rl.envs import is_atari, make_vec_env
from relax_rl.errors import UsageError, first_line

# Evaluation envs get seeds far from the training envs' seed..seed+n_envs-1.
EVAL_SEED_OFFSET = 10_000
SCHEDULE_KEYS = ("learning_rate", "cv_learning_rate")


def observes_raw_env(config: RunConfig) -> bool:
    """Whether the run's policy sees the env's own observations, which the variance decomposition
    (:mod:`relax_rl.diagnose`) resamples on copies of the env: not when VecNormalize, frame stacking or Atari
    preprocessing sit in between."""
    return not (config.normalize or config.frame_stack or is_atari(config.env))


def make_env(config: RunConfig, run_dir: Path, *, training: bool) -> VecEnv:
    """Training env (monitored into run_dir) or evaluation env, normalised as the config says."""
    normalize = config.normalize_kwargs()
    # VecNormalize works on numpy: a normalised run keeps gymnasium's envs rather than torch ones.
    backend = "gymnasium" if normalize is not None and not is_atari(config.env) else "auto"
    try:
        if training:
            env = make_vec_env(
                config.env,
                config.n_envs,
                config.seed,
                device=config.device,
                monitor_dir=run_dir,
                frame_stack=config.frame_stack,
                backend=backend,
            )
        else:
            env = make_vec_env(
                config.env, 1, config.seed + EVAL_SEED_OFFSET, frame_stack=config.frame_stack, backend=backend
            )
    except (gym.error.Error, ValueError) as err:  # ValueError: n_envs, device or backend that cannot serve the env
        raise UsageError(f"cannot create {config.env}: {first_line(err)}") from None
    if normalize is None:
        return env
    if not training:
        # EvalCallback copies the training statistics into this env before each evaluation.
        normalize = {**normalize, "training": False, "norm_reward": False}
    try:
        return VecNormalize(env, **normalize)
    except TypeError as err:
        raise UsageError(f"normalize: {first_line(err)}") from None


def make_model(config: RunConfig, env: VecEnv, run_dir: Path) -> BaseAlgorithm:
    """The algorithm of ``config`` on ``env``, logging TensorBoard events into ``run_dir``."""
    algo_cls = load_algo_class(config.algo)
    kwargs = with_torch_objects(config.algo_kwargs)
    try:
        return algo_cls(
            config.policy, env, seed=config.seed, device=config.device, tensorboard_log=str(run_dir), **kwargs
        )
    except (AssertionError, ValueError, NotImplementedError, KeyError) as err:
        # SB3 asserts on unsupported spaces and raises ValueError/KeyError for unknown policies.
        raise UsageError(f"{config.algo} cannot train on {config.env}: {first_line(err)}") from None


def with_torch_objects(algo_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Build what YAML cannot hold: ``activation_fn: ReLU`` (or ``cv_activation_fn``) becomes ``torch.nn.ReLU``,
    and a learning rate ``lin_X`` (rl-baselines3-zoo's notation) a schedule falling linearly from X to 0."""
    kwargs = dict(algo_kwargs)
    for key in SCHEDULE_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str):
            try:
                kwargs[key] = LinearSchedule(float(value.removeprefix("lin_")), 0.0, 1.0)
            except ValueError:
                raise UsageError(f"{key}: {value!r} is neither a number nor lin_<number>") from None
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    for key in ("activation_fn", "cv_activation_fn"):
        name = policy_kwargs.get(key)
        if isinstance(name, str):
            if not isinstance(getattr(torch.nn, name, None), type):
                raise UsageError(f"policy_kwargs.{key}: {name!r} is not a torch.nn module (e.g. ReLU, Tanh)")
            policy_kwargs[key] = getattr(torch.nn, name)
            kwargs["policy_kwargs"] = policy_kwargs
    return kwargs
