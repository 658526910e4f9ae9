"""The Run API: one run's life cycle, under every command (rl-baselines3-zoo's ExperimentManager).

from relax_rl.config import resolve_config
from relax_rl.run import train

result = train(resolve_config("relax_a2c", "CartPole-v1", seed=0), "runs/demo")
result.metrics["solved_at_episode"], result.evaluations
"""

from relax_rl.run.build import EVAL_SEED_OFFSET, make_env, make_model, observes_raw_env
from relax_rl.run.evaluation import evaluate
from relax_rl.run.files import (
    BEST_MODEL,
    CONFIG_FILE,
    FINAL_MODEL,
    METRICS_FILE,
    VECNORMALIZE_FILE,
    default_run_dir,
    detect_algo,
    find_run_config,
    read_model_data,
    read_run_config,
)
from relax_rl.run.lifecycle import EXIT_DIVERGED, RunResult, TrainingStopped, finished_result, resume, train
from relax_rl.run.session import N_EVAL_EPISODES, Report
from relax_rl.run.threads import torch_threads

__all__ = [
    "BEST_MODEL",
    "CONFIG_FILE",
    "EVAL_SEED_OFFSET",
    "EXIT_DIVERGED",
    "FINAL_MODEL",
    "METRICS_FILE",
    "N_EVAL_EPISODES",
    "VECNORMALIZE_FILE",
    "Report",
    "RunResult",
    "TrainingStopped",
    "default_run_dir",
    "detect_algo",
    "evaluate",
    "find_run_config",
    "finished_result",
    "make_env",
    "make_model",
    "observes_raw_env",
    "read_model_data",
    "read_run_config",
    "resume",
    "torch_threads",
    "train",
]
