"""Vectorised environment factory: one entry point that picks the right backend for an env id.

Backends today: ``gymnasium`` (SB3 ``DummyVecEnv`` + ``VecMonitor``) and ``ale`` (SB3's Atari
preprocessing + 4-frame stack). New backends (torch-native, ale-py's own vector env) plug into
``_BACKENDS`` and ``_auto_backend``.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecMonitor

BACKENDS = ("auto", "gymnasium", "ale")
ATARI_FRAME_STACK = 4
MONITOR_FILE = "monitor.csv"


class UnknownEnvError(ValueError):
    """An env id that no registered environment matches; the message lists close matches."""


@cache
def _register_ale() -> bool:
    """Register ale-py's Atari ids with gymnasium once; False when ale-py is not installed."""
    try:
        import ale_py
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


def get_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """Return gymnasium's spec for ``env_id`` or raise :class:`UnknownEnvError` naming close matches."""
    _register_ale()
    try:
        return gym.spec(env_id)
    except gym.error.Error as err:
        raise UnknownEnvError(_unknown_env_message(env_id, err)) from None


def _unknown_env_message(env_id: str, err: Exception) -> str:
    name = env_id.split(":")[-1]  # "module:Env-v0" ids are looked up without their module
    by_lower = {key.lower(): key for key in gym.registry}
    matches = [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)]
    if matches:
        return f"unknown environment {env_id!r}; did you mean: {', '.join(matches)}?"
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"unknown environment {env_id!r} ({reason})"


def is_atari(env_id: str) -> bool:
    """True for ids served by ale-py (``ALE/...`` or an ``ale_py`` entry point)."""
    entry_point = get_spec(env_id).entry_point
    module = entry_point if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    return env_id.startswith("ALE/") or module.startswith("ale_py")


def make_vec_env(
    env_id: str,
    n_envs: int = 1,
    seed: int = 0,
    *,
    monitor_dir: str | os.PathLike[str] | None = None,
    wrapper_kwargs: dict[str, Any] | None = None,
    frame_stack: int | None = None,
    backend: str = "auto",
    video_dir: str | os.PathLike[str] | None = None,
    **env_kwargs: Any,
) -> VecEnv:
    """Build a seeded, monitored vectorised env for ``env_id``.

    Episode statistics appear as ``infos[i]["episode"]`` and, with ``monitor_dir``, as
    ``*monitor.csv`` files there (readable by ``stable_baselines3.common.monitor.load_results``).

    :param wrapper_kwargs: keyword arguments of SB3's ``AtariWrapper`` (ale backend only).
    :param frame_stack: stack this many observations; ``None`` means 4 for Atari, none otherwise.
    :param backend: ``"auto"`` (ale for Atari ids, gymnasium otherwise), ``"gymnasium"`` or ``"ale"``.
    :param video_dir: record every episode there with gymnasium's ``RecordVideo`` (needs ``n_envs == 1``).
    :param env_kwargs: passed to ``gymnasium.make``.
    :raises UnknownEnvError: the id is not registered.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if video_dir is not None and n_envs != 1:
        raise ValueError("video recording needs n_envs == 1")
    atari = is_atari(env_id)
    if backend == "auto":
        backend = "ale" if atari else "gymnasium"
    if backend == "ale" and not atari:
        raise ValueError(f"the ale backend only serves Atari ids, not {env_id!r}")
    if backend == "ale":
        # AtariWrapper repeats each action 4 times itself, so the emulator must not skip frames too.
        env_kwargs = {"frameskip": 1, **env_kwargs}
    if monitor_dir is not None:
        os.makedirs(monitor_dir, exist_ok=True)
    make_env = _env_constructor(env_id, video_dir, env_kwargs)
    venv = _BACKENDS[backend](make_env, n_envs, seed, monitor_dir, wrapper_kwargs)
    if frame_stack is None and backend == "ale":
        frame_stack = ATARI_FRAME_STACK
    return VecFrameStack(venv, frame_stack) if frame_stack and frame_stack > 1 else venv


def _env_constructor(
    env_id: str, video_dir: str | os.PathLike[str] | None, env_kwargs: dict[str, Any]
) -> Callable[..., gym.Env]:
    """A callable for SB3's ``make_vec_env``: ``gym.make`` plus, optionally, innermost video recording."""

    def make(**kwargs: Any) -> gym.Env:
        if video_dir is None:
            # No render_mode unless recording: training never renders, and not every env accepts one.
            return gym.make(env_id, **env_kwargs, **kwargs)
        env = gym.make(env_id, **{"render_mode": "rgb_array", **env_kwargs, **kwargs})
        # Innermost, so that videos show whole games, not the preprocessed (skipped, life-split) view.
        return gym.wrappers.RecordVideo(env, str(video_dir), episode_trigger=lambda _: True, disable_logger=True)

    return make


def _make_gymnasium(
    make_env: Callable[..., gym.Env],
    n_envs: int,
    seed: int,
    monitor_dir: str | os.PathLike[str] | None,
    wrapper_kwargs: dict[str, Any] | None,
) -> VecEnv:
    if wrapper_kwargs:
        raise ValueError("wrapper_kwargs only apply to the ale backend")
    venv = sb3_make_vec_env(make_env, n_envs=n_envs, seed=seed)
    filename = os.path.join(monitor_dir, MONITOR_FILE) if monitor_dir is not None else None
    # SB3 always adds a per-env Monitor; VecMonitor is what every backend shares (vector-native envs
    # have no per-env wrapper), so its statistics are the ones we keep and the overlap is harmless.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The environment is already wrapped with a `Monitor`")
        return VecMonitor(venv, filename=filename)


def _make_atari(
    make_env: Callable[..., gym.Env],
    n_envs: int,
    seed: int,
    monitor_dir: str | os.PathLike[str] | None,
    wrapper_kwargs: dict[str, Any] | None,
) -> VecEnv:
    # No VecMonitor here: AtariWrapper ends "episodes" at each life lost and clips rewards, so only the
    # per-env Monitor, which sits below it, sees real game scores (files: <rank>.monitor.csv).
    return make_atari_env(
        make_env,
        n_envs=n_envs,
        seed=seed,
        monitor_dir=None if monitor_dir is None else str(monitor_dir),
        wrapper_kwargs=wrapper_kwargs,
    )


_BACKENDS: dict[str, Callable[..., VecEnv]] = {"gymnasium": _make_gymnasium, "ale": _make_atari}
