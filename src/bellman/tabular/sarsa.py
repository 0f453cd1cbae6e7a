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


def sarsa_target(reward: float, q_next_action: float, gamma: float, terminated: bool) -> float:
    """R if S' is terminal, else R + gamma Q(S', A')."""
    return reward if terminated else reward + gamma * q_next_action


def train(config: TabularConfig, env: gym.Env, run: Run) -> np.ndarray:
    """Run SARSA for `config.steps` env steps; returns the learned Q-table [S, A]."""
    state = initial_state(config, env, run.restored)
    q, visit_counts, rng, step = state["q"], state["visit_counts"], state["rng"], state["step"]
    epsilon, alpha = config.epsilon_at(), config.alpha_at()
    model = optional_model(env)

    with run.session(start_step=step):
        while step < config.steps and not run.stop_requested:  # 1. for each episode
            s, _ = env.reset(seed=config.seed if step == 0 else None)  # 2. initialize S
            a = epsilon_greedy(q[s], epsilon(step), rng)  # 3. choose A from S
            episode_return, length = 0.0, 0
            while True:  # 4. for each step of the episode
                s_next, r, terminated, truncated, _ = env.step(a)  # 5. take A, observe R, S'
                step += 1
                visit_counts[s, a] += 1
                a_next = 0 if terminated else epsilon_greedy(q[s_next], epsilon(step), rng)  # 6.
                target = sarsa_target(r, q[s_next, a_next], config.gamma, terminated)
                q[s, a] += alpha(step) * (target - q[s, a])  # 7. the SARSA update
                s, a = s_next, a_next  # 8. S <- S'; A <- A'
                episode_return += r
                length += 1
                if step % config.log_every == 0 or step == config.steps:
                    log_metrics(run, step, q, visit_counts, model, config)
                if terminated or truncated or step >= config.steps:  # 9. until terminal
                    break
            if terminated or truncated:
                run.log_episode(step, episode_return, length)
            if run.checkpoint_due(step) or step >= config.steps:
                run.save(step, {"q": q, "visit_counts": visit_counts}, checkpoint_state(rng, env))
    return q
