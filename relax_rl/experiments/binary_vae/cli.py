"""Command line of the binary VAE benchmark; see the package docstring for an example."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from relax_rl.experiments.binary_vae.data import DataError, Dataset, default_cache_dir, load_mnist, load_omniglot
from relax_rl.experiments.binary_vae.gradients import ESTIMATORS
from relax_rl.experiments.binary_vae.models import MODELS
from relax_rl.experiments.binary_vae.plots import plot_curves
from relax_rl.experiments.binary_vae.training import Config, train
from relax_rl.experiments.cli_args import OneLineParser, positive_float, positive_int

PROG = "relax-rl vae"
DATASET_DIRS = {"mnist": "binarized_mnist", "omniglot": "omniglot"}


def default_data_dir(dataset: str) -> Path:
    """Where ``--download`` puts a dataset, and where it is read from without ``--data``: the user cache."""
    return default_cache_dir() / DATASET_DIRS[dataset]


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    """Command-line options; bad values exit with code 2 and a one-line message."""
    p = OneLineParser(prog=prog, description="Train a binary VAE with one gradient estimator per stochastic layer.")
    p.add_argument("--estimator", required=True, choices=ESTIMATORS)
    p.add_argument("--model", default="linear1", choices=MODELS, help="(default linear1)")
    p.add_argument("--dataset", default="mnist", choices=tuple(DATASET_DIRS), help="(default mnist)")
    p.add_argument("--steps", type=positive_int, default=1000, help="training steps (default 1000)")
    p.add_argument("--batch-size", type=positive_int, default=24, help="(default 24, the paper's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam on the VAE (default 1e-3)")
    p.add_argument("--cv-lr", type=positive_float, default=1e-3, help="Adam on control variates (default 1e-3)")
    p.add_argument("--eval-every", type=positive_int, help="steps between evaluations (default steps/20)")
    p.add_argument("--iwae-samples", type=positive_int, default=100, help="samples of the test bound (default 100)")
    p.add_argument(
        "--test-subset",
        type=positive_int,
        default=1000,
        help="first N test images for the final IWAE bound (default 1000; 10000, all of MNIST's, as the paper)",
    )
    p.add_argument("--train-subset", type=positive_int, help="train on the first N training images only")
    p.add_argument(
        "--data", type=Path, help="data directory (default: <dataset> in the user cache, where --download puts it)"
    )
    p.add_argument("--cache", type=Path, help=f"cache for parsed .amat files (default {default_cache_dir()})")
    p.add_argument("--download", action="store_true", help="fetch missing MNIST .amat files into the data directory")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", type=Path, help="directory for the PNG curves")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    return p.parse_args(argv)


def load(args: argparse.Namespace) -> Dataset:
    """The chosen dataset, cut to ``--train-subset`` images; raises DataError."""
    data_dir = args.data or default_data_dir(args.dataset)
    data = load_omniglot(data_dir) if args.dataset == "omniglot" else load_mnist(data_dir, args.cache, args.download)
    return Dataset(data.train[: args.train_subset], data.valid, data.test)


def main(argv: list[str] | None = None, prog: str = PROG) -> None:
    """Train, then print a summary (or one JSON object) and write the curves if asked."""
    args = parse_args(argv, prog)
    try:
        data = load(args)
    except DataError as err:
        OneLineParser(prog=prog).error(str(err))
    torch.set_num_threads(args.threads)
    config = Config(
        estimator=args.estimator,
        model=args.model,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        cv_lr=args.cv_lr,
        eval_every=args.eval_every,
        iwae_samples=args.iwae_samples,
        test_subset=args.test_subset,
    )
    result = train(config, data, progress=not args.json)
    summary = {**result.summary, "dataset": args.dataset, "train_images": int(data.train.shape[0])}
    figures = []
    if args.out is not None:
        figures = plot_curves({args.estimator: result.history}, args.out, f"{args.model}_{args.estimator}")
    if args.json:
        print(json.dumps({**summary, "history": vars(result.history)}))
        return
    log_var = ", ".join("n/a" if v is None else f"{v:.2f}" for v in summary["log_var"])
    print(
        f"{args.model} {args.estimator}: train ELBO {summary['train_elbo']:.2f}, "
        f"valid ELBO {summary['valid_elbo']:.2f}, test IWAE({config.iwae_samples}) {summary['test_iwae']:.2f}, "
        f"log-var [{log_var}], {summary['steps_per_s']:.1f} steps/s"
    )
    for path in figures:
        print(f"wrote {path}")
