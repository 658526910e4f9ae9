"""Binary VAE (paper §6.2): per-layer estimators against exact gradients, the ELBO, training and the CLI."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from relax_rl.estimators import disarm
from relax_rl.experiments.binary_vae import cli
from relax_rl.experiments.binary_vae.data import Dataset
from relax_rl.experiments.binary_vae.gradients import UNBIASED, LayerEstimator, estimate
from relax_rl.experiments.binary_vae.models import BinaryVAE
from relax_rl.experiments.binary_vae.training import Config, train
from tests.helpers.stats import N_SE, assert_unbiased, z_scores

N = 10_000
X = torch.tensor([[1.0, 0, 1, 1, 0, 0, 1, 0]])  # one 8-pixel "image"
TINY = {"linear1": 6, "nonlinear": 6, "linear2": 3}  # latents per layer: 2^6 configurations in every case
# The test data of the project's shared folder (users download theirs into the cache with --download).
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core machine: extra threads only contend (10–100× slower here).

    ``cli.main`` pins one thread as well; the rest of the session gets its threads back.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(name: str) -> BinaryVAE:
    torch.manual_seed(0)
    model = BinaryVAE(name, x_dim=X.shape[1], latent=TINY[name], hidden=5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # sharper posteriors and likelihoods than the default initialisation
    return model


def last_linear(net: nn.Module) -> nn.Linear:
    return net if isinstance(net, nn.Linear) else net[-1]


def exact_bias_gradients(model: BinaryVAE) -> list[torch.Tensor]:
    """``∂ELBO/∂`` each encoder's output bias, summing over every latent configuration.

    An output bias moves its layer's logits one for one, so its gradient is the expected
    logit gradient: the quantity each layer's estimator estimates, row by row.
    """
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=model.latent)))
    n = states.shape[0]
    logits = model.encode(0, X).expand(n, -1)
    if model.n_layers == 1:
        values, all_logits = [states], [logits]
    else:  # every (b1, b2) pair: b1 = states[i], b2 = states[j]
        b1, b2 = states.repeat_interleave(n, dim=0), states.repeat(n, 1)
        values, all_logits = [b1, b2], [logits.repeat(n, 1), model.encode(1, b1)]
    log_q = model.log_q(all_logits, values)
    elbo = (log_q.exp() * model.elbo(X.expand(log_q.shape[0], -1), values, all_logits)).sum()
    biases = [last_linear(enc).bias for enc in model.encoders]
    return list(torch.autograd.grad(elbo, biases))


def perturbed_estimators(name: str, model: BinaryVAE) -> nn.ModuleList:
    """Estimators with random, clearly non-trivial learned parts: unbiasedness must hold for any φ."""
    torch.manual_seed(1)
    estimators = nn.ModuleList(LayerEstimator(name, model, layer) for layer in range(model.n_layers))
    with torch.no_grad():
        for est in estimators:
            est.centre.fill_(-3.0)
            for module in est.modules():
                if isinstance(module, nn.Linear):  # away from the control variates' zero output
                    module.weight.add_(torch.randn_like(module.weight))
                    module.bias.add_(torch.randn_like(module.bias))
                if hasattr(module, "eta"):
                    module.eta.fill_(0.8)
    return estimators


def single_sample_gradients(name: str, model: BinaryVAE) -> list[torch.Tensor]:
    estimators = perturbed_estimators(name, model)
    torch.manual_seed(2)
    return [g.detach() for g in estimate(model, estimators, X.expand(N, -1), create_graph=False).gradients()]


@pytest.mark.parametrize("model_name", list(TINY))
@pytest.mark.parametrize("name", UNBIASED)
def test_every_layer_gradient_is_unbiased(model_name: str, name: str) -> None:
    model = tiny_model(model_name)
    exact = exact_bias_gradients(model)
    for layer, (samples, target) in enumerate(zip(single_sample_gradients(name, model), exact, strict=True)):
        assert samples.std(0).min() > 1e-3, "the test problem must not be trivial"
        assert_unbiased(samples, target, f"{name} on {model_name}, layer {layer + 1}")


def test_concrete_is_biased() -> None:
    model = tiny_model("linear1")
    (exact,) = exact_bias_gradients(model)
    (samples,) = single_sample_gradients("concrete", model)
    assert z_scores(samples, exact).abs().max() > 2 * N_SE


def test_disarm_weights_only_the_units_where_the_antithetic_pair_differs() -> None:
    logits = torch.tensor([[0.5, -2.0, 1.0]], requires_grad=True)
    b, b_anti = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    (g,) = torch.autograd.grad(disarm(torch.tensor([3.0]), torch.tensor([1.0]), logits, b, b_anti).sum(), logits)
    sigma_abs = torch.sigmoid(logits.detach().abs())
    # ½ (f(b) − f(b̃)) (−1)^b̃ σ(|ℓ|) where b ≠ b̃, else 0.
    assert torch.allclose(g, torch.stack([sigma_abs[0, 0], torch.tensor(0.0), -sigma_abs[0, 2]]).unsqueeze(0))


def hand_model() -> BinaryVAE:
    """One latent, two pixels, parameters set by hand."""
    model = BinaryVAE("linear1", x_dim=2, latent=1, data_mean=torch.tensor([0.5, 0.5]))
    with torch.no_grad():
        model.encoders[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
        model.encoders[0].bias.fill_(0.5)
        model.decoders[0].weight.copy_(torch.tensor([[2.0], [-1.0]]))
        model.decoders[0].bias.copy_(torch.tensor([0.0, 0.3]))
        model.prior_logits.fill_(0.2)
    return model


def log_sigmoid(a: float) -> float:
    return -math.log1p(math.exp(-a))


def test_elbo_matches_a_hand_computation() -> None:
    model, x = hand_model(), torch.tensor([[1.0, 0.0]])
    logits = model.encode(0, x)  # (1 − 0.5) − (0 − 0.5) + 0.5 = 1.5
    assert logits.item() == pytest.approx(1.5)
    # b = 1: the decoder sees 2b − 1 = 1, so its logits are (2, −0.7).
    one = log_sigmoid(2.0) + log_sigmoid(0.7) + log_sigmoid(0.2) - log_sigmoid(1.5)
    # b = 0: it sees −1, so its logits are (−2, 1.3).
    zero = log_sigmoid(-2.0) + log_sigmoid(-1.3) + log_sigmoid(-0.2) - log_sigmoid(-1.5)
    for b, expected in ((1.0, one), (0.0, zero)):
        assert model.elbo(x, [torch.tensor([[b]])], [logits]).item() == pytest.approx(expected, abs=1e-5)
    # The IWAE bound tends to log p(x) = log Σ_b p(x, b) as k grows (here with 2 states, quickly).
    q1 = math.exp(log_sigmoid(1.5))
    log_px = math.log(q1 * math.exp(one) + (1 - q1) * math.exp(zero))
    torch.manual_seed(0)
    assert model.iwae(x, k=200_000).item() == pytest.approx(log_px, abs=5e-3)
    assert q1 * one + (1 - q1) * zero < log_px


def synthetic_data(x_dim: int = 784, n: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    images = (rng.random((3 * n, x_dim)) < 0.2).astype(np.uint8)
    return Dataset(images[:n], images[n : 2 * n], images[2 * n :])


@pytest.mark.parametrize("name", ["nvil", "relaxed_rebar", "disarm"])
def test_training_on_two_layers_reports_every_metric(name: str) -> None:
    config = Config(name, model="linear2", steps=3, batch_size=4, eval_every=2, iwae_samples=3, test_subset=5)
    result = train(config, synthetic_data())
    s = result.summary
    assert result.history.step == [2, 3] and s["test_images"] == 5
    assert len(s["log_var"]) == 2 and all(isinstance(v, float) for v in s["log_var"])
    for key in ("train_elbo", "valid_elbo", "test_iwae", "steps_per_s"):
        assert math.isfinite(s[key]), key
    assert s["test_iwae"] < 0 and s["valid_elbo"] < 0


def test_runs_are_reproducible_per_seed() -> None:
    config = Config("rebar", steps=3, batch_size=4, iwae_samples=3, test_subset=5)
    first, again = train(config, synthetic_data()), train(config, synthetic_data())
    assert first.history == again.history and first.summary["test_iwae"] == again.summary["test_iwae"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """One cache for the module's runs on real MNIST: the first parses, the others load ``.npy``."""
    return str(tmp_path_factory.mktemp("mnist_cache"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "relax_rl.experiments.binary_vae", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not MNIST.is_dir(), reason="no binarized MNIST in ../shared/data")
def test_json_prints_one_object_on_a_slice_of_mnist(cache: str, capsys) -> None:
    cli.main([
        "--estimator", "disarm", "--steps", "4", "--batch-size", "8", "--train-subset", "256",
        "--test-subset", "10", "--iwae-samples", "10", "--data", str(MNIST), "--cache", cache, "--json",
    ])  # fmt: skip
    result = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON object
    assert {"train_elbo", "valid_elbo", "test_iwae", "log_var", "steps_per_s"} <= set(result)
    assert result["train_images"] == 256 and result["test_images"] == 10 and len(result["log_var"]) == 1
    assert -800 < result["valid_elbo"] < 0


def test_missing_data_exits_2_with_one_line_and_no_traceback(tmp_path) -> None:
    proc = run_cli("--estimator", "relax", "--data", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--download" in proc.stderr and "nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--estimator", "bogus"], "invalid choice"),
        (["--estimator", "relax", "--model", "linear3"], "invalid choice"),
        (["--estimator", "relax", "--steps", "0"], "positive integer"),
        (["--estimator", "relax", "--batch-size", "-4"], "positive integer"),
        (["--estimator", "relax", "--dataset", "omniglot", "--data", "/nonexistent"], "chardata.mat"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err


@pytest.mark.skipif(not MNIST.is_dir(), reason="no binarized MNIST in ../shared/data")
def test_out_writes_the_curves(tmp_path, cache: str, capsys) -> None:
    cli.main([
        "--estimator", "reinforce", "--steps", "2", "--batch-size", "4", "--train-subset", "64",
        "--test-subset", "4", "--iwae-samples", "4", "--data", str(MNIST), "--cache", cache, "--out", str(tmp_path),
    ])  # fmt: skip
    assert {p.name for p in tmp_path.glob("*.png")} == {"linear1_reinforce_elbo.png", "linear1_reinforce_log_var.png"}
    assert "valid ELBO" in capsys.readouterr().out
