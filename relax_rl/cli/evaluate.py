"""``python evaluate.py``: evaluate a saved model on fresh episodes."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch

from relax_rl.cli.common import CLIParser, add_threads_argument, run_guarded, stdout_to_stderr
from relax_rl.config import ALGOS
from relax_rl.errors import UsageError
from relax_rl.run import (
    CONFIG_FILE,
    FINAL_MODEL,
    detect_algo,
    evaluate,
    find_run_config,
    read_model_data,
    torch_threads,
)
from relax_rl.run.checkpoint import list_checkpoints


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = CLIParser(prog=prog, description="Evaluate a saved model.")
    parser.add_argument(
        "--model", type=Path, required=True, help="a .zip saved by relax-rl train (or SB3), or a run directory"
    )
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


def model_file(path: Path) -> Path:
    """The model a ``--model`` names: a file (``.zip`` optional, as SB3's ``load`` has it), or a run directory's
    final model."""
    if path.is_dir():
        if (path / FINAL_MODEL).is_file():
            return path / FINAL_MODEL
        checkpoints = list_checkpoints(path)
        newest = f"; name a checkpoint instead, the newest is {checkpoints[0]}" if checkpoints else ""
        raise UsageError(f"{path} is a directory without a {FINAL_MODEL} (a run that has not finished?){newest}")
    if path.suffix != ".zip" and not path.exists():
        return path.with_name(f"{path.name}.zip")
    return path


def main(argv: Sequence[str] | None = None, prog: str = "relax-rl evaluate") -> int:
    """Entry point of ``evaluate.py``; returns the exit status."""
    return run_guarded(partial(_evaluate, prog=prog), argv)


def _evaluate(argv: Sequence[str] | None, prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    if args.episodes < 1:
        raise UsageError("--episodes must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu or auto")
    args.model = model_file(args.model)
    algo = detect_algo(read_model_data(args.model))
    if algo not in ALGOS:
        raise UsageError(f"{args.model} holds a {algo} model; {prog} supports {', '.join(ALGOS)}")
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
    if run_config is not None and env_id != run_config.env:  # said once it worked: an error stays one line
        print(f"note: the model was trained on {run_config.env}; evaluated on {env_id} as asked", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{algo} on {env_id}: mean return {result['mean_return']:.2f} ± {result['std_return']:.2f} "
            f"over {result['episodes']} episodes (mean length {result['mean_length']:.1f})"
        )
    return 0
