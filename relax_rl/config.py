"""Hyper-parameter files (rl-baselines3-zoo style) and the resolved configuration of one run.

A file maps env ids, plus ``default``, to sections; the env's section overrides ``default`` key by key,
``--hyperparams key=value`` overrides both. Keys are the algorithm's constructor keywords plus
:data:`ZOO_KEYS`; anything else is a :class:`ConfigError` naming the key and its close matches.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from relax_rl.errors import ConfigError
from relax_rl.validation import (
    check_hyperparameters,
    check_values,
    constructor_parameters,
    parse_policy_kwargs,
    suggest,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_SECTION = "default"
# Keys that configure the run rather than the algorithm's constructor: how it is built, and how often
# it is evaluated and checkpointed and after how many consecutive skipped updates it stops.
RUN_KEYS = (
    "n_envs",
    "n_timesteps",
    "policy",
    "normalize",
    "frame_stack",
    "eval_freq",
    "checkpoint_freq",
    "max_bad_updates",
    "diagnose_freq",
)
ZOO_KEYS = frozenset({*RUN_KEYS, "policy_kwargs"})
# Constructor keywords the command line owns; a config file setting them would be silently overridden.
CLI_OWNED = {"env": "--env", "seed": "--seed", "device": "--device", "tensorboard_log": "--log-dir"}
_NOT_CONFIGURABLE = frozenset({"self", "_init_setup_model"})

# Algorithm name -> "module:attribute". Imported lazily so that a missing or broken agent only
# affects runs that ask for it.
ALGOS: dict[str, str] = {
    "relax_a2c": "relax_rl.agents:RelaxA2C",
    "a2c": "stable_baselines3:A2C",
}


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.1 insists on ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML safely, with scientific notation read as floats."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def load_algo_class(algo: str) -> type:
    """Import the class registered for ``algo`` (see :data:`ALGOS`)."""
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; " + suggest(algo, ALGOS))
    module_name, attribute = ALGOS[algo].split(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"algorithm {algo!r} is not available: {module_name}.{attribute} ({err})") from None


def default_config_file(algo: str) -> Path:
    """The bundled hyper-parameter file of ``algo``: ``configs/<algo>.yml``."""
    return CONFIG_DIR / f"{algo}.yml"


def read_section(path: str | Path, env_id: str) -> dict[str, Any]:
    """Return ``default`` merged with the ``env_id`` section of the file at ``path``."""
    try:
        sections = parse_yaml(Path(path).read_text()) or {}
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(sections, dict) or not all(isinstance(v, dict | None) for v in sections.values()):
        raise ConfigError(f"config file {path} must map env ids (and 'default') to sections of key: value")
    _check_section_names(path, sections)
    return {**(sections.get(DEFAULT_SECTION) or {}), **(sections.get(env_id) or {})}


def _check_section_names(path: str | Path, sections: Mapping[str, Any]) -> None:
    """A section for no env would be ignored in silence (a typo such as ``CartPole-V1``): name it instead."""
    from relax_rl.envs import UnknownEnvError, get_spec  # registers ale-py's ids; only where a file is read

    for name in sections:
        if name == DEFAULT_SECTION:
            continue
        try:
            get_spec(str(name))
        except UnknownEnvError as err:
            raise ConfigError(
                f"config file {path}: section {name!r} matches no env: {err} (sections are env ids or 'default')"
            ) from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are YAML (``0.5``, ``true``, ``[64, 64]``, ``{a: 1}``)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--hyperparams expects key=value, got {item!r}")
        try:
            overrides[key.strip()] = parse_yaml(value)
        except yaml.YAMLError:
            raise ConfigError(f"--hyperparams {key.strip()}: cannot parse value {value!r}") from None
    return overrides


def constructor_keywords(cls: type) -> set[str]:
    """The names of :func:`constructor_parameters`."""
    return set(constructor_parameters(cls))


def accepted_keys(algo_cls: type) -> set[str]:
    """Keys a config may set for ``algo_cls``: its constructor keywords, minus CLI-owned ones, plus ZOO_KEYS."""
    return (constructor_keywords(algo_cls) - _NOT_CONFIGURABLE - set(CLI_OWNED)) | ZOO_KEYS


def validate_keys(config: Mapping[str, Any], algo_cls: type, algo: str, source: str) -> None:
    """Raise :class:`ConfigError` for the first key of ``config`` that ``algo`` does not accept."""
    allowed = accepted_keys(algo_cls)
    for key in config:
        if key in CLI_OWNED:
            raise ConfigError(f"{source}: {key!r} is set on the command line ({CLI_OWNED[key]}), not in a config")
        if key not in allowed:
            raise ConfigError(f"{source}: {algo} does not accept key {key!r}; " + suggest(key, allowed))


@dataclasses.dataclass
class RunConfig:
    """Everything that determines one training run; saved as the run directory's ``config.yml``."""

    algo: str
    env: str
    seed: int
    total_timesteps: int
    n_envs: int
    policy: str
    normalize: bool | dict[str, Any] = False
    frame_stack: int | None = None
    device: str = "auto"
    eval_freq: int = 10_000  # timesteps between evaluations; 0: none
    checkpoint_freq: int = 100_000  # timesteps between checkpoints; 0: none (SIGINT/SIGTERM still write one)
    max_bad_updates: int = 10  # consecutive skipped (non-finite) updates before the run stops; 0: never
    diagnose_freq: int = 50_000  # timesteps between logged variance decompositions (train/action_var_frac); 0: none
    # Constructor keywords of the algorithm (policy_kwargs included), exactly as configured.
    algo_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A YAML-serialisable dict (the content of ``config.yml``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        fields = {f.name for f in dataclasses.fields(cls)}
        extra = set(data) - fields
        if extra:
            raise ConfigError(f"unexpected keys in run config: {', '.join(sorted(extra))}")
        return cls(**data)

    def normalize_kwargs(self) -> dict[str, Any] | None:
        """``VecNormalize`` keyword arguments, or ``None`` when normalisation is off."""
        if isinstance(self.normalize, dict):
            return dict(self.normalize)
        return {} if self.normalize else None


def resolve_config(
    algo: str,
    env_id: str,
    seed: int,
    *,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    n_envs: int | None = None,
    total_timesteps: int | None = None,
    device: str = "auto",
    eval_freq: int | None = None,
    checkpoint_freq: int | None = None,
    max_bad_updates: int | None = None,
    diagnose_freq: int | None = None,
) -> RunConfig:
    """Merge the bundled file's section, ``config_file``'s, ``--hyperparams`` overrides and explicit flags
    (in that order, each over the one before) into a RunConfig, and check its values.

    ``config_file`` overlays ``configs/<algo>.yml`` as SB3 users expect: it need only hold what it
    changes. Flags left at ``None`` come from the files, else from :class:`RunConfig`'s defaults.
    """
    algo_cls = load_algo_class(algo)
    path = default_config_file(algo)
    sources = {str(path): read_section(path, env_id)}
    if config_file is not None:
        path = Path(config_file)
        sources[str(path)] = read_section(path, env_id)
    sources["--hyperparams"] = dict(overrides or {})
    merged = {key: value for source in sources.values() for key, value in source.items()}
    for source, values in sources.items():  # each value reported with the file (or flag) that set it
        validate_keys(values, algo_cls, algo, source)
        if "policy_kwargs" in values:
            values["policy_kwargs"] = parse_policy_kwargs(values["policy_kwargs"])
        algo_values = {key: value for key, value in values.items() if key not in RUN_KEYS}
        try:
            check_hyperparameters(algo_cls, algo_values, str(merged.get("policy", "MlpPolicy")))
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    merged = {key: value for source in sources.values() for key, value in source.items()}
    flags = {
        "n_envs": n_envs,
        "n_timesteps": total_timesteps,
        "eval_freq": eval_freq,
        "checkpoint_freq": checkpoint_freq,
        "max_bad_updates": max_bad_updates,
        "diagnose_freq": diagnose_freq,
    }
    merged.update({key: value for key, value in flags.items() if value is not None})
    run_keys = {key: merged.pop(key, None) for key in RUN_KEYS}
    for key in ("n_envs", "n_timesteps", "policy"):
        if run_keys[key] is None:
            raise ConfigError(f"{path}: no {key!r} for {env_id} (set it in 'default' or the env's section)")
    if not isinstance(run_keys["normalize"], bool | dict | None):
        raise ConfigError(
            f"normalize must be true, false or a dict of VecNormalize arguments, not {run_keys['normalize']!r}"
        )
    periods = {
        key: _whole_number(key, run_keys[key], minimum=0)
        for key in ("eval_freq", "checkpoint_freq", "max_bad_updates", "diagnose_freq")
        if run_keys[key] is not None
    }
    config = RunConfig(
        algo=algo,
        env=env_id,
        seed=seed,
        total_timesteps=_whole_number("n_timesteps", run_keys["n_timesteps"]),
        n_envs=_whole_number("n_envs", run_keys["n_envs"]),
        policy=str(run_keys["policy"]),
        normalize=run_keys["normalize"] or False,
        frame_stack=None if run_keys["frame_stack"] is None else _whole_number("frame_stack", run_keys["frame_stack"]),
        device=device,
        algo_kwargs=merged,
        **periods,
    )
    check_config(config)
    return config


def check_config(config: RunConfig) -> None:
    """Raise :class:`ConfigError` for the first value of ``config`` that cannot work (before anything is built)."""
    check_values(load_algo_class(config.algo), config.algo_kwargs, config.policy, config.n_envs, config.total_timesteps)


def _whole_number(key: str, value: Any, minimum: int = 1) -> int:
    # Zoo files write budgets as 1e6; accept any float that is a whole number.
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (number >= minimum and number.is_integer()):
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key} must be {kind}, not {value!r}")
    return int(number)
