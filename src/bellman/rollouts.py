"""Moved (issue 17): DeepConfig to `bellman.config`, evaluation during training to
`bellman.evaluation`, the vector-env helpers to `bellman.envs`, `crossed` to `bellman.loop`.
This module goes as soon as its importers import from there."""

from bellman.config import DeepConfig
from bellman.envs import RunningMeanStd, final_observations, log_episodes
from bellman.evaluation import TrainingEvaluation, evaluate_during_training, reward_threshold
from bellman.loop import crossed

__all__ = [
    "DeepConfig",
    "RunningMeanStd",
    "TrainingEvaluation",
    "crossed",
    "evaluate_during_training",
    "final_observations",
    "log_episodes",
    "reward_threshold",
]
