"""MuZero's acting and its replay: episodes played many at once, stored as trajectories.

EnvRules           what the search needs of a gymnasium env's real state (every action legal,
                   never terminal inside the search: the env tells the real end)
ActingEpisode      one episode in progress: a board game against itself, or a gymnasium env;
                   searched with the learned model (`MCTS` with a `MuZeroModel`)
play_episodes      step A of `muzero`'s loop for several episodes at once: every wave evaluates
                   the leaves of all their trees in one network call per kind (`search_wave`)
Trajectory         one finished episode: o_t, a_t, u_{t+1}, pi_t, nu_t (root values)
unrolled_targets   the K + 1 targets of a position (the value, reward and policy targets, and
                   the actions to unroll), from its trajectory
sibling_targets    board games: what the rules say of every other legal move at a position
TrajectoryReplay   the last `capacity` positions of whole episodes, as a ring of arrays
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bellman.errors import CheckpointError
from bellman.search.mcts import MCTS, play_together, select_action, visit_policy
from bellman.torch_state import check_arrays


class EnvRules:
    """The real rules of a gymnasium env as search sees them: every action is legal and the
    search never meets a terminal state (the env itself ends the episode)."""

    def __init__(self, name: str, action_size: int):
        self.name = name
        self.action_size = action_size

    def is_terminal(self, state: Any) -> bool:
        return False

    def legal_actions(self, state: Any) -> list[int]:
        return list(range(self.action_size))


@dataclass
class Trajectory:
    """One finished episode of T steps.

    Attributes:
        observations: `[T, ...]` o_t, what h sees at each position (a board from its mover's
            point of view).
        actions: int64 `[T]` a_t.
        rewards: float32 `[T]` u_{t+1}, the reward of a_t for the player who took it (board
            games: the result on the last move, 0 before).
        policies: float32 `[T, A]` pi_t, the root's visit distribution (tau = 1).
        root_values: float32 `[T]` nu_t, the search's root value.
        terminated: the episode ended by the rules (False: cut by a time limit, so the last
            value target bootstraps).
        score: the episode's return (one player) or the result for player 0 (board games).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    policies: np.ndarray
    root_values: np.ndarray
    terminated: bool
    score: float

    @property
    def moves(self) -> int:
        return len(self.actions)


class ActingEpisode:
    """One episode in progress, searched in steps so that many share the network calls.

    Args:
        world: a board `Game`, or a gymnasium env (seeded here).
        mcts: the episode's search (with the learned model).
        settings: gives temperature_moves and final_temperature.
        seed: the episode's `SeedSequence` (action draws and the env's reset).
        temperature_scale: what tau is multiplied by (MuZero's `temperature_decay`).
    """

    def __init__(self, world, mcts: MCTS, settings, seed: np.random.SeedSequence,
                 temperature_scale: float = 1.0):  # fmt: skip
        move_seed, env_seed = seed.spawn(2)
        self.world, self.mcts, self.settings = world, mcts, settings
        self.temperature_scale = temperature_scale
        self.board = hasattr(world, "initial_state")
        self.rng = np.random.default_rng(move_seed)
        if self.board:
            self.state = world.initial_state()
        else:
            self.state, _ = world.reset(seed=int(env_seed.generate_state(1)[0]))
        self.over = False
        self.terminated = True
        self.score = 0.0
        self.observations: list[np.ndarray] = []
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.policies: list[np.ndarray] = []
        self.root_values: list[float] = []

    def observation(self) -> np.ndarray:
        return self.world.observation(self.state) if self.board else np.asarray(self.state)

    def begin_move(self) -> None:
        self.mcts.begin(self.state, add_noise=True)

    def play_move(self) -> None:
        """The search is done: record (o_t, pi_t, nu_t), play a_t ~ pi_t^(1/tau), observe u
        (with a Gumbel root: play its chosen action and record its improved policy)."""
        result = self.mcts.end()
        settings = self.settings
        late = len(self.actions) >= settings.temperature_moves
        tau = (settings.final_temperature if late else 1.0) * self.temperature_scale
        policy = search_policy(result)
        if result.improved_policy is not None:  # Gumbel root: its action, pi' as the target
            action = result.selected
        else:
            action = select_action(result.visit_counts, tau, self.rng)
        self.observations.append(self.observation())
        self.policies.append(policy.astype(np.float32))
        self.root_values.append(result.value)
        self.actions.append(action)
        if self.board:
            game = self.world
            mover = game.to_play(self.state)
            self.state = game.apply(self.state, action)
            reward = 0.0
            if game.is_terminal(self.state):  # the result for the player who just moved
                reward = -float(game.outcome(self.state))
                self.over = True
                self.score = reward if mover == 0 else -reward
        else:
            self.state, reward, terminated, truncated, _ = self.world.step(action)
            reward = float(reward)
            self.score += reward
            cut = len(self.actions) >= self.settings.max_episode_steps > 0
            self.over = bool(terminated or truncated or cut)
            self.terminated = bool(terminated)
        self.rewards.append(reward)

    def trajectory(self) -> Trajectory:
        return Trajectory(
            np.stack(self.observations), np.array(self.actions, np.int64),
            np.array(self.rewards, np.float32), np.stack(self.policies),
            np.array(self.root_values, np.float32), self.terminated, self.score,
        )  # fmt: skip


