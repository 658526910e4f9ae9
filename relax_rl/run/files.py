"""A run directory's layout, and reading what a run or SB3 wrote into it."""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from relax_rl.config import ConfigError, RunConfig
from relax_rl.errors import UsageError, first_line

CONFIG_FILE = "config.yml"
METRICS_FILE = "metrics.json"
FINAL_MODEL = "final_model.zip"
BEST_MODEL = "best_model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"


def default_run_dir(log_dir: Path, algo: str, env_id: str, seed: int) -> Path:
    """``<log_dir>/<algo>/<env id with '/' replaced>_s<seed>``."""
    return log_dir / algo / f"{env_id.replace('/', '-')}_s{seed}"


def read_run_config(run_dir: Path) -> RunConfig:
    """The ``config.yml`` of a run directory."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        return RunConfig.from_dict(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, TypeError, ConfigError) as err:
        raise UsageError(f"{path} is not a run config: {first_line(err)}") from None


def find_run_config(model_path: Path) -> RunConfig | None:
    """config.yml of the run the model belongs to (next to it, or one up for checkpoints/)."""
    for directory in (model_path.parent, model_path.parent.parent):
        if (directory / CONFIG_FILE).is_file():
            return read_run_config(directory)
    return None


def check_writable(directory: Path) -> None:
    """Fail now, not at the first checkpoint hours later, when ``directory`` cannot be written to."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise UsageError(f"run directory {directory} is not writable: {err.strerror}") from None


def read_model_data(path: Path) -> dict[str, Any]:
    """The ``data`` JSON of an SB3 model zip, without loading its weights."""
    if not path.is_file():
        raise UsageError(f"model file {path} not found")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{path} is not a model saved by stable-baselines3 (no readable 'data' in a zip)") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a model saved by stable-baselines3 (malformed 'data')")
    return data


def detect_algo(data: Mapping[str, Any]) -> str:
    """Name of the algorithm that saved ``data``, from the module of its policy class.

    relax_rl policies -> ``relax_a2c``; SB3's shared ``common.policies`` -> ``a2c`` or ``ppo`` (only PPO
    stores clip_range/n_epochs); other SB3 or sb3-contrib modules name their algorithm
    (``stable_baselines3.dqn.policies`` -> ``dqn``).
    """
    policy_class = data.get("policy_class")
    module = policy_class.get("__module__", "") if isinstance(policy_class, dict) else ""
    package, _, rest = module.partition(".")
    if package == "relax_rl":
        return "relax_a2c"
    if package in ("stable_baselines3", "sb3_contrib") and rest:
        sub_package = rest.split(".")[0]
        if sub_package != "common":
            return sub_package
        return "ppo" if {"clip_range", "n_epochs"} & data.keys() else "a2c"
    raise UsageError(f"cannot tell which algorithm saved this model (policy module {module or 'missing'!r})")
