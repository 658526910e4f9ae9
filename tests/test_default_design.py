"""RelaxA2C's design options left None follow the action space (``relax_options.DESIGNS``), and a saved model
keeps the design it trained with."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete

from relax_rl import RelaxA2C

BITS = {"pg_estimator": "all_action", "baseline": "control_variate", "cv_data": "replay", "cv_steps": 4}
OTHERS = {"pg_estimator": "relax", "baseline": "value", "cv_data": "rollout", "cv_steps": 1}


def model_on(env_fn, **kwargs) -> RelaxA2C:
    return RelaxA2C("MlpPolicy", make_vec_env(env_fn, n_envs=2, seed=0), seed=0, device="cpu", **kwargs)


def design(model: RelaxA2C) -> dict:
    return {name: getattr(model, name) for name in OTHERS} | {"cv_arch": model.policy.cv_arch}


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
    with zipfile.ZipFile(tmp_path / "model.zip") as old:
        files = {name: old.read(name) for name in old.namelist()}
    data = json.loads(files["data"])
    del data["baseline"]
    files["data"] = json.dumps(data).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as new:
        for name, content in files.items():
            new.writestr(name, content)
    (tmp_path / "old.zip").write_bytes(buffer.getvalue())
    assert RelaxA2C.load(tmp_path / "old.zip", env=env, device="cpu").baseline == "value"
