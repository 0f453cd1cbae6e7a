"""What the deep algorithms' training loops share: vector-env bookkeeping, evaluation during
training, and the torch state a checkpoint holds.

The loops in `algos/` (DQN, PPO, ...) all step a gymnasium `SyncVectorEnv` that resets finished
environments in the same step (`AutoresetMode.SAME_STEP`), so the observation an episode ended on
is in `infos["final_obs"]` and the episode's raw return in `infos["final_info"]["episode"]`
(from `RecordEpisodeStatistics`). They count env steps summed over the environments, act on
multiples of an interval (`crossed`), evaluate their policy on a separate env during training,
and save networks and Adam's moments as named arrays. Each of those pieces lives here once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers.utils import RunningMeanStd as _GymnasiumRunningMeanStd

from bellman.config import TrainConfig, choices, interval
from bellman.errors import ConfigError
from bellman.evaluation import evaluate

if TYPE_CHECKING:
    from bellman.run import Run


# ---- the fields every deep algorithm has --------------------------------------------------
@dataclass(frozen=True)
class DeepConfig(TrainConfig):
    """Fields of every algorithm in `algos/`: evaluation during training, Atari frames, torch."""

    eval_every: int = field(default=0, metadata=interval("[0, inf)"))
    """Env steps between evaluations during training (0: none); logged as eval_return_mean."""
    eval_episodes: int = field(default=10, metadata=interval("[1, inf)"))
    """Episodes per evaluation during training."""
    stop_when_solved: bool = False
    """Stop once an evaluation's mean return reaches the env's reward_threshold (CartPole: 475)."""
    frame_stack: int = field(default=4, metadata=interval("[1, 16]"))
    """Atari only: frames stacked into one observation."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the networks run: auto uses CUDA when present."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch (1 is fastest on small, shared machines)."""

    def validate(self) -> None:
        if self.stop_when_solved and not self.eval_every:
            raise ConfigError("stop_when_solved needs evaluations: set eval_every > 0")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device = cuda but no CUDA GPU is visible; use device = auto or cpu")


# ---- vector envs and step counting --------------------------------------------------------
def crossed(before: int, after: int, every: int) -> int:
    """How many multiples of `every` lie in (before, after]."""
    return after // every - before // every


def final_observations(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """s_t+1 as each step ended: for envs reset in this step, gymnasium's `final_obs`."""
    if "_final_obs" not in infos or not infos["_final_obs"].any():
        return next_obs
    final = next_obs.copy()
    for e in np.flatnonzero(infos["_final_obs"]):
        final[e] = infos["final_obs"][e]
    return final


def log_episodes(run: Run, step: int, infos: dict) -> None:
    """Finished episodes (whole games with raw scores for Atari) from RecordEpisodeStatistics."""
    final = infos.get("final_info")
    if not final or "episode" not in final:
        return
    episode = final["episode"]
    for e in np.flatnonzero(final["_episode"]):
        run.log_episode(step, float(episode["r"][e]), int(episode["l"][e]))


class RunningMeanStd(_GymnasiumRunningMeanStd):
    """gymnasium's running mean, variance and count (what NormalizeObservation/NormalizeReward
    keep), with a fast path for the one-sample batches those wrappers feed it on every step.

    The same parallel-variance update (Chan et al.) with a batch of one, x:
        delta = x - mean,  n' = n + 1,  mean' = mean + delta / n',
        var' = (var n + delta^2 n / n') / n'
    in a handful of numpy operations instead of np.mean and np.var (8x faster per step).
    Give one instance to the wrappers of all N envs and they share one set of statistics.
    """

    def update(self, x) -> None:
        x = np.asarray(x)
        if len(x) != 1:
            super().update(x)
            return
        delta = x[0] - self.mean
        total = self.count + 1
        self.mean = self.mean + delta / total
        self.var = (self.var * self.count + delta * delta * (self.count / total)) / total
        self.count = total


# ---- evaluation during training -----------------------------------------------------------
def reward_threshold(config, eval_env: gym.Env | None) -> float | None:
    """The return at which the env counts as solved, when `config.stop_when_solved` asks for it."""
    if not config.stop_when_solved:
        return None
    threshold = eval_env.spec.reward_threshold if eval_env.spec is not None else None
    if threshold is None:
        raise ConfigError(
            f"stop_when_solved: gymnasium gives '{config.env}' no reward_threshold; "
            "turn stop_when_solved off and choose steps instead"
        )
    return float(threshold)


def evaluate_during_training(policy, eval_env: gym.Env, config) -> float:
    """Mean return of `policy` over `config.eval_episodes` episodes, seeded apart from the
    training episodes and the same at every evaluation of a run (so evaluations compare)."""
    seed = 1_000_000 + config.seed * 1000
    return evaluate(policy, eval_env, episodes=config.eval_episodes, seed=seed)["mean"]


class TrainingEvaluation:
    """Evaluation during training: every `config.eval_every` env steps (0: never), the mean return
    of `config.eval_episodes` episodes on an env of its own; the metrics columns
    `eval_return_mean` and `eval_seconds`; and, with `config.stop_when_solved`, whether that mean
    reached the env's reward threshold.

    Args:
        config: has eval_every, eval_episodes, stop_when_solved, seed and env.
        make_eval_env: builds the evaluation env (called once, only when eval_every > 0).
    """

    def __init__(self, config, make_eval_env: Callable[[], gym.Env]):
        self.config = config
        self.env = make_eval_env() if config.eval_every else None
        self.threshold = reward_threshold(config, self.env)
        self.seconds = 0.0
        #: The mean return of the evaluation at the current step; None when there was none.
        self.result: float | None = None

    def due(self, before: int, after: int) -> bool:
        """Whether a multiple of eval_every lies in (before, after]: call once per step of the
        loop, before `run` (it forgets the previous step's result)."""
        self.result = None
        return self.env is not None and crossed(before, after, self.config.eval_every) > 0

    def run(self, policy) -> float:
        """Evaluate `policy` (obs -> action) now; the mean return."""
        started = time.perf_counter()
        self.result = evaluate_during_training(policy, self.env, self.config)
        self.seconds += time.perf_counter() - started
        return self.result

    def columns(self) -> dict[str, float]:
        """This step's evaluation columns (eval_return_mean NaN when it had no evaluation);
        nothing when evaluation is off, so every row of a run has the same columns."""
        if self.env is None:
            return {}
        result = math.nan if self.result is None else self.result
        return {"eval_return_mean": result, "eval_seconds": self.seconds}

    def solved(self) -> bool:
        """Whether the evaluation at this step reached the reward threshold (stop_when_solved)."""
        return (
            self.threshold is not None
            and self.result is not None
            and (self.result >= self.threshold)
        )

    def solved_note(self, step: int) -> str:
        """The line the CLI prints when the run stops because it solved the env."""
        return (
            f"solved: evaluation mean {self.result:g} >= reward threshold {self.threshold:g} "
            f"of {self.config.env} at step {step}"
        )

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
