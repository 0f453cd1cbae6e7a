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
    TabularConfig,
    check_env,
    checkpoint_state,
    epsilon_greedy,
    initial_state,
    log_metrics,
    optional_model,
)

Config = TabularConfig
__all__ = ["Config", "check_env", "train"]


def q_learning_target(reward: float, q_next: np.ndarray, gamma: float, terminated: bool) -> float:
    """R if S' is terminal, else R + gamma max_a Q(S', a)."""
    return reward if terminated else reward + gamma * float(q_next.max())


def train(config: TabularConfig, env: gym.Env, run: Run) -> np.ndarray:
    """Run Q-learning for `config.steps` env steps; returns the learned Q-table [S, A]."""
    state = initial_state(config, env, run.restored)
    q, visit_counts, rng, step = state["q"], state["visit_counts"], state["rng"], state["step"]
    epsilon, alpha = config.epsilon_at(), config.alpha_at()
    model = optional_model(env)

    with run.session(start_step=step):
        while step < config.steps and not run.stop_requested:  # 1. for each episode
            s, _ = env.reset(seed=config.seed if step == 0 else None)  # 2. initialize S
            episode_return, length = 0.0, 0
            while True:  # 3. for each step of the episode
                a = epsilon_greedy(q[s], epsilon(step), rng)  # 4. choose A (epsilon-greedy)
                s_next, r, terminated, truncated, _ = env.step(a)  # 5. take A, observe R, S'
                step += 1
                visit_counts[s, a] += 1
                target = q_learning_target(r, q[s_next], config.gamma, terminated)
                q[s, a] += alpha(step) * (target - q[s, a])  # 6. the Q-learning update
                s = s_next  # 7. S <- S'
                episode_return += r
                length += 1
                if step % config.log_every == 0 or step == config.steps:
                    log_metrics(run, step, q, visit_counts, model, config)
                if terminated or truncated or step >= config.steps:  # 8. until terminal
                    break
            if terminated or truncated:
                run.log_episode(step, episode_return, length)
            if run.checkpoint_due(step) or step >= config.steps:
                run.save(step, {"q": q, "visit_counts": visit_counts}, checkpoint_state(rng, env))
    return q