def search_policy(result) -> np.ndarray:
    """pi_t, the policy target of a finished search: its visit distribution (tau = 1), or a
    Gumbel root's improved policy."""
    if result.improved_policy is not None:
        return result.improved_policy
    return visit_policy(result.visit_counts, 1.0)


def play_episodes(episodes: list[ActingEpisode], model) -> list[Trajectory]:
    """Step A for several episodes at once: each has its own tree, and every wave evaluates
    the leaves of all the episodes still searching together (`search_wave`: one
    `initial_inference` call for the new roots, one `recurrent_inference` call for the rest).
    An episode whose search is done plays its move and begins its next search in the same
    wave."""
    play_together(episodes, model)
    return [episode.trajectory() for episode in episodes]


def symmetric_trajectories(game, trajectory: Trajectory) -> list[Trajectory]:
    """Every symmetric copy of a board game's trajectory, the identity first (8 for tic-tac-toe
    and Go, 2 for Connect Four): observations, policies and actions mapped alike by
    `game.symmetries` (an action through its one-hot policy), rewards and values unchanged."""
    size = trajectory.policies.shape[1]
    per_position = []
    for obs, policy, action in zip(trajectory.observations, trajectory.policies,
                                   trajectory.actions, strict=True):  # fmt: skip
        one_hot = np.zeros(size, np.float32)
        one_hot[action] = 1.0
        moved = game.symmetries(obs, one_hot)
        per_position.append([(o, p, int(np.argmax(a))) for (o, p), (_, a) in
                             zip(game.symmetries(obs, policy), moved, strict=True)])  # fmt: skip
    copies = []
    for s in range(len(per_position[0])):
        column = [position[s] for position in per_position]
        copies.append(Trajectory(
            np.stack([o for o, _, _ in column]), np.array([a for _, _, a in column], np.int64),
            trajectory.rewards, np.stack([p for _, p, _ in column]).astype(np.float32),
            trajectory.root_values, trajectory.terminated, trajectory.score,
        ))  # fmt: skip
    return copies


# ---- training targets ---------------------------------------------------------------------
def value_target(
    rewards: np.ndarray,
    root_values: np.ndarray,
    index: int,
    *,
    td_steps: int | None,
    discount: float,
    two_player: bool,
    terminated: bool,
) -> float:
    """z_t, the n-step bootstrapped value target of position `index` of a trajectory:

        z_t = u_{t+1} + g u_{t+2} + ... + g^{n-1} u_{t+n} + g^n nu_{t+n},   g = gamma * sign

    with sign = -1 in two-player games (the next position's rewards and value are the
    opponent's). Past the end of a terminated episode the sum stops (no bootstrap); past the
    end of a truncated one it bootstraps from the last root value instead. `td_steps=None`
    never bootstraps (board games: with gamma = 1 the target is the game's result for the
    player to move). Beyond the end (index >= T) the target is 0 (an absorbing state).
    """
    length = len(rewards)
    if index >= length:
        return 0.0
    g = discount * (-1.0 if two_player else 1.0)
    end = length if td_steps is None else index + td_steps
    if end < length:
        steps, bootstrap = end - index, float(root_values[end])
    elif terminated or td_steps is None:
        steps, bootstrap = length - index, 0.0
    else:  # truncated: the last position's root value stands for what follows
        steps, bootstrap = length - 1 - index, float(root_values[length - 1])
    target = 0.0
    for k in range(steps):
        target += g**k * float(rewards[index + k])
    return target + g**steps * bootstrap


