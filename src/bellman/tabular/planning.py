"""Exact planning for finite MDPs: value iteration on the transition table `P`.

Any environment that exposes `P[s][a] = [(prob, next_state, reward, terminated), ...]` the way
gymnasium's toy-text environments do (Taxi, FrozenLake, CliffWalking, and bellman's lecture envs)
is turned into a `TabularModel`, and value iteration computes Q*:

    Value iteration (Sutton & Barto, 2nd ed., section 4.4)
        1. initialise V(s) = 0 for all s
        2. repeat
        3.     for every s, a:  Q(s, a) = sum_{s', r} p(s', r | s, a) [r + gamma (1 - done) V(s')]
        4.     V(s) = max_a Q(s, a);   delta = max_s |V_new(s) - V_old(s)|
        5. until delta < theta
        6. the greedy policy pi(s) = argmax_a Q(s, a) is optimal

Terminal transitions (`terminated=True`) do not bootstrap, so a terminal target is just r; the
lecture envs make terminal states absorbing with zero reward, so their rows of Q* are zero.
Time limits (truncation) are not part of `P`: planning solves the infinite-horizon problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from bellman.envs import ACTION_NAMES
from bellman.errors import ConfigError


@dataclass(frozen=True)
class TabularModel:
    """A finite MDP as flat arrays, one entry per (s, a, outcome) triple.

    Attributes:
        n_states, n_actions: sizes of the state and action sets.
        index: [K] flat index s * n_actions + a of each outcome.
        prob, next_state, reward, done: [K] the outcome's probability, s', r and termination.
        state_names, action_names: labels for tables.
    """

    n_states: int
    n_actions: int
    index: np.ndarray
    prob: np.ndarray
    next_state: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    state_names: list[str]
    action_names: list[str]

    @property
    def terminal(self) -> np.ndarray:
        """[S] True for absorbing terminal states: every outcome stays put, pays 0 and ends."""
        stays = (self.next_state == self.index // self.n_actions) & (self.reward == 0.0)
        ends = stays & (self.done == 1.0)
        counts = np.bincount(self.index // self.n_actions, minlength=self.n_states)
        return (
            np.bincount(self.index // self.n_actions, weights=ends, minlength=self.n_states)
            == counts
        )

    def backup(self, q: np.ndarray, gamma: float) -> np.ndarray:
        """One Bellman optimality backup: [S, A] -> E[r + gamma (1 - done) max_a' Q(s', a')]."""
        v = q.max(axis=1)
        target = self.prob * (self.reward + gamma * (1.0 - self.done) * v[self.next_state])
        flat = np.bincount(self.index, weights=target, minlength=self.n_states * self.n_actions)
        return flat.reshape(self.n_states, self.n_actions)

    def bellman_residual(self, q: np.ndarray, gamma: float) -> float:
        """max_{s,a} |Q(s,a) - (R + gamma max_a' Q(s',a'))|: zero exactly at Q*."""
        return float(np.max(np.abs(q - self.backup(q, gamma))))


def tabular_model(env: gym.Env) -> TabularModel:
    """Read `env.unwrapped.P` into a `TabularModel`, or say why the env has none."""
    base = env.unwrapped
    spec_id = env.spec.id if env.spec is not None else type(base).__name__
    transitions = getattr(base, "P", None)
    if transitions is None or not isinstance(env.observation_space, gym.spaces.Discrete):
        raise ConfigError(
            f"environment '{spec_id}' has no transition table P; exact planning needs a finite "
            "MDP such as bellman/Recycling-v0, Taxi-v4, FrozenLake-v1 or CliffWalking-v1"
        )
    n_states = int(env.observation_space.n)
    n_actions = int(env.action_space.n)
    rows = [
        (s * n_actions + a, p, s_next, r, float(done))
        for s in range(n_states)
        for a in range(n_actions)
        for p, s_next, r, done in transitions[s][a]
    ]
    index, prob, next_state, reward, done = (np.array(column) for column in zip(*rows, strict=True))
    family = env.spec.name if env.spec is not None else ""
    state_names = getattr(base, "state_names", None) or [str(s) for s in range(n_states)]
    action_names = (
        getattr(base, "action_names", None)
        or ACTION_NAMES.get(family)
        or [str(a) for a in range(n_actions)]
    )
    return TabularModel(
        n_states,
        n_actions,
        index.astype(np.int64),
        prob.astype(np.float64),
        next_state.astype(np.int64),
        reward.astype(np.float64),
        done,
        list(state_names),
        list(action_names),
    )


def value_iteration(
    model: TabularModel, gamma: float, *, theta: float = 1e-12, max_iterations: int = 100_000
) -> np.ndarray:
    """Q* of `model` by value iteration (steps 1-5 of the module docstring).

    Args:
        model: the finite MDP.
        gamma: discount factor in [0, 1]; gamma = 1 needs every policy to end (or lose value).
        theta: stop when no state value changes by more than this.
        max_iterations: give up (with an error) after this many sweeps.

    Returns:
        Q*: [S, A].
    """
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
    q = np.zeros((model.n_states, model.n_actions))  # 1. V = 0
    for _ in range(max_iterations):  # 2. repeat
        q_new = model.backup(q, gamma)  # 3. Q = E[r + gamma (1 - done) V(s')]
        delta = np.max(np.abs(q_new.max(axis=1) - q.max(axis=1)))  # 4. V = max_a Q
        q = q_new
        if delta < theta:  # 5. until delta < theta
            return q
    raise ConfigError(
        f"value iteration did not converge in {max_iterations} sweeps at gamma={gamma} "
        f"(last change {delta:.3g}); with gamma = 1 an MDP whose episodes can last forever "
        "has no finite values: try gamma < 1"
    )


def greedy_policy(q: np.ndarray) -> np.ndarray:
    """pi(s) = argmax_a Q(s, a), ties to the first action: [S, A] -> [S]."""
    return np.argmax(q, axis=1)
