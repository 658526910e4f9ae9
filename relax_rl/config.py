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


def _option(default: int | bool, help: str, minimum: int = 0) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, "minimum": minimum})


@dataclasses.dataclass(kw_only=True)
class RunOptions:
    """The run options: how a run is watched, saved and stopped, declared once. Each field is a
    :class:`RunConfig` field, a config-file key and a ``relax-rl train`` flag (``--eval-freq``, or
    ``--stop-at-solve`` / ``--no-stop-at-solve`` for a yes/no), with its default, its help and, for a count,
    its minimum; adding one is a field here plus its use."""

    eval_freq: int = _option(10_000, "timesteps between evaluations; 0: off")
    checkpoint_freq: int = _option(
        100_000,
        "timesteps between checkpoints, taken at the first update boundary after each multiple; 0: off "
        "(SIGINT and SIGTERM always write one)",
    )
    max_bad_updates: int = _option(
        10, "stop after N consecutive updates skipped for a non-finite loss or gradient; 0: never"
    )
    diagnose_freq: int = _option(
        50_000,
        "timesteps between small variance decompositions logged as train/action_var_frac; 0: off "
        "(off for normalised, frame-stacked or Atari runs)",
    )
    stop_at_solve: bool = _option(
        False, "stop training once the run solves (the mean of the last 100 returns reaches the env's threshold)"
    )


#: The run options' fields, in their order.
RUN_OPTIONS: tuple[dataclasses.Field, ...] = dataclasses.fields(RunOptions)
# Keys that configure the run rather than the algorithm's constructor: how it is built, and the run options.
RUN_KEYS = ("n_envs", "n_timesteps", "policy", "normalize", "frame_stack", *(o.name for o in RUN_OPTIONS))
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
class RunConfig(RunOptions):
    """Everything that determines one training run, the :class:`RunOptions` included; saved as the run
    directory's ``config.yml``."""

    algo: str
    env: str
    seed: int
    total_timesteps: int
    n_envs: int
    policy: str
    normalize: bool | dict[str, Any] = False
    frame_stack: int | None = None
    device: str = "auto"
    # Constructor keywords of the algorithm (policy_kwargs included), exactly as configured.
    algo_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A YAML-serialisable dict (the content of ``config.yml``), the run options last."""
        data = dataclasses.asdict(self)
        options = [o.name for o in RUN_OPTIONS]
        return {**{k: v for k, v in data.items() if k not in options}, **{k: data[k] for k in options}}

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
    **options: int | bool | None,
) -> RunConfig:
    """Merge the bundled file's section, ``config_file``'s, ``--hyperparams`` overrides and explicit flags
    (in that order, each over the one before) into a RunConfig, and check its values.

    ``config_file`` overlays ``configs/<algo>.yml`` as SB3 users expect: it need only hold what it
    changes. ``options`` are :class:`RunOptions` by name (``eval_freq=0``); flags left at ``None`` come from
    the files, else from :class:`RunOptions`' defaults.
    """
    unknown = set(options) - {o.name for o in RUN_OPTIONS}
    if unknown:
        raise TypeError(f"resolve_config() got unexpected run options: {', '.join(sorted(unknown))}")
    algo_cls = load_algo_class(algo)
    path = default_config_file(algo)
    sources = {str(path): read_section(path, env_id)}
    if config_file is not None:
        path = Path(config_file)
        sources[str(path)] = read_section(path, env_id)
    sources["--hyperparams"] = dict(overrides or {})
    # The policy whose keywords policy_kwargs are checked against: the last source's that sets one.
    policy = str(next((s["policy"] for s in reversed(sources.values()) if "policy" in s), "MlpPolicy"))
    for source, values in sources.items():  # each value reported with the file (or flag) that set it
        validate_keys(values, algo_cls, algo, source)
        if "policy_kwargs" in values:
            values["policy_kwargs"] = parse_policy_kwargs(values["policy_kwargs"])
        try:
            check_hyperparameters(algo_cls, {k: v for k, v in values.items() if k not in RUN_KEYS}, policy)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    merged = {key: value for source in sources.values() for key, value in source.items()}
    flags = {"n_envs": n_envs, "n_timesteps": total_timesteps, **options}
    merged.update({key: value for key, value in flags.items() if value is not None})
    run_keys = {key: merged.pop(key, None) for key in RUN_KEYS}
    for key in ("n_envs", "n_timesteps", "policy"):
        if run_keys[key] is None:
            raise ConfigError(f"{path}: no {key!r} for {env_id} (set it in 'default' or the env's section)")
    if not isinstance(run_keys["normalize"], bool | dict | None):
        raise ConfigError(
            f"normalize must be true, false or a dict of VecNormalize arguments, not {run_keys['normalize']!r}"
        )
    run_options = {o.name: _run_option(o, run_keys[o.name]) for o in RUN_OPTIONS if run_keys[o.name] is not None}
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
        **run_options,
    )
    check_config(config)
    return config


def check_config(config: RunConfig) -> None:
    """Raise :class:`ConfigError` for the first value of ``config`` that cannot work (before anything is built)."""
    check_values(load_algo_class(config.algo), config.algo_kwargs, config.policy, config.n_envs, config.total_timesteps)


def _run_option(option: dataclasses.Field, value: Any) -> int | bool:
    if isinstance(option.default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{option.name} must be true or false, not {value!r}")
        return value
    return _whole_number(option.name, value, minimum=option.metadata["minimum"])


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