def unrolled_targets(
    trajectory: Trajectory,
    start: int,
    *,
    unroll_steps: int,
    td_steps: int | None,
    discount: float,
    two_player: bool,
    rng: np.random.Generator,
):
    """The targets of one sampled position t = `start`, for k = 0..K (MuZero's `make_target`):

    actions  a_{t..t+K-1}  `[K]`: the actions played (uniformly random beyond the end)
    values   z_{t+k}       `[K + 1]`: `value_target` (0 beyond the end)
    rewards  u_{t+k}       `[K + 1]`: the reward of the action into step k (0 for k = 0
                           and beyond the end)
    policies pi_{t+k}      `[K + 1, A]`: the search's visit distributions (0 beyond the end)
    masks                  `[K + 1]`: 1 where the policy target exists (t + k < T)
    """
    length = trajectory.moves
    size = trajectory.policies.shape[1]
    actions = np.zeros(unroll_steps, np.int64)
    values = np.zeros(unroll_steps + 1, np.float32)
    rewards = np.zeros(unroll_steps + 1, np.float32)
    policies = np.zeros((unroll_steps + 1, size), np.float32)
    masks = np.zeros(unroll_steps + 1, np.float32)
    for k in range(unroll_steps + 1):
        index = start + k
        values[k] = value_target(
            trajectory.rewards, trajectory.root_values, index, td_steps=td_steps,
            discount=discount, two_player=two_player, terminated=trajectory.terminated,
        )  # fmt: skip
        if k > 0 and index - 1 < length:
            rewards[k] = trajectory.rewards[index - 1]
        if index < length:
            policies[k], masks[k] = trajectory.policies[index], 1.0
        if k < unroll_steps:
            actions[k] = trajectory.actions[index] if index < length else rng.integers(size)
    return actions, values, rewards, policies, masks


def sibling_targets(game, state, played: int) -> tuple[np.ndarray, ...]:
    """What the real rules say of the moves not played at a board position (`sibling_weight`,
    `muzero.py`'s module docstring), for every action a of the game:

    masks         `[A]`: 1 where a is legal at `state` and is not `played`
    rewards       u(a) `[A]`: the reward of a for its mover (the result when a ends the game:
                  +1 a win, 0 a draw; 0 when the game goes on)
    ended         `[A]`: 1 where a ends the game
    observations  `[A, C, H, W]`: the observation of the position a leads to (zeros where a is
                  not a sibling or ends the game)
    """
    size = game.action_size
    masks, rewards, ended = (np.zeros(size, np.float32) for _ in range(3))
    observations = np.zeros((size, *game.observation_shape), np.float32)
    for action in game.legal_actions(state):
        if action == played:
            continue
        following = game.apply(state, action)
        masks[action] = 1.0
        if game.is_terminal(following):
            rewards[action], ended[action] = -float(game.outcome(following)), 1.0
        else:
            observations[action] = game.observation(following)
    return masks, rewards, ended, observations


