"""What Q-learning and SARSA share: their config, epsilon-greedy, and the Q-table's checkpoint.

Both algorithms keep a table Q[S, A] (float64), act epsilon-greedily with respect to it, and
anneal epsilon and the learning rate alpha with `bellman.schedules`. Ties in the greedy choice go
to the first action (`np.argmax`), as in the lectures' code: that is what makes a learner without
exploration settle on the first action that paid anything (see bellman/ExplorationTrap-v0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from bellman import seeding
from bellman.checkpoint import expect_array
from bellman.config import TrainConfig, choices, interval
from bellman.errors import ConfigError
from bellman.schedules import KINDS, make_schedule
from bellman.tabular.planning import TabularModel, tabular_model


@dataclass(frozen=True)
class TabularConfig(TrainConfig):
    """Hyperparameters of tabular TD control (Q-learning, SARSA)."""

    gamma: float = field(default=0.99, metadata=interval("[0, 1]"))
    """Discount factor gamma of the return."""
    alpha: float = field(default=0.5, metadata=interval("(0, 1]"))
    """Learning rate alpha of the TD update at the start of the run."""
    alpha_end: float = field(default=0.1, metadata=interval("(0, 1]"))
    """Learning rate at the end of its schedule (unused when alpha_schedule is constant)."""
    alpha_schedule: str = field(default="constant", metadata=choices(*KINDS))
    """How alpha anneals from alpha to alpha_end: constant, linear or exponential."""
    alpha_fraction: float = field(default=1.0, metadata=interval("(0, 1]"))
    """Fraction of the run over which alpha anneals."""
    epsilon: float = field(default=1.0, metadata=interval("[0, 1]"))
    """Exploration rate epsilon at the start of the run (probability of a random action)."""
    epsilon_end: float = field(default=0.05, metadata=interval("[0, 1]"))
    """Exploration rate at the end of its schedule."""
    epsilon_schedule: str = field(default="linear", metadata=choices(*KINDS))
    """How epsilon anneals from epsilon to epsilon_end: constant, linear or exponential."""
    epsilon_fraction: float = field(default=0.5, metadata=interval("(0, 1]"))
    """Fraction of the run over which epsilon anneals."""
    q_init: float = 0.0
    """Initial value of every Q(s, a); optimistic values (> 0 with rewards <= 0) explore."""

    def validate(self) -> None:
        for name in ("alpha", "epsilon"):
            start, end = getattr(self, name), getattr(self, f"{name}_end")
            if getattr(self, f"{name}_schedule") == "exponential" and min(start, end) <= 0:
                raise ConfigError(
                    f"{name}_schedule = exponential needs {name} > 0 and {name}_end > 0, "
                    f"got {name} = {start}, {name}_end = {end}; use linear to reach 0"
                )

    def epsilon_at(self):
        """The epsilon schedule of this run, a function of the env step."""
        return make_schedule(
            self.epsilon_schedule, self.epsilon, self.epsilon_end, self.epsilon_fraction, self.steps
        )

    def alpha_at(self):
        """The learning-rate schedule of this run, a function of the env step."""
        return make_schedule(
            self.alpha_schedule, self.alpha, self.alpha_end, self.alpha_fraction, self.steps
        )


def check_env(env: gym.Env) -> tuple[int, int]:
    """(n_states, n_actions) of an env a Q-table can hold, or a ConfigError saying why not."""
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    for space, what in ((env.observation_space, "observation"), (env.action_space, "action")):
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(
                f"tabular methods need a Discrete {what} space, but '{name}' has {space}; "
                "try Taxi-v4, FrozenLake-v1, CliffWalking-v1 or a bellman/ env"
            )
    return int(env.observation_space.n), int(env.action_space.n)


def epsilon_greedy(q_row: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """With probability epsilon a uniformly random action, else argmax_a Q(s, a).

    Exactly one uniform draw decides between exploring and exploiting, and a second draw picks
    the random action, so the number of draws per step does not depend on Q.
    """
    if rng.random() < epsilon:
        return int(rng.integers(len(q_row)))
    return int(q_row.argmax())


def initial_state(config: TabularConfig, env: gym.Env, restored) -> dict[str, Any]:
    """Q-table, agent generator and counters: fresh, or as a checkpoint left them."""
    n_states, n_actions = check_env(env)
    rng = seeding.seed_everything(config.seed)
    if restored is None:
        q = np.full((n_states, n_actions), config.q_init, dtype=np.float64)
        visit_counts = np.zeros((n_states, n_actions), dtype=np.int64)
        return {"q": q, "visit_counts": visit_counts, "rng": rng, "step": 0}
    arrays, meta = restored
    q = expect_array(arrays, "q", (n_states, n_actions), "checkpoint").copy()
    visit_counts = expect_array(arrays, "visit_counts", (n_states, n_actions), "checkpoint").copy()
    seeding.set_generator_state(rng, meta["state"]["agent_rng"])
    env.reset(seed=config.seed)  # wrappers need a first reset; the generator is then restored
    seeding.set_env_rng_state(env, meta["state"]["env_rng"])
    return {"q": q, "visit_counts": visit_counts, "rng": rng, "step": int(meta["step"])}


def checkpoint_state(rng: np.random.Generator, env: gym.Env) -> dict[str, Any]:
    """The JSON part of a tabular checkpoint, taken between two episodes."""
    return {
        "agent_rng": seeding.generator_state(rng),
        "env_rng": seeding.env_rng_state(env),
    }


def greedy_policy(arrays: dict[str, np.ndarray], env: gym.Env):
    """The greedy policy argmax_a Q(s, a) of a checkpoint's Q-table, as obs -> action."""
    n_states, n_actions = check_env(env)
    q = expect_array(arrays, "q", (n_states, n_actions), "checkpoint")
    actions = np.argmax(q, axis=1)
    return lambda obs: int(actions[int(obs)])


def optional_model(env: gym.Env) -> TabularModel | None:
    """The env's tabular model when it exposes a transition table P, else None."""
    try:
        return tabular_model(env)
    except ConfigError:
        return None


def log_metrics(run, step: int, q, visit_counts, model: TabularModel | None, config) -> None:
    """One metrics row: epsilon, alpha, the share of (s, a) pairs visited and, when P is known,
    the Bellman residual max |Q - (R + gamma max Q')| over all pairs and over the visited ones."""
    visited = visit_counts > 0
    scalars = {
        "epsilon": config.epsilon_at()(step),
        "alpha": config.alpha_at()(step),
        "visited_fraction": float(visited.mean()),
    }
    if model is not None:
        residual = np.abs(q - model.backup(q, config.gamma))
        scalars["bellman_residual"] = float(residual.max())
        scalars["bellman_residual_visited"] = float(residual[visited].max(initial=0.0))
    run.log(step, **scalars)
