"""Load SB3 models, and VecNormalize statistics, from JSON and tensors only: nothing is unpickled.

An SB3 ``.zip`` keeps what JSON cannot hold (the policy class, the spaces, schedules, the last
observation, ...) as cloudpickle inside its ``data`` JSON, and ``BaseAlgorithm.load`` unpickles all
of it: a crafted file runs arbitrary code the moment it is loaded. :func:`load_model_safely` never
decodes those ``:serialized:`` entries. It rebuilds what acting needs from trusted sources instead:

- the policy class from the algorithm's own ``policy_aliases`` (matched by the names the file records);
- the spaces from the env, checked against the plain fields the file records (type, shape, dtype, n);
- the policy's keyword arguments from their JSON, classes only from an allow-list of loaded modules;
- the constructor's other keywords from their plain JSON values (pickled ones, e.g. schedules, keep
  the constructor's defaults: they do not change how the model acts);
- the weights from ``policy.pth`` with ``torch.load(weights_only=True)``.

Other entries of the archive (optimiser states, a resume checkpoint's state) are never read.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from relax_rl.config import constructor_keywords
from relax_rl.errors import first_line

SERIALIZED = ":serialized:"
POLICY_WEIGHTS = "policy.pth"
# Classes that policy_kwargs may name: activations, optimisers, feature extractors. They are looked
# up among modules already imported, never imported on the file's say-so.
_CLASS_MODULES = ("torch.nn.", "torch.optim.", "stable_baselines3.", "relax_rl.")
_CLASS_BASES = (torch.nn.Module, torch.optim.Optimizer)
_CLASS_REPR = re.compile(r"<class '(?P<module>[\w.]+)\.(?P<name>\w+)'>")
_POLICY_INIT_REPR = re.compile(r"<function (?P<name>\w+)\.__init__ at ")
# Constructor keywords that come from the caller, or that would make the model write files.
_NOT_FROM_FILE = frozenset({"self", "policy", "env", "device", "policy_kwargs", "tensorboard_log", "_init_setup_model"})
# Space attributes that SB3 records in plain text beside the pickle.
_SPACE_FIELDS = ("_shape", "dtype", "n", "start")
# Where relax_rl.run.saving.save_model stores a normalised model's statistics, inside the model zip.
NORMALIZATION_ENTRY = "relax_rl/vecnormalize.json"
_NORMALIZE_SETTINGS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs_keys")


class UnsafeModelError(ValueError):
    """A file that cannot be loaded from JSON and tensors alone, or that is not a model at all."""


class EnvMismatchError(UnsafeModelError):
    """The model's spaces are not the env's: it was trained on another env."""


def load_model_safely(
    path: str | os.PathLike[str], algo_cls: type[BaseAlgorithm], env: gym.Env | VecEnv, device: str = "auto"
) -> BaseAlgorithm:
    """An ``algo_cls`` model acting like the one saved at ``path``, built without unpickling anything.

    ``env`` is required: the spaces are taken from it (and checked against the file). The model is
    meant for acting and evaluation: optimiser states and pickled settings (learning-rate schedules,
    the last observation, episode buffers) are not restored; use ``algo_cls.load`` on files you trust,
    or ``train.py --resume`` for your own runs, to continue training.

    :raises UnsafeModelError: the file is not an SB3 model, needs unpickling, or does not fit ``env``.
    """
    data, weights = read_model_archive(path)
    venv = algo_cls._wrap_env(env)  # as SB3's load does: image observations become channel-first
    check_spaces(data, venv)
    model = algo_cls(
        policy_class(algo_cls, data),
        venv,
        device=device,
        policy_kwargs=policy_kwargs(data),
        **hyperparameters(algo_cls, data),
    )
    try:
        model.policy.load_state_dict(weights)
    except RuntimeError as err:
        raise UnsafeModelError(f"{POLICY_WEIGHTS} does not fit the policy: {first_line(err)}") from None
    return model


def read_model_archive(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``data`` JSON (parsed, not decoded) and the policy's tensors of an SB3 model zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
            raw_weights = archive.read(POLICY_WEIGHTS)
    except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UnsafeModelError(f"{path} is not a model saved by stable-baselines3 ({first_line(err)})") from None
    if not isinstance(data, dict):
        raise UnsafeModelError(f"{path} is not a model saved by stable-baselines3 (malformed 'data')")
    try:
        weights = torch.load(io.BytesIO(raw_weights), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise UnsafeModelError(
            f"{POLICY_WEIGHTS} in {path} holds more than tensors; refusing to unpickle it ({first_line(err)})"
        ) from None
    if not (isinstance(weights, dict) and all(isinstance(v, torch.Tensor) for v in weights.values())):
        raise UnsafeModelError(f"{POLICY_WEIGHTS} in {path} is not a state dict of tensors")
    return data, weights


def _is_pickled(value: Any) -> bool:
    return isinstance(value, dict) and SERIALIZED in value


def policy_class(algo_cls: type[BaseAlgorithm], data: Mapping[str, Any]) -> type:
    """The class among ``algo_cls.policy_aliases`` that the file's ``policy_class`` entry names."""
    stored = data.get("policy_class")
    stored = stored if isinstance(stored, dict) else {}
    module = stored.get("__module__")
    match = _POLICY_INIT_REPR.match(str(stored.get("__init__", "")))
    name = match["name"] if match else None
    for cls in algo_cls.policy_aliases.values():
        if (cls.__module__, cls.__qualname__) == (module, name):
            return cls
    known = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in algo_cls.policy_aliases.values())
    raise UnsafeModelError(
        f"the model's policy ({module}.{name}) is not one of {algo_cls.__name__}'s ({known}); "
        "it cannot be rebuilt without unpickling"
    )


