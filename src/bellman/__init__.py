"""bellman: deep reinforcement learning from the Q-table to DQN, PPO, AlphaZero and RLHF.

The public API:
    bellman.train(algo, env_id, ...)     train in a new run directory (see `bellman.api`)
    bellman.resume(run_dir)              continue a run exactly where it stopped
    bellman.load_policy(run_dir)         the greedy policy of a run's latest checkpoint
    bellman.evaluate_run(run_dir, ...)   seeded evaluation, writes eval.json
    bellman.make_env(env_id)             gymnasium.make with clear errors; registers bellman/ envs
"""

from bellman.api import ALGORITHMS, evaluate_run, load_policy, resume, train
from bellman.envs import make_env

__all__ = ["ALGORITHMS", "evaluate_run", "load_policy", "make_env", "resume", "train"]
__version__ = "0.1.0"
