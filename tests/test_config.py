"""Hyper-parameter files: merging, overrides, key validation, and the bundled configs."""

import inspect
import re

import pytest
import torch
import yaml
from stable_baselines3 import A2C

from relax_rl import RelaxA2C
from relax_rl.agents.relax_options import OTHER_DESIGN
from relax_rl.config import (
    CONFIG_DIR,
    RUN_KEYS,
    ConfigError,
    RunConfig,
    constructor_keywords,
    default_config_file,
    parse_overrides,
    parse_yaml,
    read_section,
    resolve_config,
)
from relax_rl.errors import UsageError
from relax_rl.run.build import with_torch_objects

BENCHMARK_ENVS = ("CartPole-v1", "LunarLander-v3", "Acrobot-v1", "MountainCar-v0")


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "a2c.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "default": {"policy": "MlpPolicy", "n_envs": 8, "n_timesteps": 1000, "gamma": 0.99, "n_steps": 5},
                "CartPole-v1": {"n_steps": 16, "normalize": True},
            }
        )
    )
    return path


def test_env_section_overrides_default(config_file):
    assert read_section(config_file, "CartPole-v1") == {
        "policy": "MlpPolicy",
        "n_envs": 8,
        "n_timesteps": 1000,
        "gamma": 0.99,
        "n_steps": 16,
        "normalize": True,
    }
    assert read_section(config_file, "Acrobot-v1")["n_steps"] == 5  # no section: default only


def test_overrides_beat_file_and_flags_beat_overrides(config_file):
    config = resolve_config(
        "a2c",
        "CartPole-v1",
        3,
        config_file=config_file,
        overrides=parse_overrides(["gamma=0.9", "n_envs=4", "policy_kwargs={net_arch: [32, 32]}"]),
        n_envs=2,
    )
    # The file overlays the bundled configs/a2c.yml, which fills in what the file does not set.
    bundled = {k: v for k, v in read_section(default_config_file("a2c"), "CartPole-v1").items() if k not in RUN_KEYS}
    assert bundled and "gamma" in bundled
    expected = {**bundled, "gamma": 0.9, "n_steps": 16, "policy_kwargs": {"net_arch": [32, 32]}}
    assert config.algo_kwargs == expected
    assert (config.n_envs, config.total_timesteps, config.seed, config.normalize) == (2, 1000, 3, True)


def test_override_values_are_yaml_with_scientific_floats():
    assert parse_overrides(["a=1e-3", "b=7", "c=true", "d=[1, 2]", "e=MlpPolicy", "f=1.0e6"]) == {
        "a": 1e-3,
        "b": 7,
        "c": True,
        "d": [1, 2],
        "e": "MlpPolicy",
        "f": 1e6,
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["gamma"])


def test_typo_in_override_names_key_algorithm_and_match(config_file):
    with pytest.raises(ConfigError) as info:
        resolve_config("a2c", "CartPole-v1", 0, config_file=config_file, overrides={"learning_rat": 1e-3})
    message = str(info.value)
    assert "'learning_rat'" in message and "a2c" in message and "learning_rate" in message
    assert "\n" not in message


def test_typo_in_file_names_the_file(config_file):
    config_file.write_text(config_file.read_text() + "Acrobot-v1:\n  gama: 0.9\n")
    with pytest.raises(ConfigError, match=r"a2c.yml: a2c does not accept key 'gama'; did you mean: gamma"):
        resolve_config("a2c", "Acrobot-v1", 0, config_file=config_file)


def test_keys_owned_by_the_command_line_are_refused(config_file):
    with pytest.raises(ConfigError, match="--seed"):
        resolve_config("a2c", "CartPole-v1", 0, config_file=config_file, overrides={"seed": 1})


def test_unknown_algorithm():
    with pytest.raises(ConfigError, match="unknown algorithm 'a2d'; did you mean: a2c"):
        resolve_config("a2d", "CartPole-v1", 0)


def test_budget_must_be_a_positive_integer(config_file):
    assert resolve_config("a2c", "CartPole-v1", 0, config_file=config_file, total_timesteps=1e3).total_timesteps == 1000
    with pytest.raises(ConfigError, match="n_timesteps"):
        resolve_config("a2c", "CartPole-v1", 0, config_file=config_file, overrides={"n_timesteps": 10.5})


def test_constructor_keywords_follow_kwargs_up_the_mro():
    class Base:
        def __init__(self, env, gamma=0.99, *, lr=1.0):
            pass

    class Forwarding(Base):
        def __init__(self, env, *args, cv_steps=1, **kwargs):
            super().__init__(env, *args, **kwargs)

    class Closed(Base):
        def __init__(self, env, alpha=1.0):
            super().__init__(env)

    assert constructor_keywords(Forwarding) == {"self", "env", "cv_steps", "gamma", "lr"}
    assert constructor_keywords(Closed) == {"self", "env", "alpha"}


def test_run_config_round_trips_through_yaml(config_file):
    config = resolve_config("a2c", "CartPole-v1", 0, config_file=config_file)
    assert RunConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


def _sections(algo):
    return yaml.safe_load((CONFIG_DIR / f"{algo}.yml").read_text())


BUNDLED = ["a2c", "relax_a2c"]


@pytest.mark.parametrize("algo", BUNDLED)
def test_bundled_config_resolves_for_every_section(algo):
    for env_id in _sections(algo):
        config = resolve_config(algo, env_id, 0)
        assert config.n_envs == 8 and config.total_timesteps >= 100_000


