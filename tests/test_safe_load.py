"""The safe loader reads JSON and tensors only: models round-trip, crafted pickles never run."""

import base64
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from relax_rl import RelaxA2C
from relax_rl.cli import evaluate_main
from relax_rl.run import torch_threads
from relax_rl.safe_load import UnsafeModelError, load_model_safely, load_normalization, normalization_to_json


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):  # as train.py: on shared cores, more threads make these tiny models crawl
        yield


class _CreateFile:
    """Unpickling this opens (creates) ``path``: a harmless stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _trained(algo_cls, path, **kwargs):
    model = algo_cls("MlpPolicy", make_vec_env("CartPole-v1", 2, seed=0), n_steps=5, seed=0, device="cpu", **kwargs)
    model.learn(50)
    model.save(path)
    return model


def _rewrite(path, **entries):
    """Replace entries of the zip at ``path``: bytes as they are, dicts as the JSON of ``data``."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    contents.update({name: json.dumps(v).encode() if isinstance(v, dict) else v for name, v in entries.items()})
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in contents.items():
            archive.writestr(name, content)


def _data(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("data"))


@pytest.mark.parametrize(
    ("algo_cls", "kwargs"),
    [(RelaxA2C, {}), (A2C, {"policy_kwargs": {"activation_fn": torch.nn.ReLU, "net_arch": [16]}})],
    ids=["relax_a2c", "a2c-with-classes-in-policy-kwargs"],
)
def test_a_model_round_trips_and_acts_identically(algo_cls, kwargs, tmp_path):
    original = _trained(algo_cls, tmp_path / "model.zip", **kwargs)
    loaded = load_model_safely(tmp_path / "model.zip", algo_cls, make_vec_env("CartPole-v1", 1), device="cpu")
    assert type(loaded.policy) is type(original.policy)
    for name, tensor in original.policy.state_dict().items():
        assert torch.equal(loaded.policy.state_dict()[name], tensor), name
    observations = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    for deterministic in (True, False):
        torch.manual_seed(1)
        expected = original.predict(observations, deterministic=deterministic)[0]
        torch.manual_seed(1)
        np.testing.assert_array_equal(loaded.predict(observations, deterministic=deterministic)[0], expected)


def test_crafted_pickles_in_data_never_run(tmp_path):
    model_path, marker = tmp_path / "model.zip", tmp_path / "pwned"
    _trained(RelaxA2C, model_path)
    payload = base64.b64encode(pickle.dumps(_CreateFile(marker))).decode()
    data = _data(model_path)
    for entry in data.values():
        if isinstance(entry, dict) and ":serialized:" in entry:
            entry[":serialized:"] = payload  # every pickle in the file, the policy class's included
    _rewrite(model_path, data=data)
    args = ["--model", str(model_path), "--env", "CartPole-v1", "--episodes", "1"]

    assert evaluate_main(args) == 0  # the safe path needs none of the pickles
    assert not marker.exists()
    evaluate_main([*args, "--unsafe-load"])  # SB3's loader: the payload runs (then the load may fail)
    assert marker.exists()


def test_crafted_weights_file_is_refused(tmp_path):
    model_path, marker = tmp_path / "model.zip", tmp_path / "pwned"
    _trained(RelaxA2C, model_path)
    weights = io.BytesIO()
    torch.save({"mlp_extractor.weight": _CreateFile(marker)}, weights)
    _rewrite(model_path, **{"policy.pth": weights.getvalue()})
    with pytest.raises(UnsafeModelError, match=r"policy\.pth in .* holds more than tensors; refusing to unpickle"):
        load_model_safely(model_path, RelaxA2C, make_vec_env("CartPole-v1", 1))
    assert not marker.exists()


@pytest.mark.parametrize(
    "value",
    ["<function <lambda> at 0x7f0000000000>", "<class 'subprocess.Popen'>", "<class 'builtins.eval'>"],
    ids=["function", "class-outside-the-allow-list", "not-a-module-class"],
)
def test_policy_kwargs_that_need_unpickling_are_refused(value, tmp_path):
    model_path = tmp_path / "model.zip"
    _trained(A2C, model_path, policy_kwargs={"activation_fn": torch.nn.ReLU})
    data = _data(model_path)
    data["policy_kwargs"]["activation_fn"] = value
    _rewrite(model_path, data=data)
    with pytest.raises(UnsafeModelError, match=r"policy_kwargs\['activation_fn'\] .* cannot be rebuilt"):
        load_model_safely(model_path, A2C, make_vec_env("CartPole-v1", 1))


def test_another_algorithms_model_or_another_env_is_refused(tmp_path):
    _trained(A2C, tmp_path / "a2c.zip")
    with pytest.raises(UnsafeModelError, match="is not one of RelaxA2C's"):
        load_model_safely(tmp_path / "a2c.zip", RelaxA2C, make_vec_env("CartPole-v1", 1))
    with pytest.raises(UnsafeModelError, match=r"observation_space does not fit the env \(_shape: \[4\] in the file"):
        load_model_safely(tmp_path / "a2c.zip", A2C, make_vec_env("Acrobot-v1", 1))


def test_normalization_statistics_round_trip_through_json(tmp_path):
    env = VecNormalize(make_vec_env("CartPole-v1", 2, seed=0))
    env.reset()
    for _ in range(20):
        env.step(np.array([env.action_space.sample() for _ in range(2)]))
    (tmp_path / "stats.json").write_text(json.dumps(normalization_to_json(env)))
    loaded = load_normalization(tmp_path / "stats.json", make_vec_env("CartPole-v1", 2))
    observations = np.random.default_rng(0).normal(size=(5, 4))
    np.testing.assert_array_equal(loaded.normalize_obs(observations), env.normalize_obs(observations))
    assert not loaded.training and not loaded.norm_reward
