"""Evaluation: run a policy for N seeded episodes and summarise the returns.

Episode i starts from `env.reset(seed=seed + i)`, so two policies evaluated with the same seed
face exactly the same start states (and, in stochastic envs, the same random streams as far as
their actions agree). Returns are the environment's own rewards, summed without discounting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np


def run_episode(policy: Callable[[Any], int], env: gym.Env, seed: int) -> tuple[float, int]:
    """Play one episode from `env.reset(seed=seed)`; returns (return, length)."""
    obs, _ = env.reset(seed=seed)
    total, length = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
        length += 1
        if terminated or truncated:
            return total, length


def evaluate(policy: Callable[[Any], int], env: gym.Env, *, episodes: int, seed: int = 0):
    """Mean, std, min and max of the return over `episodes` seeded episodes.

    Returns:
        {"mean", "std", "min", "max", "episodes", "seed", "length_mean", "returns"}.
    """
    results = [run_episode(policy, env, seed + i) for i in range(episodes)]
    returns = np.array([r for r, _ in results], dtype=np.float64)
    lengths = np.array([n for _, n in results], dtype=np.float64)
    return {
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "episodes": int(episodes),
        "seed": int(seed),
        "length_mean": float(lengths.mean()),
        "returns": returns.tolist(),
    }
