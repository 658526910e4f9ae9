"""Training loop and metrics of the binary VAE benchmark.

Each step draws one latent sample per image, estimates every layer's logit gradient and
backpropagates it into the encoder (``ℓ.backward(ĝ)``, the paper's per-layer placement),
together with the ordinary gradient of the sampled ELBO: the decoder's and prior's whole
gradient and the encoder's direct ``−log q`` term. The learned parts of the estimators
(control variates, NVIL's baseline) take a step of their own Adam on their objective
first, because that objective's graph runs through the VAE's parameters before they move.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from relax_rl.estimators import apply_gradients
from relax_rl.experiments.binary_vae.data import Dataset
from relax_rl.experiments.binary_vae.gradients import LayerEstimator, estimate
from relax_rl.experiments.binary_vae.models import BinaryVAE
from relax_rl.experiments.cli_args import progress_steps

EVAL_CHUNK = 2000  # images per forward pass when evaluating
IWAE_CHUNK = 50  # images per forward pass of the k-sample bound (50 × 100 latent samples)
PROBE_IMAGES = 16  # fixed training images whose gradients measure the estimator's variance
PROBE_REPEATS = 64  # independent single-sample estimates per probe image


@dataclass(frozen=True)
class Config:
    """One run's settings; every field is also a command-line option."""

    estimator: str
    model: str = "linear1"
    steps: int = 1000
    batch_size: int = 24
    seed: int = 0
    lr: float = 1e-3
    cv_lr: float = 1e-3
    eval_every: int | None = None  # default: 20 evaluations per run
    iwae_samples: int = 100
    test_subset: int | None = None  # default: the whole test set

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 20)


@dataclass
class History:
    """Curves sampled every ``eval_interval`` steps."""

    step: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)  # mean batch ELBO over the steps since the last point
    valid_elbo: list[float] = field(default_factory=list)
    log_var: list[list[float | None]] = field(default_factory=list)  # one value per stochastic layer


@dataclass
class Result:
    summary: dict
    history: History


def _as_tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(images).float()


@torch.no_grad()
def mean_elbo(model: BinaryVAE, images: Tensor) -> float:
    """Single-sample ELBO averaged over ``images``."""
    total = 0.0
    for x in images.split(EVAL_CHUNK):
        values, logits = model.sample_q(x)
        total += model.elbo(x, values, logits).sum().item()
    return total / images.shape[0]


@torch.no_grad()
def mean_iwae(model: BinaryVAE, images: Tensor, k: int) -> float:
    """The ``k``-sample importance-weighted bound averaged over ``images``."""
    return sum(model.iwae(x, k).sum().item() for x in images.split(IWAE_CHUNK)) / images.shape[0]


def log_variance(model: BinaryVAE, estimators: nn.ModuleList, probe: Tensor) -> list[float | None]:
    """Per layer, the log of the variance of single-sample estimates of ``∂ELBO/∂ℓ``.

    Each probe image is repeated ``PROBE_REPEATS`` times; the variance is taken across the
    repeats of one image (so it excludes the spread between images), then averaged over
    images and latent units. None where every estimate is identical (no log).
    """
    x = probe.repeat_interleave(PROBE_REPEATS, dim=0)
    grads = estimate(model, estimators, x, create_graph=False).gradients()
    out: list[float | None] = []
    for g in grads:
        var = g.detach().view(probe.shape[0], PROBE_REPEATS, -1).var(dim=1).mean().item()
        out.append(math.log(var) if var > 0 else None)
    return out


def train(config: Config, data: Dataset, progress: bool = False) -> Result:
    """Train one VAE with one estimator per stochastic layer; evaluate along the way and at the end."""
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    train_x, valid_x = _as_tensor(data.train), _as_tensor(data.valid)
    test_x = _as_tensor(data.test[: config.test_subset])
    model = BinaryVAE(config.model, x_dim=train_x.shape[1], data_mean=train_x.mean(0))
    estimators = nn.ModuleList(LayerEstimator(config.estimator, model, i) for i in range(model.n_layers))
    learned = list(estimators.parameters())
    model_opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    learner_opt = torch.optim.Adam(learned, lr=config.cv_lr) if learned else None
    probe = train_x[:PROBE_IMAGES]
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(train_x.shape[0], generator=generator)
    cursor = 0
    history = History()
    window: list[float] = []
    train_seconds = train_cpu_seconds = 0.0

    for step in progress_steps(config.steps, f"{config.model} {config.estimator}", progress):
        if cursor + config.batch_size > order.numel():  # a new epoch: reshuffle
            order, cursor = torch.randperm(train_x.shape[0], generator=generator), 0
        x = train_x[order[cursor : cursor + config.batch_size]]
        cursor += config.batch_size

        tick, cpu_tick = time.perf_counter(), time.process_time()
        result = estimate(model, estimators, x, create_graph=learner_opt is not None)
        f_b = result.elbo.detach()
        if learner_opt is not None:
            loss = sum(
                est.learner_loss(g, f_b, ctx)
                for est, g, ctx in zip(estimators, result.gradients(), result.contexts, strict=True)
            )
            learner_opt.zero_grad()
            apply_gradients(learned, torch.autograd.grad(loss, learned))
            learner_opt.step()
        # Maximise the ELBO: its direct gradient, plus each layer's estimate pushed through the encoder.
        pushed = sum((g.detach() * lg).sum() for g, lg in zip(result.estimates, result.logits, strict=True))
        model_opt.zero_grad()
        (-(result.elbo.sum() + pushed) / x.shape[0]).backward()
        model_opt.step()
        for est in estimators:
            est.update_centre(f_b)
        train_seconds += time.perf_counter() - tick
        train_cpu_seconds += time.process_time() - cpu_tick

        window.append(f_b.mean().item())
        if step % config.eval_interval == 0 or step == config.steps:
            history.step.append(step)
            history.train_elbo.append(sum(window) / len(window))
            history.valid_elbo.append(mean_elbo(model, valid_x))
            history.log_var.append(log_variance(model, estimators, probe))
            window = []
            if progress:
                tqdm.write(
                    f"step {step}: train ELBO {history.train_elbo[-1]:.1f}, valid ELBO {history.valid_elbo[-1]:.1f}",
                    file=sys.stderr,
                )

    summary = {
        **{k: v for k, v in asdict(config).items() if k not in ("eval_every", "test_subset")},
        "eval_every": config.eval_interval,
        "test_images": test_x.shape[0],
        "train_elbo": history.train_elbo[-1],
        "valid_elbo": history.valid_elbo[-1],
        "test_iwae": mean_iwae(model, test_x, config.iwae_samples),
        "log_var": history.log_var[-1],
        "steps_per_s": config.steps / train_seconds,
        # CPU time as well: on a shared machine the wall-clock rate also measures the neighbours.
        "steps_per_cpu_s": config.steps / train_cpu_seconds,
        "wall_s": round(time.perf_counter() - start, 3),
    }
    return Result(summary, history)
