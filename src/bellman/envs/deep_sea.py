"""Deep Sea: a hard-exploration grid where undirected (dithering) exploration needs 2^(N-1)
episodes to see the reward once.

After Osband, Van Roy, Russo and Wen, "Deep Exploration via Randomized Value Functions" (JMLR
2019), and bsuite's deep_sea (Osband et al. 2020). An N x N grid; the agent starts in the top-left
cell and every step moves it one row down and one column left or right (a wall at the left edge
keeps it in column 0), so an episode lasts N - 1 steps and ends in the bottom row:

    reward +1         on the last step, if the agent ends in the bottom-right cell, which it
                      reaches only by choosing "right" on all N - 1 steps
    reward -0.01 / N  for every move to the right (so a learner that never found the treasure
                      learns to go left)

Which of the two actions means "right" is drawn once per cell from `mapping_seed` (fixed for the
env: the same in every episode, whatever the reset seed), so no single action is always right and
a policy cannot generalise its way to the treasure. A uniformly random policy finds it with
probability 2^-(N-1) per episode (N = 20: once in 524,288 episodes). The observation is the
one-hot encoding of the agent's cell, a float32 vector of N^2.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class DeepSeaEnv(gym.Env):
    """Deep Sea of size N (see the module docstring).

    Args:
        size: N >= 2, the grid's side (and 1 + the episode length).
        mapping_seed: seed of the per-cell choice of which action moves right.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, size: int = 20, mapping_seed: int = 0, render_mode: str | None = None):
        if int(size) < 2:
            raise ValueError(f"DeepSea needs size >= 2, got {size}")
        self.size = int(size)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.size * self.size,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.right_action = np.random.default_rng(mapping_seed).integers(
            0, 2, size=(self.size, self.size)
        )  # the action that moves right in each cell
        self.row = self.column = 0

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.size * self.size, dtype=np.float32)
        obs[self.row * self.size + self.column] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.row = self.column = 0
        return self._observation(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"DeepSea takes actions 0 and 1, got {action!r}")
        reward = 0.0
        if int(action) == self.right_action[self.row, self.column]:
            reward -= 0.01 / self.size
            self.column = min(self.column + 1, self.size - 1)
        else:
            self.column = max(self.column - 1, 0)
        self.row += 1
        terminated = self.row == self.size - 1
        if terminated and self.column == self.size - 1:
            reward += 1.0
        return self._observation(), reward, terminated, False, {}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        rows = [
            "".join("A" if (r, c) == (self.row, self.column) else "." for c in range(self.size))
            for r in range(self.size)
        ]
        return "\n".join(rows) + "\n"


#: The id `bellman.envs` registers Deep Sea under (N = 20; gymnasium.make(ID, size=N) for others).
DEEP_SEA_ID = "bellman/DeepSea-v0"