# ---- the replay ---------------------------------------------------------------------------
class TrajectoryReplay:
    """The last `capacity` positions of whole episodes, as a ring of arrays (step B samples
    positions uniformly and rebuilds each one's trajectory from it to the episode's end).

    A position stores its episode's number, its index in the episode and the episode's length;
    the ring overwrites the oldest positions first, so the rest of an episode after a stored
    position is always stored too.

    Args:
        capacity: positions kept (>= the longest episode).
        observation_shape, observation_dtype: o_t's.
        action_size: A.
    """

    def __init__(self, capacity: int, observation_shape, observation_dtype, action_size: int):
        self.capacity = capacity
        self.observations = np.zeros((capacity, *observation_shape), observation_dtype)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.policies = np.zeros((capacity, action_size), np.float32)
        self.root_values = np.zeros(capacity, np.float32)
        self.episodes = np.full(capacity, -1, np.int64)
        self.indices = np.zeros(capacity, np.int64)
        self.lengths = np.zeros(capacity, np.int64)
        self.terminated = np.zeros(capacity, np.uint8)
        self.priorities = np.ones(capacity, np.float32)
        self.size = 0
        self.position = 0

    def __len__(self) -> int:
        return self.size

    def add(self, trajectory: Trajectory, number: int, priorities=None) -> None:
        """Append an episode (numbered `number`, its positions' replay `priorities`, default 1),
        overwriting the oldest positions."""
        length = trajectory.moves
        if priorities is None:
            priorities = np.ones(length, np.float32)
        if length > self.capacity:
            trajectory = _tail(trajectory, self.capacity)
            priorities = priorities[-self.capacity :]
            length = self.capacity
        where = (self.position + np.arange(length)) % self.capacity
        self.observations[where] = trajectory.observations
        self.actions[where] = trajectory.actions
        self.rewards[where] = trajectory.rewards
        self.policies[where] = trajectory.policies
        self.root_values[where] = trajectory.root_values
        self.episodes[where] = number
        self.indices[where] = np.arange(length)
        self.lengths[where] = length
        self.terminated[where] = trajectory.terminated
        self.priorities[where] = priorities
        self.position = int((self.position + length) % self.capacity)
        self.size = min(self.capacity, self.size + length)

    def trajectory_from(self, slot: int, horizon: int | None = None) -> Trajectory:
        """The stored episode of ring slot `slot`, from that position to the episode's end, or
        only its first `horizon` positions when the end is further (then marked truncated:
        targets that need no more than `horizon` positions are the same). Its observations are
        left out (empty): the targets do not use them."""
        rest = int(self.lengths[slot] - self.indices[slot])
        terminated = bool(self.terminated[slot])
        if horizon is not None and rest > horizon:
            rest, terminated = horizon, False
        where = (slot + np.arange(rest)) % self.capacity
        return Trajectory(
            self.observations[:0], self.actions[where], self.rewards[where],
            self.policies[where], self.root_values[where], terminated, 0.0,
        )  # fmt: skip

    def following(self, slots: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """The observations o_{t+1..t+steps} after the positions of ring `slots`, `[B, steps,
        ...]`, zeros beyond the end of each one's episode, and float32 masks `[B, steps]`: 1
        where the position exists."""
        offsets = np.arange(1, steps + 1)
        where = (slots[:, None] + offsets) % self.capacity
        exists = self.indices[slots][:, None] + offsets < self.lengths[slots][:, None]
        observations = self.observations[where]
        observations[~exists] = 0
        return observations, exists.astype(np.float32)

    def episode_start(self, slot: int) -> int | None:
        """The ring slot of the first position of ring `slot`'s episode, or None when it has
        been overwritten (the ring drops the oldest positions first, so every position from
        there to `slot` is then stored too)."""
        start = int((slot - self.indices[slot]) % self.capacity)
        if self.episodes[start] != self.episodes[slot] or self.indices[start] != 0:
            return None
        return start

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"replay/{name}": getattr(self, name) for name in REPLAY_FIELDS}

    @staticmethod
    def layout(capacity, observation_shape, observation_dtype, action_size):
        """name -> (shape, dtype) of a replay's arrays: what a checkpoint must hold for it."""
        shapes = {
            "observations": ((capacity, *observation_shape), np.dtype(observation_dtype)),
            "policies": ((capacity, action_size), np.dtype(np.float32)),
        }
        for name, dtype in SCALAR_FIELDS.items():
            shapes[name] = ((capacity,), np.dtype(dtype))
        return {f"replay/{name}": shapes[name] for name in REPLAY_FIELDS}

    def load(self, arrays: dict[str, np.ndarray], size: int, position: int) -> None:
        """Fill the ring from a checkpoint's `replay/*` arrays after checking their keys,
        shapes and dtypes, the JSON's size and position, and that every stored position's
        episode bookkeeping is consistent (a CheckpointError otherwise)."""
        found = {key: value for key, value in arrays.items() if key.startswith("replay/")}
        layout = self.layout(self.capacity, self.observations.shape[1:],
                             self.observations.dtype, self.policies.shape[1])  # fmt: skip
        check_arrays(found, layout, "checkpoint")
        counts_ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                        for v in (size, position))  # fmt: skip
        if not (counts_ok and size <= self.capacity and position < self.capacity
                and (size == self.capacity or position == size)):  # fmt: skip
            raise CheckpointError(
                f"checkpoint's replay has size {size!r} and position {position!r}, which do not "
                f"fit a replay of {self.capacity} positions"
            )
        stored = slice(0, size)
        indices, lengths = found["replay/indices"][stored], found["replay/lengths"][stored]
        actions = found["replay/actions"][stored]
        if ((indices < 0) | (indices >= lengths) | (lengths > self.capacity)).any() or (
            (actions < 0) | (actions >= self.policies.shape[1])
        ).any():
            raise CheckpointError("checkpoint's replay holds positions outside their episodes")
        priorities = found["replay/priorities"][stored]
        if not (np.isfinite(priorities).all() and (priorities > 0).all()):
            raise CheckpointError("checkpoint's replay holds priorities that are not finite > 0")
        for name in REPLAY_FIELDS:
            getattr(self, name)[...] = found[f"replay/{name}"]
        self.size, self.position = int(size), int(position)


#: The replay's per-position scalars and their dtypes.
SCALAR_FIELDS = {
    "actions": np.int64, "rewards": np.float32, "root_values": np.float32,
    "episodes": np.int64, "indices": np.int64, "lengths": np.int64, "terminated": np.uint8,
    "priorities": np.float32,
}  # fmt: skip
#: Every array of the replay, in checkpoint order.
REPLAY_FIELDS = ("observations", "policies", *SCALAR_FIELDS)


def _tail(trajectory: Trajectory, size: int) -> Trajectory:
    """The last `size` positions of a trajectory."""
    cut = slice(trajectory.moves - size, None)
    return Trajectory(
        trajectory.observations[cut], trajectory.actions[cut], trajectory.rewards[cut],
        trajectory.policies[cut], trajectory.root_values[cut], trajectory.terminated,
        trajectory.score,
    )  # fmt: skip
