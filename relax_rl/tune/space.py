"""Search spaces: ``configs/search/<algo>.yml``, keyed by env id with a ``default`` section, as Optuna distributions.

Each entry names a hyper-parameter and its distribution::

    learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    vf_coef: {type: uniform, low: 0.25, high: 1.0}
    critic_steps: {type: int, low: 1, high: 8, log: true}     # log is optional
    critic_replay: {type: categorical, choices: [0, 8, 32]}

An env's section overrides or extends ``default`` key by key; ``key: null`` there drops a default key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from relax_rl.config import CONFIG_DIR, DEFAULT_SECTION, ConfigError, load_algo_class, parse_yaml, validate_keys
from relax_rl.errors import UsageError

SEARCH_DIR = CONFIG_DIR / "search"
# What each distribution type needs; `int` may also take `log`.
FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "loguniform": ({"low", "high"}, set()),
    "uniform": ({"low", "high"}, set()),
    "int": ({"low", "high"}, {"log"}),
    "categorical": ({"choices"}, set()),
}
# Keys tune sets itself: searching them would change what the trials are compared on.
NOT_SEARCHABLE = {
    "n_timesteps": "--total-timesteps",
    "eval_freq": "--eval-freq",
    "checkpoint_freq": "tune (0)",
    "diagnose_freq": "tune (0)",
}

SearchSpace = dict[str, BaseDistribution]


def default_space_file(algo: str) -> Path:
    """The bundled search space of ``algo``: ``configs/search/<algo>.yml``."""
    return SEARCH_DIR / f"{algo}.yml"


def load_space(path: str | Path, algo: str, env_id: str) -> SearchSpace:
    """Read and validate the ``env_id`` search space of the file at ``path`` for ``algo``.

    Raises :class:`UsageError` naming the file, the key and the fix for anything unusable.
    """
    try:
        sections = parse_yaml(Path(path).read_text()) or {}
    except OSError as err:
        raise UsageError(f"cannot read search space {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"search space {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(sections, dict) or not all(isinstance(v, dict | None) for v in sections.values()):
        raise UsageError(f"search space {path} must map env ids (and 'default') to sections of key: distribution")
    entries = {**(sections.get(DEFAULT_SECTION) or {}), **(sections.get(env_id) or {})}
    entries = {key: entry for key, entry in entries.items() if entry is not None}
    if not entries:
        raise UsageError(f"search space {path} has no entries for {env_id} (nor in 'default'); add some")
    space: SearchSpace = {}
    for key, entry in entries.items():
        where = f"search space {path}: {key}"
        if key in NOT_SEARCHABLE:
            raise UsageError(f"{where}: set by {NOT_SEARCHABLE[key]}, not searched; remove it")
        try:  # the config module's message, with its close-match suggestions
            validate_keys({key: None}, load_algo_class(algo), algo, f"search space {path}")
        except ConfigError as err:
            raise UsageError(str(err)) from None
        space[key] = _distribution(where, entry)
    return space


def _distribution(where: str, entry: Any) -> BaseDistribution:
    if not isinstance(entry, dict) or "type" not in entry:
        raise UsageError(f"{where}: expected {{type: ..., ...}} with type one of {', '.join(FIELDS)}, got {entry!r}")
    kind = entry["type"]
    if kind not in FIELDS:
        raise UsageError(f"{where}: unknown type {kind!r}; use one of {', '.join(FIELDS)}")
    required, optional = FIELDS[kind]
    given = set(entry) - {"type"}
    if required - given:
        raise UsageError(f"{where}: {kind} needs {', '.join(sorted(required - given))}")
    if given - required - optional:
        extra = ", ".join(sorted(given - required - optional))
        fields = ", ".join(sorted(required | optional))
        raise UsageError(f"{where}: {kind} takes {fields}; remove {extra}")
    if kind == "categorical":
        choices = entry["choices"]
        if not isinstance(choices, list) or not choices:
            raise UsageError(f"{where}: choices must be a non-empty list, got {choices!r}")
        if not all(choice is None or isinstance(choice, bool | int | float | str) for choice in choices):
            raise UsageError(f"{where}: choices must be numbers, strings, booleans or null (Optuna stores no others)")
        return CategoricalDistribution(choices)
    low, high = entry["low"], entry["high"]
    number = int if kind == "int" else float
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float) or (number is int and value != int(value)):
            raise UsageError(f"{where}: {name} must be {'an integer' if number is int else 'a number'}, got {value!r}")
    if low >= high:
        raise UsageError(f"{where}: low ({low}) must be below high ({high})")
    log = kind == "loguniform" or bool(entry.get("log", False))
    if log and low <= 0:
        raise UsageError(f"{where}: a log scale needs low > 0, got {low}; raise low or drop log")
    if kind == "int":
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def suggest(trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Ask ``trial`` for a value of every hyper-parameter of ``space``."""
    params: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, FloatDistribution):
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        elif isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        else:
            params[name] = trial.suggest_categorical(name, dist.choices)
    return params


def largest(space: Mapping[str, BaseDistribution], key: str) -> Any:
    """The largest value ``space`` can give ``key`` (None when it does not search it)."""
    dist = space.get(key)
    if dist is None:
        return None
    if isinstance(dist, CategoricalDistribution):
        numbers = [c for c in dist.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        return max(numbers, default=None)
    return dist.high
