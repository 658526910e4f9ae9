"""Vectorised environment factory: one entry point that picks the right backend for an env id.

Backends: ``torch`` (batched tensor envs on the agent's device, :mod:`relax_rl.envs.torch_envs`),
``ale`` (ale-py's multithreaded C++ ``AtariVectorEnv``, :mod:`relax_rl.envs.ale_vec`), ``sb3_atari``
(SB3's ``AtariWrapper`` on one gymnasium env per copy, stepped in turn) and ``gymnasium`` (SB3 ``DummyVecEnv``
+ ``VecMonitor``, for everything). ``_auto_backend`` picks the fastest that serves the id.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecMonitor

from relax_rl.envs.ale_vec import AleVecEnv
from relax_rl.envs.torch_envs import TORCH_ENVS
from relax_rl.errors import first_line

BACKENDS = ("auto", "gymnasium", "torch", "ale", "sb3_atari")
ATARI_FRAME_STACK = 4
MONITOR_FILE = "monitor.csv"
#: From this many envs on, auto picks a torch env (benchmarks/speed/README.md). Below it, runs keep the
#: gymnasium envs they always had (the default of 8 envs included, on any device): torch envs draw their
#: initial states from torch's generator, so a run's numbers would change, and no GPU was measured.
TORCH_AUTO_MIN_ENVS = 64


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
    device: str | th.device = "cpu",
    monitor_dir: str | os.PathLike[str] | None = None,
    wrapper_kwargs: dict[str, Any] | None = None,
    frame_stack: int | None = None,
    backend: str = "auto",
    video_dir: str | os.PathLike[str] | None = None,
    video_episodes: int | None = None,
    **env_kwargs: Any,
) -> VecEnv:
    """Build a seeded, monitored vectorised env for ``env_id``, which ``RelaxA2C`` accepts as it is.

    Episode statistics appear as ``infos[i]["episode"]`` and, with ``monitor_dir``, as
    ``*monitor.csv`` files there (readable by ``stable_baselines3.common.monitor.load_results``).

    :param device: where a torch env keeps its tensors (``"cpu"``, ``"cuda"``, ``"auto"``); other
        backends step in numpy whatever the device.
    :param wrapper_kwargs: keyword arguments of SB3's ``AtariWrapper`` (sb3_atari backend), or
        ``clip_reward`` and ``terminal_on_life_loss`` (ale backend). Both backends default to
        ``AtariWrapper``'s, as rl-baselines3-zoo trains Atari: clipped rewards and a terminal state at
        each life lost for the learner, whole unclipped games in the episode statistics.
    :param frame_stack: stack this many observations; ``None`` means 4 for Atari, none otherwise.
    :param backend: ``"auto"``: ``ale`` for Atari ids (``sb3_atari`` when recording video), ``torch`` for
        ids in ``TORCH_ENVS`` with at least ``TORCH_AUTO_MIN_ENVS`` envs, else ``gymnasium``; or one of
        those by name.
    :param video_dir: record episodes there with gymnasium's ``RecordVideo`` (needs ``n_envs == 1``): the
        first ``video_episodes``, or every one when that is None.
    :param env_kwargs: passed to ``gymnasium.make`` (torch and ale backends: the options they implement).
    :raises UnknownEnvError: the id is not registered.
    :raises ValueError: anything else that cannot be served, in one line.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be an integer >= 1, got {n_envs!r}")
    if video_dir is not None and n_envs != 1:
        raise ValueError("video recording needs n_envs == 1")
    device = resolve_device(device)
    atari = is_atari(env_id)
    if backend == "auto":
        backend = _auto_backend(env_id, n_envs, atari, video_dir, frame_stack, env_kwargs)
    if backend in ("ale", "sb3_atari") and not atari:
        raise ValueError(f"the {backend} backend only serves Atari ids, not {env_id!r}")
    if monitor_dir is not None:
        os.makedirs(monitor_dir, exist_ok=True)
    monitor_file = None if monitor_dir is None else os.path.join(monitor_dir, MONITOR_FILE)
    if backend == "torch":
        return _make_torch(env_id, n_envs, seed, device, monitor_file, frame_stack, video_dir, env_kwargs)
    if backend == "ale":
        return _make_ale(env_id, n_envs, seed, monitor_file, wrapper_kwargs, frame_stack, video_dir, env_kwargs)
    if backend == "sb3_atari":
        # AtariWrapper repeats each action 4 times itself, so the emulator must not skip frames too.
        env_kwargs = {"frameskip": 1, **env_kwargs}
    make_env = _env_constructor(env_id, video_dir, env_kwargs, video_episodes)
    venv = _BACKENDS[backend](make_env, n_envs, seed, monitor_dir, wrapper_kwargs)
    if frame_stack is None and backend == "sb3_atari":
        frame_stack = ATARI_FRAME_STACK
    return VecFrameStack(venv, frame_stack) if frame_stack and frame_stack > 1 else venv


def resolve_device(device: str | th.device) -> th.device:
    """``device`` as a ``torch.device`` (``"auto"``: CUDA when there is a GPU); a clear error for CUDA without one."""
    if device == "auto":
        return th.device("cuda" if th.cuda.is_available() else "cpu")
    try:
        device = th.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:<index> or auto") from None
    if device.type == "cuda" and not th.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested, but torch sees no CUDA GPU on this machine")
    return device


