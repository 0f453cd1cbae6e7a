"""Q-learning: off-policy TD control (Watkins, 1989; Sutton & Barto, 2nd ed., section 6.5).

    Q-learning (off-policy TD control) for estimating pi ~ pi*
        Algorithm parameters: step size alpha in (0, 1], small epsilon > 0
        Initialize Q(s, a) for all s, a arbitrarily, except Q(terminal, .) = 0
        1. Loop for each episode:
        2.     Initialize S
        3.     Loop for each step of episode:
        4.         Choose A from S using the policy derived from Q (e.g. epsilon-greedy)
        5.         Take action A, observe R, S'
        6.         Q(S, A) <- Q(S, A) + alpha [R + gamma max_a Q(S', a) - Q(S, A)]
        7.         S <- S'
        8.     until S is terminal

Deviations and details:
    - The target is R alone when S' is terminal (`terminated`); a time limit (`truncated`) is not
      a terminal state, so its target still bootstraps from max_a Q(S', a).
    - epsilon and alpha follow schedules over the run's env steps (`bellman.schedules`).
    - When the env has a transition table P, each metrics row carries the Bellman residual
      max |Q - (R + gamma max Q')| measured against P: it is zero exactly at Q*.
    - Checkpoints are taken between episodes, so a resumed run is bit-for-bit the same run.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from bellman.run import Run
from bellman.tabular.td import (
    Tables,
    TabularConfig,
    check_checkpoint,
    check_env,
    epsilon_greedy,
    load_policy,
    make_eval_env,
    make_train_env,
)

Config = TabularConfig
__all__ = [
    "Config",
    "check_checkpoint",
    "check_env",
    "load_policy",
    "make_eval_env",
    "make_train_env",
    "train",
]


def q_learning_target(reward: float, q_next: np.ndarray, gamma: float, terminated: bool) -> float:
    """R if S' is terminal, else R + gamma max_a Q(S', a)."""
    return reward if terminated else reward + gamma * float(q_next.max())


def train(config: TabularConfig, env: gym.Env, run: Run) -> np.ndarray:
    """Run Q-learning for `config.steps` env steps; returns the learned Q-table [S, A]."""
    tables = Tables(config, env, run)  # Q(s, a) = q_init, or as the checkpoint left it
    q, rng = tables.q, tables.rng
    epsilon, alpha = config.epsilon_at(), config.alpha_at()

    with run.session(start_step=tables.step):
        while tables.running:  # 1. for each episode
            s = tables.reset()  # 2. initialize S
            while True:  # 3. for each step of the episode
                a = epsilon_greedy(q[s], epsilon(tables.step), rng)  # 4. choose A, epsilon-greedy
                s_next, r, terminated, truncated, _ = env.step(a)  # 5. take A, observe R, S'
                target = q_learning_target(r, q[s_next], config.gamma, terminated)
                q[s, a] += alpha(tables.step) * (target - q[s, a])  # 6. the Q-learning update
                budget_spent = tables.end_of_step(s, a, r)
                s = s_next  # 7. S <- S'
                if terminated or truncated or budget_spent:  # 8. until S is terminal
                    break
            tables.end_of_episode(finished=terminated or truncated)
    return q
