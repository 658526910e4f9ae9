"""RelaxA2C's design options left None follow the action space (``relax_options.DESIGNS``), and a saved model
keeps the design it trained with."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.save_util import data_to_json, json_to_data

from relax_rl import RelaxA2C

BITS = {"pg_estimator": "all_action", "baseline": "control_variate", "cv_data": "replay", "cv_steps": 4}
OTHERS = {"pg_estimator": "relax", "baseline": "value", "cv_data": "rollout", "cv_steps": 1}


def model_on(env_fn, **kwargs) -> RelaxA2C:
    return RelaxA2C("MlpPolicy", make_vec_env(env_fn, n_envs=2, seed=0), seed=0, device="cpu", **kwargs)


def design(model: RelaxA2C) -> dict:
    return {name: getattr(model, name) for name in OTHERS} | {"cv_arch": model.policy.cv_arch}


def per_bit_widths(model: RelaxA2C) -> list[int]:
    """The hidden widths of the per-sub-action head's network."""
    layers = model.policy.control_variate.block_net
    return [layer.out_features for layer in layers if isinstance(layer, torch.nn.Linear)][:-1]


def rewritten(path: Path, edit) -> bytes:
    """A saved model's file with ``edit`` applied to its data: what a file written by older code holds."""
    with zipfile.ZipFile(path) as old:
        files = {name: old.read(name) for name in old.namelist()}
    data = json.loads(files["data"])
    edit(data)
    files["data"] = json.dumps(data).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as new:
        for name, content in files.items():
            new.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("env_fn", "expected"),
    [
        (lambda: IdentityEnvMultiBinary(4), {**BITS, "cv_arch": "per_sub_action"}),
        (lambda: IdentityEnv(4), {**OTHERS, "cv_arch": "mlp"}),
        (lambda: IdentityEnvMultiDiscrete(3), {**OTHERS, "cv_arch": "mlp"}),
        (lambda: IdentityEnvBox(), {**OTHERS, "cv_arch": "mlp"}),
    ],
    ids=["multibinary", "discrete", "multidiscrete", "box"],
)
def test_the_defaults_follow_the_action_space(env_fn, expected: dict) -> None:
    assert design(model_on(env_fn)) == expected


def test_an_option_given_overrides_only_itself() -> None:
    model = model_on(lambda: IdentityEnvMultiBinary(4), cv_steps=16, pg_estimator="all_action")
    assert design(model) == {**BITS, "cv_steps": 16, "cv_arch": "per_sub_action"}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"pg_estimator": "relax"}, {**OTHERS, "cv_arch": "mlp"}),
        ({"pg_estimator": "a2c"}, {**OTHERS, "pg_estimator": "a2c", "cv_arch": "mlp"}),  # it reads no ĉ
        ({"policy_kwargs": {"cv_arch": "mlp"}}, {**OTHERS, "cv_arch": "mlp"}),  # not affine: no exact sum
        ({"policy_kwargs": {"cv_arch": "factorised"}}, {**OTHERS, "cv_arch": "factorised"}),
        ({"policy_kwargs": {"cv_arch": "centred"}}, {**BITS, "cv_arch": "centred"}),
    ],
    ids=["relax", "a2c", "mlp-head", "factorised-head", "centred-head"],
)
def test_bits_keep_the_other_design_when_the_choices_given_rule_theirs_out(kwargs: dict, expected: dict) -> None:
    assert design(model_on(lambda: IdentityEnvMultiBinary(4), **kwargs)) == expected


def test_a_saved_model_keeps_its_design_and_one_saved_before_an_option_existed_keeps_that_options_value(
    tmp_path: Path,
) -> None:
    env = make_vec_env(lambda: IdentityEnvMultiBinary(4), n_envs=2, seed=0)
    model = RelaxA2C("MlpPolicy", env, seed=0, device="cpu", n_steps=4).learn(16)
    model.save(tmp_path / "model.zip")
    assert design(RelaxA2C.load(tmp_path / "model.zip", env=env, device="cpu")) == design(model)

    # A file written before `baseline` existed holds no value for it; it trained with V in the baseline.
    (tmp_path / "old.zip").write_bytes(rewritten(tmp_path / "model.zip", lambda data: data.pop("baseline")))
    assert RelaxA2C.load(tmp_path / "old.zip", env=env, device="cpu").baseline == "value"


def without_the_per_bit_width(data: dict) -> None:
    # SB3 reads policy_kwargs from their pickle (":serialized:"), so the key goes from there too
    policy_kwargs = json_to_data(json.dumps({"policy_kwargs": data["policy_kwargs"]}))["policy_kwargs"]
    del policy_kwargs["cv_sub_action_net_arch"]
    data["policy_kwargs"] = json.loads(data_to_json({"policy_kwargs": policy_kwargs}))["policy_kwargs"]


def test_bits_get_a_per_bit_network_of_16_units_unless_told_otherwise_and_older_files_keep_their_32(
    tmp_path: Path,
) -> None:
    env = make_vec_env(lambda: IdentityEnvMultiBinary(4), n_envs=2, seed=0)
    assert per_bit_widths(model_on(lambda: IdentityEnvMultiBinary(4))) == [16]
    given = {"policy_kwargs": {"cv_sub_action_net_arch": [8, 8]}}
    assert per_bit_widths(model_on(lambda: IdentityEnvMultiBinary(4), **given)) == [8, 8]
    relax = {"pg_estimator": "relax", "policy_kwargs": {"cv_arch": "per_sub_action"}}
    assert per_bit_widths(model_on(lambda: IdentityEnvMultiBinary(4), **relax)) == [32]  # the policy's own

    # Before 2026-12-07 the bits design left the width to the policy, whose default is 32: the file has no key.
    old = RelaxA2C("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"cv_sub_action_net_arch": [32]})
    old.learn(16).save(tmp_path / "model.zip")
    (tmp_path / "old.zip").write_bytes(rewritten(tmp_path / "model.zip", without_the_per_bit_width))
    loaded = RelaxA2C.load(tmp_path / "old.zip", env=env, device="cpu")
    assert per_bit_widths(loaded) == [32]
    for key, value in old.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key
