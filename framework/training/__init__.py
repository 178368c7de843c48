"""Training runs: the loop, run directories, checkpoints, evaluation and plots."""

from .api import evaluate_run, format_evaluation, load_trained, resume_run, start_run
from .runs import Checkpoint, load_checkpoint, save_checkpoint

__all__ = [
    "Checkpoint",
    "evaluate_run",
    "format_evaluation",
    "load_checkpoint",
    "load_trained",
    "resume_run",
    "save_checkpoint",
    "start_run",
]
