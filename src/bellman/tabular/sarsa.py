"""SARSA: on-policy TD control (Rummery & Niranjan, 1994; Sutton & Barto, 2nd ed., section 6.4).

    Sarsa (on-policy TD control) for estimating Q ~ q*
        Algorithm parameters: step size alpha in (0, 1], small epsilon > 0
        Initialize Q(s, a) for all s, a arbitrarily, except Q(terminal, .) = 0
        1. Loop for each episode:
        2.     Initialize S
        3.     Choose A from S using the policy derived from Q (e.g. epsilon-greedy)
        4.     Loop for each step of episode:
        5.         Take action A, observe R, S'
        6.         Choose A' from S' using the policy derived from Q (e.g. epsilon-greedy)
        7.         Q(S, A) <- Q(S, A) + alpha [R + gamma Q(S', A') - Q(S, A)]
        8.         S <- S'; A <- A'
        9.     until S is terminal

Unlike Q-learning, the target uses the action A' the behaviour policy will actually take, so
SARSA learns the value of the epsilon-greedy policy itself (the "safe path" of the cliff walk).

Deviations and details:
    - When S' is terminal the target is R alone and no A' is drawn; a time limit (`truncated`)
      still bootstraps from Q(S', A').
    - epsilon and alpha follow schedules over the run's env steps (`bellman.schedules`).
    - The Bellman residual logged against P is the optimality residual, as for Q-learning: it
      shows how far the learned Q is from Q*, which SARSA reaches only as epsilon -> 0.
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


def sarsa_target(reward: float, q_next_action: float, gamma: float, terminated: bool) -> float:
    """R if S' is terminal, else R + gamma Q(S', A')."""
    return reward if terminated else reward + gamma * q_next_action


def train(config: TabularConfig, env: gym.Env, run: Run) -> np.ndarray:
    """Run SARSA for `config.steps` env steps; returns the learned Q-table [S, A]."""
    tables = Tables(config, env, run)  # Q(s, a) = q_init, or as the checkpoint left it
    q, rng = tables.q, tables.rng
    epsilon, alpha = config.epsilon_at(), config.alpha_at()

    with run.session(start_step=tables.step):
        while tables.running:  # 1. for each episode
            s = tables.reset()  # 2. initialize S
            a = epsilon_greedy(q[s], epsilon(tables.step), rng)  # 3. choose A from S
            while True:  # 4. for each step of the episode
                s_next, r, terminated, truncated, _ = env.step(a)  # 5. take A, observe R, S'
                # 6. choose A' from S' (no A' after a terminal state: nothing follows it)
                a_next = 0 if terminated else epsilon_greedy(q[s_next], epsilon(tables.step), rng)
                target = sarsa_target(r, q[s_next, a_next], config.gamma, terminated)
                q[s, a] += alpha(tables.step) * (target - q[s, a])  # 7. the SARSA update
                budget_spent = tables.end_of_step(s, a, r)
                s, a = s_next, a_next  # 8. S <- S'; A <- A'
                if terminated or truncated or budget_spent:  # 9. until S is terminal
                    break
            tables.end_of_episode(finished=terminated or truncated)
    return q
