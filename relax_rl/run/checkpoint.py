"""Resumable checkpoints: ``<run_dir>/checkpoints/rl_model_<timesteps>_steps.zip``, one file each.

A checkpoint is an SB3 model zip (``evaluate.py`` and ``BaseAlgorithm.load`` read it as a model) with
two more entries: ``relax_rl/resume.json``, which run wrote it, and ``relax_rl/resume.pkl``, what SB3
does not save: the training env (and the evaluation env) with their own random state and VecNormalize
statistics, the global RNG states, the callbacks' state and a critic's replay. SB3's part already holds the policy (φ
and τ included), both optimisers, the timestep count, the last observation and the episode buffers.

Checkpoints are taken at rollout boundaries (see :class:`relax_rl.run.control.RunControl`) and written
atomically (:func:`relax_rl.run.saving.atomic_write`), and older ones are kept, so a kill at any moment
leaves every finished checkpoint intact.

The resume state is a pickle: resuming runs code from the checkpoint, so resume only your own runs.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import pickle
import random
import re
import sys
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import cloudpickle
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import ResultsWriter
from stable_baselines3.common.vec_env import VecEnvWrapper

from relax_rl.errors import first_line
from relax_rl.run.saving import save_model, stats_path_for

CHECKPOINT_DIR = "checkpoints"
META_ENTRY = "relax_rl/resume.json"
STATE_ENTRY = "relax_rl/resume.pkl"
FORMAT_VERSION = 1
_NAME = re.compile(r"rl_model_(\d+)_steps\.zip")


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed from: truncated, corrupt, or not written for resuming."""