def test_bundled_configs_cover_the_benchmarks_and_match_where_it_matters():
    a2c, relax = _sections("a2c"), _sections("relax_a2c")
    assert set(BENCHMARK_ENVS) <= set(a2c) and set(a2c) == set(relax)
    for env_id in a2c:
        ours = {**a2c["default"], **(a2c[env_id] or {})}
        theirs = {**relax["default"], **(relax[env_id] or {})}
        relax_only = {key: theirs.pop(key) for key in list(theirs) if key.startswith(("cv_", "critic_", "pg_"))}
        assert ours == theirs, env_id  # the comparison differs only in the estimator and the critic's training
        # the critic-replay study's choice (benchmarks/critic_replay/), which RelaxA2C's own defaults also are,
        # except a replay that would run a CNN (benchmarks/speed/)
        signature = inspect.signature(RelaxA2C.__init__).parameters
        defaults = {key: signature[key].default for key in relax_only}
        if theirs["policy"] == "CnnPolicy":
            defaults["critic_replay"] = 0
        assert relax_only == defaults, env_id
        assert {"cv_objective", "critic_replay", "critic_steps"} <= set(relax_only)
        # the design options are RelaxA2C's to pick by action space: pinned here, they would override its choice
        assert not set(relax_only) & set(OTHER_DESIGN), env_id


def test_a2c_config_is_sb3_defaults():
    default = resolve_config("a2c", "CartPole-v1", 0).algo_kwargs
    a2c = A2C("MlpPolicy", "CartPole-v1", device="cpu")
    assert default["learning_rate"] == a2c.learning_rate
    for key in ("n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "normalize_advantage"):
        assert default[key] == getattr(a2c, key), key


def test_rl_zoo_policy_kwargs_syntax_is_read():
    from relax_rl.validation import parse_policy_kwargs

    zoo = "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256]))"
    assert parse_policy_kwargs(zoo) == {
        "log_std_init": -2,
        "ortho_init": False,
        "activation_fn": "ReLU",
        "net_arch": {"pi": [256, 256], "vf": [256, 256]},
    }
    config = resolve_config("a2c", "CartPole-v1", 0, overrides=parse_overrides([f"policy_kwargs={zoo}"]))
    assert config.algo_kwargs["policy_kwargs"]["activation_fn"] == "ReLU"
    with pytest.raises(ConfigError, match="cannot read"):
        parse_policy_kwargs("dict(activation_fn=open('x'))")


def test_a_section_that_matches_no_env_is_named_with_the_closest_id(tmp_path):
    # A typo in an env's section used to train with the defaults, in silence.
    path = tmp_path / "typo.yml"
    path.write_text("CartPole-V1:\n  learning_rate: 5.0e-3\n")
    with pytest.raises(ConfigError) as error:
        resolve_config("a2c", "CartPole-v1", 0, config_file=path)
    message = str(error.value)
    assert "section 'CartPole-V1' matches no env" in message and "did you mean: CartPole-v1" in message
    assert str(path) in message


@pytest.mark.parametrize("algo", ["a2c", "relax_a2c"])
def test_every_section_of_the_bundled_configs_is_an_env(algo):
    for env_id in parse_yaml(default_config_file(algo).read_text()):
        read_section(default_config_file(algo), env_id)  # raises for a section that matches no env


@pytest.mark.parametrize(
    ("policy_kwargs", "expected"),
    [
        ("{net_arch: five}", "policy_kwargs.net_arch must be a list of layer sizes"),
        ("{net_arch: {pi: [8], vf: x}}", "policy_kwargs.net_arch must be a list of layer sizes"),
        ("{cv_net_arch: 3}", "policy_kwargs.cv_net_arch must be a list of layer sizes"),
        ("{cv_sub_action_net_arch: [0]}", "policy_kwargs.cv_sub_action_net_arch must be a list of layer sizes"),
        ("{cv_temperature: hot}", "policy_kwargs.cv_temperature must be a positive number"),
        ("{ortho_init: maybe}", "policy_kwargs.ortho_init must be true or false"),
        ("{log_std_init: high}", "policy_kwargs.log_std_init must be a number"),
    ],
)
def test_ill_formed_policy_kwargs_values_are_named_before_anything_is_built(policy_kwargs, expected):
    # Each of these ended in a traceback from inside torch or SB3: only policy_kwargs' keys were checked.
    with pytest.raises(ConfigError, match=expected):
        resolve_config("relax_a2c", "CartPole-v1", 0, overrides=parse_overrides([f"policy_kwargs={policy_kwargs}"]))


@pytest.mark.parametrize("key", ["activation_fn", "cv_activation_fn"])
def test_activations_are_named_in_yaml_and_a_misspelt_one_is_a_usage_error(key):
    assert with_torch_objects({"policy_kwargs": {key: "ReLU"}})["policy_kwargs"][key] is torch.nn.ReLU
    with pytest.raises(UsageError, match=f"policy_kwargs.{key}: 'Relu' is not a torch.nn module"):
        with_torch_objects({"policy_kwargs": {key: "Relu"}})


def test_well_formed_policy_kwargs_pass():
    overrides = parse_overrides(["policy_kwargs={net_arch: {pi: [8], vf: [8]}, cv_net_arch: [16], cv_temperature: 1}"])
    assert resolve_config("relax_a2c", "CartPole-v1", 0, overrides=overrides).algo_kwargs["policy_kwargs"]


def test_a_bad_value_in_a_config_file_is_reported_with_the_files_name(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text("CartPole-v1:\n  gamma: high\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: gamma must be a number, not 'high'$"):
        resolve_config("a2c", "CartPole-v1", 0, config_file=path)
    with pytest.raises(ConfigError, match=r"^--hyperparams: gamma must be in \(0, 1\], not 2$"):
        resolve_config("a2c", "CartPole-v1", 0, overrides={"gamma": 2})