def _auto_backend(
    env_id: str,
    n_envs: int,
    atari: bool,
    video_dir: str | os.PathLike[str] | None,
    frame_stack: int | None,
    env_kwargs: dict[str, Any],
) -> str:
    """The fastest backend that gives ``env_id`` its usual semantics (see :func:`make_vec_env`)."""
    if atari:
        return "sb3_atari" if video_dir is not None else "ale"
    torch_ok = env_id in TORCH_ENVS and video_dir is None and not frame_stack and not env_kwargs
    if torch_ok and n_envs >= TORCH_AUTO_MIN_ENVS:
        return "torch"
    return "gymnasium"


def _make_torch(
    env_id: str,
    n_envs: int,
    seed: int,
    device: th.device,
    monitor_file: str | None,
    frame_stack: int | None,
    video_dir: str | os.PathLike[str] | None,
    env_kwargs: dict[str, Any],
) -> VecEnv:
    if env_id not in TORCH_ENVS:
        raise ValueError(
            f"no torch implementation of {env_id!r} (torch envs: {', '.join(sorted(TORCH_ENVS))}); "
            "use backend 'gymnasium' or 'auto'"
        )
    if video_dir is not None or (frame_stack or 0) > 1:
        raise ValueError("torch envs record no video and stack no frames; use backend 'gymnasium' for that")
    limit = get_spec(env_id).max_episode_steps
    try:
        return TORCH_ENVS[env_id](
            n_envs, seed=seed, device=device, max_episode_steps=limit, monitor_file=monitor_file, **env_kwargs
        )
    except TypeError as err:  # an option gymnasium's env has but the torch one does not
        raise ValueError(f"torch {env_id} does not take these options: {first_line(err)}") from None


ALE_OPTIONS = ("repeat_action_probability", "full_action_space", "max_num_frames_per_episode")
#: the AtariWrapper options that the ale backend implements, with AtariWrapper's defaults
ALE_WRAPPER_OPTIONS = ("clip_reward", "terminal_on_life_loss")


def _make_ale(
    env_id: str,
    n_envs: int,
    seed: int,
    monitor_file: str | None,
    wrapper_kwargs: dict[str, Any] | None,
    frame_stack: int | None,
    video_dir: str | os.PathLike[str] | None,
    env_kwargs: dict[str, Any],
) -> VecEnv:
    if video_dir is not None:
        raise ValueError("the ale backend records no video; use backend 'sb3_atari' for that")
    unknown = sorted(set(env_kwargs) - set(ALE_OPTIONS)) + sorted(set(wrapper_kwargs or {}) - set(ALE_WRAPPER_OPTIONS))
    if unknown:
        raise ValueError(f"the ale backend does not take {', '.join(unknown)}; use backend 'sb3_atari' for that")
    spec_kwargs = get_spec(env_id).kwargs
    options = {key: spec_kwargs[key] for key in ALE_OPTIONS if key in spec_kwargs}
    return AleVecEnv(
        env_id,
        spec_kwargs["game"],
        n_envs,
        seed=seed,
        frame_stack=ATARI_FRAME_STACK if frame_stack is None else frame_stack,
        monitor_file=monitor_file,
        **{**options, **env_kwargs, **(wrapper_kwargs or {})},
    )


def _env_constructor(
    env_id: str, video_dir: str | os.PathLike[str] | None, env_kwargs: dict[str, Any], video_episodes: int | None
) -> Callable[..., gym.Env]:
    """A callable for SB3's ``make_vec_env``: ``gym.make`` plus, optionally, innermost video recording of
    the first ``video_episodes`` episodes (all when None)."""

    def make(**kwargs: Any) -> gym.Env:
        try:
            if video_dir is None:
                # No render_mode unless recording: training never renders, and not every env accepts one.
                return gym.make(env_id, **env_kwargs, **kwargs)
            # Off-screen frames need no display; without this, pygame's SDL complains about XDG_RUNTIME_DIR.
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
            env = gym.make(env_id, **{"render_mode": "rgb_array", **env_kwargs, **kwargs})
        except gym.error.DependencyNotInstalled as err:
            raise gym.error.DependencyNotInstalled(_install_hint(env_id, err)) from None
        # Innermost, so that videos show whole games, not the preprocessed (skipped, life-split) view. The
        # trigger stops at the episodes asked for: a vec env resets after the last one, which would start
        # one more, nearly empty, video.
        return gym.wrappers.RecordVideo(
            env,
            str(video_dir),
            episode_trigger=lambda episode: video_episodes is None or episode < video_episodes,
            disable_logger=True,
        )

    return make


def _install_hint(env_id: str, err: Exception) -> str:
    """Gymnasium's advice (``pip install swig``, then gymnasium's extra) becomes this project's extra."""
    text = str(err).lower()
    extra = next((name for name in ("box2d", "mujoco") if name in text), None)
    if extra is None:
        return first_line(err)
    return f'{env_id} needs {extra}, which is not installed: pip install -e ".[{extra}]" (relax-rl\'s {extra} extra)'


def _make_gymnasium(
    make_env: Callable[..., gym.Env],
    n_envs: int,
    seed: int,
    monitor_dir: str | os.PathLike[str] | None,
    wrapper_kwargs: dict[str, Any] | None,
) -> VecEnv:
    if wrapper_kwargs:
        raise ValueError("wrapper_kwargs only apply to Atari backends")
    venv = sb3_make_vec_env(make_env, n_envs=n_envs, seed=seed)
    # VecMonitor names the env in its file's header from the vector env's spec, which SB3's vector envs lack.
    venv.spec = venv.get_attr("spec", indices=0)[0]
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


_BACKENDS: dict[str, Callable[..., VecEnv]] = {"gymnasium": _make_gymnasium, "sb3_atari": _make_atari}
