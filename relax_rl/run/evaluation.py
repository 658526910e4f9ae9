"""Evaluate a saved model on fresh episodes, with the VecNormalize statistics saved beside it."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from relax_rl.config import load_algo_class
from relax_rl.envs import make_vec_env
from relax_rl.errors import UsageError, first_line
from relax_rl.run.files import VECNORMALIZE_FILE, read_model_data
from relax_rl.run.saving import stats_path_for
from relax_rl.safe_load import (
    EnvMismatchError,
    UnsafeModelError,
    check_spaces,
    load_model_safely,
    load_normalization,
    read_embedded_normalization,
)


def evaluate(
    model_path: Path,
    algo: str,
    env_id: str,
    episodes: int,
    deterministic: bool,
    seed: int,
    frame_stack: int | None = None,
    video_dir: Path | None = None,
    device: str = "auto",
    *,
    unsafe_load: bool = False,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of the saved model, with the VecNormalize statistics it was saved with
    (stored in the zip by :func:`relax_rl.run.saving.save_model`; for older files, those beside it).

    The model and statistics are read from JSON and tensors only (:mod:`relax_rl.safe_load`), unless
    ``unsafe_load``: then SB3's loaders unpickle them, which runs any code a crafted file carries.
    """
    try:
        env = make_vec_env(env_id, 1, seed, frame_stack=frame_stack, video_dir=video_dir, video_episodes=episodes)
    except gym.error.Error as err:
        raise UsageError(f"cannot create {env_id}: {first_line(err)}") from None
    algo_cls = load_algo_class(algo)
    try:
        embedded = read_embedded_normalization(model_path)
        if embedded is not None:  # the statistics the model was saved with, wherever it was copied to
            env = load_normalization(embedded, env)
    except UnsafeModelError as err:
        raise UsageError(str(err)) from None
    stats = None
    if embedded is None:
        beside = (stats_path_for(model_path), model_path.with_name(VECNORMALIZE_FILE))
        stats = next((p for p in beside if p.exists()), None)
    if unsafe_load:
        model, env = _load_unpickling(model_path, algo_cls, env, env_id, stats, device)
    else:
        model, env = _load_safely(model_path, algo_cls, env, stats, device)
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=episodes, deterministic=deterministic, return_episode_rewards=True
    )
    env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": len(returns),
        "mean_length": float(np.mean(lengths)),
        "returns": [float(r) for r in returns],
        "algo": algo,
        "env": env_id,
        "model": str(model_path),
        "deterministic": deterministic,
        "seed": seed,
    }


def _load_safely(
    model_path: Path, algo_cls: type[BaseAlgorithm], env: VecEnv, stats: Path | None, device: str
) -> tuple[BaseAlgorithm, VecEnv]:
    hint = "pass --unsafe-load only if you trust the file"
    try:
        if stats is not None:
            if not stats.with_suffix(".json").is_file():
                raise UsageError(f"the normalisation statistics {stats} exist only as a pickle; {hint}")
            env = load_normalization(stats.with_suffix(".json"), env)
        return load_model_safely(model_path, algo_cls, env, device=device), env
    except EnvMismatchError as err:
        raise UsageError(f"{model_path} was not trained on this env: {err}; pass its own env with --env") from None
    except UnsafeModelError as err:
        raise UsageError(f"cannot load {model_path} safely: {err}; {hint}") from None


def _load_unpickling(
    model_path: Path, algo_cls: type[BaseAlgorithm], env: VecEnv, env_id: str, stats: Path | None, device: str
) -> tuple[BaseAlgorithm, VecEnv]:
    try:  # SB3's own message for this dumps both spaces whole
        check_spaces(read_model_data(model_path), env)
    except EnvMismatchError as err:
        raise UsageError(f"{model_path} was not trained on {env_id}: {err}; pass its own env with --env") from None
    if stats is not None:
        try:
            env = VecNormalize.load(str(stats), env)
        except (AssertionError, ValueError) as err:  # SB3 asserts that the spaces' shapes agree
            raise UsageError(f"{stats} does not fit {env_id}: {first_line(err)}") from None
        env.training, env.norm_reward = False, False  # frozen statistics, raw returns
    try:
        return algo_cls.load(model_path, env=env, device=device), env
    except (ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as err:
        # ValueError: spaces differ from the env's; the others: damaged archive contents.
        raise UsageError(f"cannot load {model_path} for {env_id}: {first_line(err)}") from None