def check_spaces(data: Mapping[str, Any], venv: VecEnv) -> None:
    """Raise :class:`UnsafeModelError` unless the plain fields recorded for both spaces match ``venv``'s."""
    for key, space in (("observation_space", venv.observation_space), ("action_space", venv.action_space)):
        stored = data.get(key)
        if not isinstance(stored, dict):
            raise UnsafeModelError(f"the model records no {key}")
        expected = {":type:": str(type(space)), **{f: getattr(space, f) for f in _SPACE_FIELDS if hasattr(space, f)}}
        for field, value in expected.items():
            if field in stored and _as_text(stored[field]) != _as_text(value):
                raise EnvMismatchError(
                    f"the model's {key} does not fit the env ({field}: {stored[field]} in the file, {value} in the env)"
                )


def _as_text(value: Any) -> str:
    """One text form for a field whether SB3 stored it as JSON (lists, ints) or as ``str()`` (numpy scalars)."""
    if isinstance(value, str | np.dtype):
        return str(value)
    return str(np.asarray(value).tolist())


def policy_kwargs(data: Mapping[str, Any]) -> dict[str, Any]:
    """The policy's keyword arguments from their JSON; class names are resolved through an allow-list."""
    stored = data.get("policy_kwargs") or {}
    if not isinstance(stored, dict):
        raise UnsafeModelError("malformed policy_kwargs")
    if not _is_pickled(stored):
        return dict(stored)
    # SB3 pickles the dict when a value is not JSON (a class), and writes each value beside the
    # pickle: JSON values as they are, the others as str(value).
    return {key: _plain_value(key, value) for key, value in stored.items() if key not in (":type:", SERIALIZED)}


def _plain_value(key: str, value: Any) -> Any:
    if not (isinstance(value, str) and value.startswith("<")):
        return value
    match = _CLASS_REPR.fullmatch(value)
    module = sys.modules.get(match["module"]) if match and match["module"].startswith(_CLASS_MODULES) else None
    cls = getattr(module, match["name"], None) if match else None
    if not (isinstance(cls, type) and issubclass(cls, _CLASS_BASES)):
        raise UnsafeModelError(f"policy_kwargs[{key!r}] is {value}, which cannot be rebuilt without unpickling")
    return cls


def hyperparameters(algo_cls: type[BaseAlgorithm], data: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor keywords that the file records as plain JSON."""
    keys = constructor_keywords(algo_cls) - _NOT_FROM_FILE
    return {key: data[key] for key in sorted(keys) if key in data and not _is_pickled(data[key])}


# ------------------------------------------------------------------------------ VecNormalize, as JSON


def normalization_to_json(vec_normalize: VecNormalize) -> dict[str, Any]:
    """VecNormalize's settings and running statistics as JSON (floats round-trip exactly)."""
    obs_rms = vec_normalize.obs_rms
    return {
        **{key: getattr(vec_normalize, key) for key in _NORMALIZE_SETTINGS},
        "obs_rms": {k: _rms_to_json(v) for k, v in obs_rms.items()}
        if isinstance(obs_rms, dict)
        else _rms_to_json(obs_rms),
        "ret_rms": _rms_to_json(vec_normalize.ret_rms),
    }


def read_embedded_normalization(model_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The VecNormalize statistics that :func:`relax_rl.run.saving.save_model` stores inside a model zip, if any."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            if NORMALIZATION_ENTRY not in archive.namelist():
                return None
            return json.loads(archive.read(NORMALIZATION_ENTRY))
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise UnsafeModelError(f"{model_path}: unreadable {NORMALIZATION_ENTRY} ({first_line(err)})") from None


def load_normalization(source: str | os.PathLike[str] | Mapping[str, Any], venv: VecEnv) -> VecNormalize:
    """Wrap ``venv`` in a frozen VecNormalize (no updates, raw rewards) with the statistics of
    :func:`normalization_to_json`, read from the JSON file at ``source`` or given as a mapping."""
    try:
        state = source if isinstance(source, Mapping) else json.loads(Path(source).read_text())
        vec_normalize = VecNormalize(venv, training=False, **{key: state[key] for key in _NORMALIZE_SETTINGS})
        if isinstance(vec_normalize.obs_rms, dict):
            vec_normalize.obs_rms = {
                k: _rms_from_json(state["obs_rms"][k], v) for k, v in vec_normalize.obs_rms.items()
            }
        else:
            vec_normalize.obs_rms = _rms_from_json(state["obs_rms"], vec_normalize.obs_rms)
        vec_normalize.ret_rms = _rms_from_json(state["ret_rms"], vec_normalize.ret_rms)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
        where = f"the model's {NORMALIZATION_ENTRY}" if isinstance(source, Mapping) else str(source)
        raise UnsafeModelError(f"{where} does not hold usable normalisation statistics: {first_line(err)}") from None
    vec_normalize.norm_reward = False  # evaluation reports raw returns
    return vec_normalize


def _rms_to_json(rms: RunningMeanStd) -> dict[str, Any]:
    return {"mean": rms.mean.tolist(), "var": rms.var.tolist(), "count": rms.count}


def _rms_from_json(state: Mapping[str, Any], like: RunningMeanStd) -> RunningMeanStd:
    rms = RunningMeanStd(shape=like.mean.shape)
    rms.mean, rms.var = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["var"], dtype=np.float64)
    if rms.mean.shape != like.mean.shape or rms.var.shape != like.mean.shape:
        raise ValueError(f"statistics of shape {rms.mean.shape} for observations of shape {like.mean.shape}")
    rms.count = float(state["count"])
    return rms
