"""What Q-learning and SARSA share: their config, epsilon-greedy, and the Q-table's checkpoint.

Both algorithms keep a table Q[S, A] (float64), act epsilon-greedily with respect to it, and
anneal epsilon and the learning rate alpha with `bellman.schedules`. Ties in the greedy choice go
to the first action (`np.argmax`), as in the lectures' code: that is what makes a learner without
exploration settle on the first action that paid anything (see bellman/ExplorationTrap-v0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from bellman import seeding
from bellman.checkpoint import expect_array
from bellman.config import TrainConfig, choices, interval
from bellman.envs import make_env
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


def check_env(env: gym.Env, config=None) -> tuple[int, int]:
    """(n_states, n_actions) of an env a Q-table can hold, or a ConfigError saying why not."""
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    for space, what in ((env.observation_space, "observation"), (env.action_space, "action")):
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(
                f"tabular methods need a Discrete {what} space, but '{name}' has "
                f"{type(space).__name__}{getattr(space, 'shape', '')}; "
                "try Taxi-v4, FrozenLake-v1, CliffWalking-v1 or a bellman/ env"
            )
    return int(env.observation_space.n), int(env.action_space.n)


def make_train_env(config: TabularConfig) -> gym.Env:
    """The environment a tabular learner trains on."""
    return make_env(config.env)


def make_eval_env(config: TabularConfig, render_mode: str | None = None) -> gym.Env:
    """The environment evaluation plays (the same as training's)."""
    return make_env(config.env, render_mode=render_mode)


def check_checkpoint(arrays: dict[str, np.ndarray], env: gym.Env, config=None) -> None:
    """Check a checkpoint's tables fit this env before anything is resumed from it."""
    n_states, n_actions = check_env(env)
    for key in ("q", "visit_counts"):
        expect_array(arrays, key, (n_states, n_actions), "checkpoint")


def epsilon_greedy(q_row: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """With probability epsilon a uniformly random action, else argmax_a Q(s, a).

    Exactly one uniform draw decides between exploring and exploiting, and a second draw picks
    the random action, so the number of draws per step does not depend on Q.
    """
    if rng.random() < epsilon:
        return int(rng.integers(len(q_row)))
    return int(q_row.argmax())


class Tables:
    """The learner's state between steps: Q[S, A], visit_counts N[S, A], the agent's generator,
    the env-step counter, and the current episode's return and length.

    `end_of_step` and `end_of_episode` do the bookkeeping Q-learning and SARSA share (counting,
    metrics rows, episode log, checkpoints), so their loops keep only the lines of their pseudocode.
    """

    def __init__(self, config: TabularConfig, env: gym.Env, run):
        n_states, n_actions = check_env(env)
        self.config, self.env, self.run = config, env, run
        self.model = optional_model(env)
        self.rng = seeding.seed_everything(config.seed)
        self.episode_return, self.length = 0.0, 0
        if run.restored is None:
            self.q = np.full((n_states, n_actions), config.q_init, dtype=np.float64)
            self.visit_counts = np.zeros((n_states, n_actions), dtype=np.int64)
            self.step = 0
            return
        arrays, meta = run.restored
        check_checkpoint(arrays, env)
        self.q, self.visit_counts = arrays["q"].copy(), arrays["visit_counts"].copy()
        self.step = int(meta["step"])
        env.reset(seed=config.seed)  # wrappers need a first reset; the generators are then restored
        seeding.restore_rngs(arrays, meta["state"], uses_torch=False, **self.generators())

    @property
    def running(self) -> bool:
        """True while the run has steps left and no stop was requested."""
        return self.step < self.config.steps and not self.run.stop_requested

    def reset(self):
        """Start an episode: the first of a fresh run is seeded, later ones continue the stream."""
        self.episode_return, self.length = 0.0, 0
        s, _ = self.env.reset(seed=self.config.seed if self.step == 0 else None)
        return s

    def end_of_step(self, s: int, a: int, reward: float) -> bool:
        """Count the transition (S, A, R); write a metrics row when due. True when the run's
        step budget is spent."""
        self.step += 1
        self.visit_counts[s, a] += 1
        self.episode_return += reward
        self.length += 1
        if self.step % self.config.log_every == 0 or self.step == self.config.steps:
            log_metrics(self.run, self.step, self.q, self.visit_counts, self.model, self.config)
        return self.step >= self.config.steps

    def end_of_episode(self, finished: bool) -> None:
        """Log a finished episode; checkpoint when one is due (between episodes, so that a
        resumed run starts the next episode exactly as the uninterrupted run would)."""
        if finished:
            self.run.log_episode(self.step, self.episode_return, self.length)
        if self.run.checkpoint_due(self.step) or self.step >= self.config.steps:
            _, state = seeding.capture_rngs(uses_torch=False, **self.generators())
            self.run.save(self.step, {"q": self.q, "visit_counts": self.visit_counts}, state)

    def generators(self) -> dict[str, np.random.Generator]:
        """The numpy generators the run draws from, by checkpoint name: the agent's
        (epsilon-greedy) and the environment's own (`np_random`: start states, slips)."""
        return {"agent_rng": self.rng, "env_rng": self.env.unwrapped.np_random}


def load_policy(arrays: dict[str, np.ndarray], env: gym.Env, config=None, seed: int = 0):
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
    the Bellman residual |Q - (R + gamma max Q')| against it, its max and its mean over (s, a)."""
    scalars = {
        "epsilon": config.epsilon_at()(step),
        "alpha": config.alpha_at()(step),
        "visited_fraction": float((visit_counts > 0).mean()),
    }
    if model is not None:
        residual = np.abs(q - model.backup(q, config.gamma))
        scalars["bellman_residual"] = float(residual.max())
        scalars["bellman_residual_mean"] = float(residual.mean())
    run.log(step, **scalars)
