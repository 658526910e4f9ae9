"""Hyper-parameter values checked before anything is built: types (from the constructor's defaults),
ranges, ``policy_kwargs`` keys (against the policy's constructor), and rl-baselines3-zoo's
``dict(key=value)`` syntax. A file, ``--hyperparams`` and Python all pass through here."""

from __future__ import annotations

import ast
import difflib
import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

from relax_rl.errors import ConfigError

# (low, high, low included, high included); None: unbounded on that side.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "gamma": (0.0, 1.0, False, True),
    "gae_lambda": (0.0, 1.0, True, True),
    "n_steps": (1, None, True, False),
    "ent_coef": (0.0, None, True, False),
    "vf_coef": (0.0, None, True, False),
    "max_grad_norm": (0.0, None, False, False),
    "rms_prop_eps": (0.0, None, False, False),
    "stats_window_size": (1, None, True, False),
    "cv_steps": (1, None, True, False),
    "critic_replay": (0, None, True, False),
    "critic_steps": (1, None, True, False),
    "critic_batch_size": (1, None, True, False),
    "critic_half_life": (0.0, None, False, False),
    "cv_batch_size": (1, None, True, False),
}
LEARNING_RATES = ("learning_rate", "cv_learning_rate")
# What a policy's constructor takes that the algorithm passes itself.
_SET_BY_ALGORITHM = frozenset({"self", "observation_space", "action_space", "lr_schedule"})
#: policy_kwargs that hold hidden-layer sizes (SB3's, and the control variate's).
LAYER_SIZES = frozenset({"net_arch", "cv_net_arch", "cv_sub_action_net_arch"})
ZOO_SYNTAX = "write policy_kwargs as YAML ({net_arch: [64, 64]}) or as dict(net_arch=[64, 64]) with literal values"


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Named ``__init__`` parameters of ``cls``, following ``**kwargs`` up the MRO (subclasses that
    forward the parent's keywords, like RelaxA2C to A2C, accept those too); the subclass's come first."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        for p in params:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return found


def suggest(name: str, choices: Iterable[str]) -> str:
    """'did you mean: ...?' with the close matches of ``name``, else the whole list."""
    matches = difflib.get_close_matches(name, list(choices), n=3)
    return f"did you mean: {', '.join(matches)}?" if matches else f"choose from: {', '.join(sorted(choices))}"


def rollout_steps(algo_cls: type, algo_kwargs: Mapping[str, Any]) -> int:
    """Steps per env in one rollout: the configured ``n_steps``, else the constructor's default (A2C's 5)."""
    default = constructor_parameters(algo_cls).get("n_steps")
    return int(algo_kwargs.get("n_steps", 1 if default is None else default.default))


def check_values(
    algo_cls: type, algo_kwargs: Mapping[str, Any], policy: str, n_envs: int, total_timesteps: int
) -> None:
    """Raise :class:`ConfigError` for the first hyper-parameter that cannot work with ``algo_cls``."""
    check_hyperparameters(algo_cls, algo_kwargs, policy)
    n_steps = rollout_steps(algo_cls, algo_kwargs)
    rollout = n_envs * n_steps
    if total_timesteps < rollout:
        raise ConfigError(
            f"n_timesteps {total_timesteps} is less than one rollout (n_envs {n_envs} x n_steps "
            f"{n_steps} = {rollout} timesteps); give at least {rollout}"
        )
    if total_timesteps < 2 * rollout:  # e.g. --n-envs 100000 on a 500k budget: one update, and no episode ends
        raise ConfigError(
            f"n_timesteps {total_timesteps} buys a single update (n_envs {n_envs} x n_steps {n_steps} = {rollout} "
            f"timesteps each); lower n_envs, or give n_timesteps a multiple of {rollout} of at least {2 * rollout}"
        )


def check_hyperparameters(algo_cls: type, algo_kwargs: Mapping[str, Any], policy: str) -> None:
    """Raise :class:`ConfigError` for the first value of ``algo_kwargs`` that ``algo_cls`` cannot take: its type
    (from the constructor's default), its range, a learning rate or schedule, ``policy_kwargs``."""
    parameters = constructor_parameters(algo_cls)
    for key, value in algo_kwargs.items():
        if key in LEARNING_RATES:
            _check_learning_rate(key, value)
        elif key == "policy_kwargs":
            _check_policy_kwargs(value, algo_cls, policy)
        elif key in parameters:
            _check_type(key, value, parameters[key].default)
        if key in RANGES and value is not None:
            _check_range(key, value, *RANGES[key])


def parse_policy_kwargs(value: Any) -> Any:
    """rl-baselines3-zoo writes ``policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``: read that
    as the mapping it means (``nn.ReLU`` becomes ``"ReLU"``, which the run builds); anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return _literal(ast.parse(value.strip(), mode="eval").body)
    except (SyntaxError, ValueError):
        raise ConfigError(f"policy_kwargs: cannot read {value!r}; {ZOO_SYNTAX}") from None


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(k.arg is None for k in node.keywords):
            raise ValueError("dict(**...)")
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
        return node.attr  # nn.ReLU, th.nn.ReLU
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(element) for element in node.elts]
    return ast.literal_eval(node)


def _check_learning_rate(key: str, value: Any) -> None:
    rate = value.removeprefix("lin_") if isinstance(value, str) else value
    try:
        number = float(rate)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number > 0 or math.isinf(number):
        raise ConfigError(f"{key}: {value!r} is neither a number nor lin_<number> (a linear schedule), or not positive")


def _check_type(key: str, value: Any, default: Any) -> None:
    # The constructor's default says what the key holds; None, strings and objects are left to it.
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, not {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{key} must be an integer, not {value!r}")
    elif isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"{key} must be a number, not {value!r}")


def _check_range(key: str, value: Any, low: float | None, high: float | None, low_in: bool, high_in: bool) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, not {value!r}")
    above = low is None or value > low or (low_in and value == low)
    below = high is None or value < high or (high_in and value == high)
    if not (above and below):
        left = f"{'[' if low_in else '('}{'-inf' if low is None else f'{low:g}'}"
        right = f"{'inf' if high is None else f'{high:g}'}{']' if high_in else ')'}"
        raise ConfigError(f"{key} must be in {left}, {right}, not {value!r}")


def _check_policy_kwargs(value: Any, algo_cls: type, policy: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(f"policy_kwargs must be a mapping, not {value!r}; {ZOO_SYNTAX}")
    policy_cls = getattr(algo_cls, "policy_aliases", {}).get(policy)
    if policy_cls is None:
        return  # a policy given by import path: its constructor is its own business
    parameters = constructor_parameters(policy_cls)
    accepted = set(parameters) - _SET_BY_ALGORITHM
    for key, entry in value.items():
        if key not in accepted:
            raise ConfigError(f"policy_kwargs: {policy} does not accept {key!r}; " + suggest(key, accepted))
        _check_policy_value(key, entry, parameters[key].default)


def _check_policy_value(key: str, value: Any, default: Any) -> None:
    """The values the policy would otherwise reject with a traceback from deep inside torch or SB3."""
    name = f"policy_kwargs.{key}"
    if key in LAYER_SIZES:
        pi_vf = isinstance(value, Mapping) and set(value) <= {"pi", "vf"} and key == "net_arch"
        for sizes in value.values() if pi_vf else [value]:
            if not isinstance(sizes, list | tuple) or not all(_positive_int(size) for size in sizes):
                form = "[64, 64] (or {pi: [64], vf: [64]})" if key == "net_arch" else "[64, 64]"
                raise ConfigError(f"{name} must be a list of layer sizes such as {form}, not {value!r}")
    elif key == "cv_temperature":
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{name} must be a positive number, not {value!r}")
    elif key == "learn_temperature":
        _check_type(name, value, False)
    elif value is not None and default is not None and default is not inspect.Parameter.empty:
        _check_type(name, value, default)


def _positive_int(size: Any) -> bool:
    return isinstance(size, int) and not isinstance(size, bool) and size > 0