class Resumable(Protocol):
    """Something whose state a checkpoint carries (the stateful callbacks)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


_END_RECORD_SIGNATURE = b"PK\x05\x06"
_END_RECORD_SIZE = 22


def checkpoint_path(run_dir: Path, timestep: int) -> Path:
    """Where the checkpoint taken at ``timestep`` goes (SB3's CheckpointCallback naming)."""
    return run_dir / CHECKPOINT_DIR / f"rl_model_{timestep}_steps.zip"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, newest (most timesteps) first."""
    found = [(int(m[1]), p) for p in (run_dir / CHECKPOINT_DIR).glob("*.zip") if (m := _NAME.fullmatch(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


class Checkpointer:
    """Writes the checkpoints of one run; :meth:`save` is what RunControl calls.

    ``meta`` (JSON) identifies the run, so that a resume can refuse another run's checkpoint;
    ``parts`` are the stateful callbacks, by name.
    """

    def __init__(self, run_dir: Path, meta: Mapping[str, Any], parts: Mapping[str, Resumable]) -> None:
        self.run_dir = run_dir
        self.meta = dict(meta)
        self.parts = dict(parts)

    def save(self, model: BaseAlgorithm) -> Path:
        """Write the checkpoint of ``model``'s current state (call only at a rollout boundary)."""
        path = checkpoint_path(self.run_dir, model.num_timesteps)
        meta = {"format": FORMAT_VERSION, **self.meta, "timesteps": model.num_timesteps}
        parts = {n: p.state_dict() for n, p in self.parts.items()}
        # What model.save leaves out but the next update reads: a critic's replay (SB3 saves its off-policy
        # replay buffers apart from the model too).
        replay = getattr(model, "replay", None)
        payload = _dumps({"env": model.get_env(), "parts": parts, "rng": _rng(model), "replay": replay})

        def write(tmp: str) -> None:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(META_ENTRY, json.dumps(meta))
                archive.writestr(STATE_ENTRY, payload)

        path.parent.mkdir(exist_ok=True)
        save_model(model, path, stats_path_for(path), write)
        return path


def _ends_with_zip_directory(path: Path) -> bool:
    # A whole checkpoint ends with the zip's end-of-directory record (it has no comment). Cut short, it does
    # not, yet zipfile may still open it by the directory that model.save wrote before the resume entries.
    with path.open("rb") as file:
        size = file.seek(0, 2)
        file.seek(max(size - _END_RECORD_SIZE, 0))
        return file.read(4) == _END_RECORD_SIGNATURE


def read_meta(path: Path) -> dict[str, Any]:
    """The run identity stored in a checkpoint, after checking every entry's CRC (truncation, bit rot)."""
    try:
        if not _ends_with_zip_directory(path):
            raise CheckpointError(f"{path} is truncated or corrupt (it does not end with its zip directory)")
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise CheckpointError(f"{path} is corrupt ({bad} fails its CRC check)")
            meta = json.loads(archive.read(META_ENTRY))
    except KeyError:
        raise CheckpointError(f"{path} is a model but not a resumable checkpoint (no {META_ENTRY})") from None
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({first_line(err)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has an unknown checkpoint format")
    return meta


def load_checkpoint(
    path: Path, algo_cls: type[BaseAlgorithm], run_dir: Path, device: str, parts: Mapping[str, Resumable]
) -> BaseAlgorithm:
    """The model saved in ``path``, with its env, the ``parts``' states and the RNG states restored.

    The RNGs are restored last, so nothing may draw random numbers between this call and ``learn``.
    Monitor files in ``run_dir`` are cut back to what they held at the checkpoint and appended to.
    """
    try:
        # No env here: with one, SB3's load would reseed it (set_random_seed) and drop the last observation.
        model = algo_cls.load(path, device=device)
        with zipfile.ZipFile(path) as archive:
            state = _EnvUnpickler(io.BytesIO(archive.read(STATE_ENTRY)), run_dir).load()
        model.set_env(state["env"], force_reset=False)
        if state.get("replay") is not None:
            model.replay = state["replay"]
        for name, part in parts.items():
            part.load_state_dict(state["parts"][name])
        _set_rng(model, state["rng"])
    except CheckpointError as err:
        raise CheckpointError(f"{path} cannot be resumed: {err}") from None
    except Exception as err:  # unpickling can raise anything; the caller falls back to an older checkpoint
        raise CheckpointError(f"{path} cannot be loaded ({type(err).__name__}: {first_line(err)})") from None
    return model


# ------------------------------------------------------------------------------------- random state


def _rng(model: BaseAlgorithm) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        # SB3's load reseeds the action space; off-policy agents sample it.
        "action_space": model.action_space.np_random.bit_generator.state,
    }


def _set_rng(model: BaseAlgorithm, state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    model.action_space.np_random.bit_generator.state = state["action_space"]


# ------------------------------------------------------------------------------------ env pickling


class _EnvPickler(cloudpickle.Pickler):
    """cloudpickle for vectorised envs: monitor files are referenced by name and length, not pickled, and
    VecEnv wrappers are pickled whole (SB3's VecNormalize pickles without its inner env and reward
    accumulators, and every wrapper's ``class_attributes`` cannot be pickled)."""

    def persistent_id(self, obj: Any) -> tuple[str, str, int, list[str]] | None:
        if not isinstance(obj, ResultsWriter):
            return None
        obj.file_handler.flush()
        size = os.fstat(obj.file_handler.fileno()).st_size
        return ("monitor", os.path.basename(obj.file_handler.name), size, list(obj.logger.fieldnames))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, VecEnvWrapper):
            state = {key: value for key, value in vars(obj).items() if key != "class_attributes"}
            return _rebuild_wrapper, (type(obj), state)
        ale_py = sys.modules.get("ale_py")  # loaded if, and only if, there are Atari envs to pickle
        if ale_py is not None and isinstance(obj, ale_py.AtariEnv):
            # AtariEnv pickles as "call the constructor again" (gymnasium's EzPickle): a new game. Keep
            # the emulator's whole state, its RNG included, and the env's own attributes (its RNG).
            attributes = {key: value for key, value in vars(obj).items() if key != "ale"}
            return _rebuild_atari, (type(obj), attributes, obj.ale.cloneState(include_rng=True))
        return super().reducer_override(obj)


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _EnvPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _rebuild_wrapper(cls: type[VecEnvWrapper], state: dict[str, Any]) -> VecEnvWrapper:
    wrapper = cls.__new__(cls)
    wrapper.__dict__.update(state)
    wrapper.class_attributes = dict(inspect.getmembers(cls))  # as VecEnvWrapper.__init__ sets it
    return wrapper


def _rebuild_atari(cls: type, attributes: dict[str, Any], emulator_state: Any) -> Any:
    env = cls(*attributes["_ezpickle_args"], **attributes["_ezpickle_kwargs"])
    env.__dict__.update(attributes)
    env.ale.restoreState(emulator_state)
    return env


class _EnvUnpickler(pickle.Unpickler):
    """Reopens the monitor files of :class:`_EnvPickler` in ``run_dir``, cut back to their checkpointed
    length (episodes logged after the checkpoint will be logged again) and appended to."""

    def __init__(self, file: io.BytesIO, run_dir: Path) -> None:
        super().__init__(file)
        self.run_dir = run_dir

    def persistent_load(self, pid: Any) -> ResultsWriter:
        kind, name, size, fieldnames = pid
        path = self.run_dir / name
        if kind != "monitor" or not path.is_file() or path.stat().st_size < size:
            raise CheckpointError(f"monitor file {path} is missing or shorter than at the checkpoint")
        os.truncate(path, size)
        return ResultsWriter(str(path), extra_keys=tuple(fieldnames[3:]), override_existing=False)
