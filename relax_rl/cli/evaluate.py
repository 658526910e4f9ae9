"""``python evaluate.py``: evaluate a saved model on fresh episodes."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch

from relax_rl.cli.common import CLIParser, add_threads_argument, run_guarded, stdout_to_stderr
from relax_rl.config import ALGOS
from relax_rl.errors import UsageError
from relax_rl.run import CONFIG_FILE, detect_algo, evaluate, find_run_config, read_model_data, torch_threads


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = CLIParser(prog=prog, description="Evaluate a saved model.")
    parser.add_argument("--model", type=Path, required=True, help="a .zip saved by train.py (or SB3)")
    parser.add_argument("--env", help="default: the env in config.yml of the model's run directory")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the policy's most likely action, as SB3's evaluate_policy does (default); --no-deterministic samples",
    )
    parser.add_argument("--video", type=Path, metavar="DIR", help="record every episode into DIR as MP4")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="load with SB3's loader, which unpickles the file: a crafted file can run arbitrary code; "
        "only for files you trust (default: read only JSON and tensors)",
    )
    add_threads_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "relax-rl evaluate") -> int:
    """Entry point of ``evaluate.py``; returns the exit status."""
    return run_guarded(partial(_evaluate, prog=prog), argv)


def _evaluate(argv: Sequence[str] | None, prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    if args.episodes < 1:
        raise UsageError("--episodes must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu or auto")
    if args.model.suffix != ".zip" and not args.model.exists():
        args.model = args.model.with_name(f"{args.model.name}.zip")  # as SB3's load does
    algo = detect_algo(read_model_data(args.model))
    if algo not in ALGOS:
        raise UsageError(f"{args.model} holds a {algo} model; evaluate.py supports {', '.join(ALGOS)}")
    run_config = find_run_config(args.model)
    env_id = args.env or (run_config.env if run_config else None)
    if env_id is None:
        raise UsageError(f"no --env given and no {CONFIG_FILE} next to {args.model}")
    frame_stack = run_config.frame_stack if run_config else None
    with stdout_to_stderr() if args.json else contextlib.nullcontext(), torch_threads(args.threads):
        result = evaluate(
            args.model,
            algo,
            env_id,
            args.episodes,
            args.deterministic,
            args.seed,
            frame_stack,
            args.video,
            args.device,
            unsafe_load=args.unsafe_load,
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{algo} on {env_id}: mean return {result['mean_return']:.2f} ± {result['std_return']:.2f} "
            f"over {result['episodes']} episodes (mean length {result['mean_length']:.1f})"
        )
    return 0
