"""The finite MDPs of the lectures, as gymnasium environments with their transition table.

Each environment is small enough to solve exactly, so the same object serves two purposes: an
agent can *learn* in it through `reset()`/`step()`, and a planner can *compute* its optimal
Q-table from `env.P` and check what the agent learned.

The table has the layout of gymnasium's toy-text environments (Taxi, FrozenLake, CliffWalking)::

    env.P[s][a] == [(prob, next_state, reward, terminated), ...]

Terminal states are absorbing: ``P[t][a] == [(1.0, t, 0.0, True)]`` for every action, so exact
planning gives their rows Q = 0. The reward for reaching a terminal state is on the transition
*into* it.

The environments:

- `RecyclingEnv` (``bellman/Recycling-v0``): a cleaning robot in five cells S1..S5 starts in S2.
  S1 is the garbage can (+2, episode over), S4 holds a chocolate wrapper (+1 every time the robot
  enters it), S5 is the recycling bin (+10, episode over). The garbage collector comes after three
  moves (a time limit registered with the id, i.e. truncation, not termination). At gamma = 0.9,
  Q*(S2) = (left 2, right 9), Q*(S3) = (8.1, 10), Q*(S4) = (9, 10): the example worked by hand in
  the lecture on the Bellman equation.
- `CorridorEnv` (``bellman/Corridor-v0``): the one-dimensional treasure hunt. The treasure (+1)
  is at the right end of a corridor; the reward is sparse, which is the point of the example.
- `MineFieldEnv` (``bellman/MineField-v0``): a robot on a grid with mines (-100), power-ups (+1,
  consumed when collected) and a goal (+100); every move costs 1. Because a power-up disappears
  once taken, the state is the position *and* the set of remaining power-ups.
- `ExplorationTrapEnv` (``bellman/ExplorationTrap-v0``): one decision between three doors worth 1,
  0 and 1000; greedy action selection settles on the first door it finds rewarding, while
  epsilon-greedy eventually finds the far one.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

Transition = tuple[float, int, float, bool]
"""One outcome of an action: (probability, next state, reward, terminated)."""

Table = dict[int, dict[int, list[Transition]]]
"""The transition table: ``P[s][a]`` is the list of outcomes of action ``a`` in state ``s``."""


def categorical_sample(probs: Sequence[float], np_random: np.random.Generator) -> int:
    """Draw an index with the given probabilities, exactly as gymnasium's toy-text envs do.

    Same rule as ``gymnasium.envs.toy_text.utils.categorical_sample``: the first index whose
    cumulative probability exceeds one uniform draw. Like gymnasium, it draws once even when there
    is a single outcome, so a seeded episode here consumes the generator exactly as Taxi or
    CliffWalking would.
    """
    cumulative = np.cumsum(np.asarray(probs, dtype=np.float64))
    return int(np.argmax(cumulative > np_random.random()))


class FiniteMDPEnv(gym.Env):
    """A finite MDP given by its transition table, stepping by sampling from that table.

    The lectures' environments are thin subclasses whose ``__init__`` only builds the table and
    the names; this class can also be used directly with any table.

    Attributes:
        P: the transition table, ``P[s][a] = [(prob, next_state, reward, terminated), ...]``.
        s: the current state (an int); ``None`` until the first `reset`.
        initial_state: the state every episode starts in.
        state_names: a readable name per state, ``state_names[s]``.
        action_names: a readable name per action, ``action_names[a]``.
        terminal_states: the absorbing states in which an episode ends.
        lastaction: the action of the last step, ``None`` right after `reset`.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        P: Table,
        *,
        initial_state: int,
        state_names: Sequence[str],
        action_names: Sequence[str],
        terminal_states: Sequence[int] = (),
        render_mode: str | None = None,
    ) -> None:
        """Check the table and set up the spaces.

        Args:
            P: the transition table; every state ``0..len(state_names)-1`` must have a list of
                outcomes for every action ``0..len(action_names)-1``, with probabilities that
                sum to 1 and next states in range.
            initial_state: the start state of every episode.
            state_names: one readable name per state.
            action_names: one readable name per action.
            terminal_states: absorbing states: every action leads back with probability 1,
                reward 0 and ``terminated=True``.
            render_mode: ``None`` or ``"ansi"`` (`render` then returns a text picture).

        Raises:
            ValueError: the table, the names, the initial state or the render mode are invalid.
        """
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} is not supported; valid: None, "
                + ", ".join(repr(m) for m in self.metadata["render_modes"])
            )
        n_states, n_actions = len(state_names), len(action_names)
        if not 0 <= initial_state < n_states:
            raise ValueError(f"initial_state {initial_state} is not a state 0..{n_states - 1}")
        _check_table(P, n_states, n_actions, frozenset(terminal_states))
        self.P = P
        self.initial_state = int(initial_state)
        self.state_names = list(state_names)
        self.action_names = list(action_names)
        self.terminal_states = frozenset(int(t) for t in terminal_states)
        self.observation_space = spaces.Discrete(n_states)
        self.action_space = spaces.Discrete(n_actions)
        self.render_mode = render_mode
        self.s: int | None = None
        self.lastaction: int | None = None

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[int, dict[str, float]]:
        """Start an episode in `initial_state`; ``seed`` reseeds ``self.np_random``."""
        super().reset(seed=seed)
        self.s = self.initial_state
        self.lastaction = None
        return self.s, {"prob": 1.0}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, float]]:
        """Take ``action``: sample an outcome from ``P[s][action]`` with ``self.np_random``.

        Returns:
            ``(next_state, reward, terminated, False, {"prob": p})`` where ``p`` is the
            probability of the outcome taken. Truncation is left to a ``TimeLimit`` wrapper.

        Raises:
            ValueError: ``action`` is not in the action space.
            gymnasium.error.ResetNeeded: `reset` was never called.
        """
        if not self.action_space.contains(action):
            raise ValueError(
                f"invalid action {action!r}: {type(self).__name__} has actions "
                f"0..{self.action_space.n - 1} ({', '.join(self.action_names)})"
            )
        if self.s is None:
            raise ResetNeeded(f"call reset() before step() on {type(self).__name__}")
        outcomes = self.P[self.s][int(action)]
        i = categorical_sample([o[0] for o in outcomes], self.np_random)
        prob, next_state, reward, terminated = outcomes[i]
        self.s = int(next_state)
        self.lastaction = int(action)
        return self.s, float(reward), bool(terminated), False, {"prob": float(prob)}

    def render(self) -> str | None:
        """Return the text picture of the current state (``render_mode="ansi"``)."""
        if self.render_mode is None:
            gym.logger.warn(
                f"render() called without a render_mode; create {type(self).__name__} with "
                'render_mode="ansi"'
            )
            return None
        if self.s is None:
            raise ResetNeeded(f"call reset() before render() on {type(self).__name__}")
        picture = self._picture()
        if self.lastaction is not None:
            picture += f"  ({self.action_names[self.lastaction]})"
        return picture + "\n"

    def _picture(self) -> str:
        """The states in a row with the current one in brackets: ``S1 [S2] S3 S4 S5``."""
        return " ".join(
            f"[{name}]" if s == self.s else name for s, name in enumerate(self.state_names)
        )


def _check_table(P: Table, n_states: int, n_actions: int, terminal: frozenset[int]) -> None:
    """Raise ValueError unless ``P`` is a complete, normalised table with absorbing terminals."""
    for s in range(n_states):
        if s not in P or any(a not in P[s] for a in range(n_actions)):
            raise ValueError(f"P[{s}] must have outcomes for every action 0..{n_actions - 1}")
        for a in range(n_actions):
            outcomes = P[s][a]
            total = sum(prob for prob, *_ in outcomes)
            if not outcomes or abs(total - 1.0) > 1e-9:
                raise ValueError(f"P[{s}][{a}] probabilities sum to {total}, not 1")
            for _, next_state, reward, done in outcomes:
                if not 0 <= next_state < n_states:
                    raise ValueError(f"P[{s}][{a}] leads to state {next_state}, not in range")
                if s in terminal and (next_state != s or reward != 0.0 or not done):
                    raise ValueError(
                        f"terminal state {s} must be absorbing: P[{s}][{a}] = [(1.0, {s}, 0.0, "
                        f"True)], got {outcomes}"
                    )


def _absorbing(state: int, n_actions: int) -> dict[int, list[Transition]]:
    """The rows of a terminal state: every action stays put with reward 0 and terminated."""
    return {a: [(1.0, state, 0.0, True)] for a in range(n_actions)}


class RecyclingEnv(FiniteMDPEnv):
    """The recycling robot: five cells S1..S5 in a row, starting in S2.

    ::

        S1 (garbage can)   S2 (start)   S3   S4 (wrapper)   S5 (recycling bin)
        +2, end                              +1 each time   +10, end

    Actions: 0 = left, 1 = right. S1 and S5 end the episode; S4's +1 is paid every time the robot
    enters it. The lecture's garbage collector, who comes after three moves, is a time limit
    (truncation) registered with the id, not part of the table. At gamma = 0.9 the optimal values
    are Q*(S2) = (2, 9), Q*(S3) = (8.1, 10), Q*(S4) = (9, 10).
    """

    def __init__(self, render_mode: str | None = None) -> None:
        """Build the table.

        Args:
            render_mode: ``None`` or ``"ansi"``.
        """
        names = ["S1", "S2", "S3", "S4", "S5"]
        enter_reward = [2.0, 0.0, 0.0, 1.0, 10.0]
        terminal = (0, 4)
        P: Table = {}
        for s in range(len(names)):
            if s in terminal:
                P[s] = _absorbing(s, 2)
                continue
            P[s] = {
                a: [(1.0, s2, enter_reward[s2], s2 in terminal)]
                for a, s2 in enumerate((s - 1, s + 1))
            }
        super().__init__(
            P,
            initial_state=1,
            state_names=names,
            action_names=["left", "right"],
            terminal_states=terminal,
            render_mode=render_mode,
        )


class CorridorEnv(FiniteMDPEnv):
    """The one-dimensional treasure hunt: a corridor of ``n_states`` cells, treasure at the end.

    The robot starts in cell 0 (the left end). Actions: 0 = left, 1 = right. Moving left in cell
    0 stays there. Entering the last cell pays 1 and ends the episode; every other move pays 0, so
    an agent learns nothing until it first stumbles on the treasure.
    """

    def __init__(self, n_states: int = 6, render_mode: str | None = None) -> None:
        """Build the table.

        Args:
            n_states: number of cells, at least 2 (the start and the treasure).
            render_mode: ``None`` or ``"ansi"``.

        Raises:
            ValueError: ``n_states`` is not an integer >= 2.
        """
        if isinstance(n_states, bool) or not isinstance(n_states, int | np.integer):
            raise ValueError(f"n_states must be an integer >= 2, got {n_states!r}")
        if n_states < 2:
            raise ValueError(f"n_states must be >= 2 (a start and a treasure), got {n_states}")
        n = int(n_states)
        goal = n - 1
        P: Table = {}
        for s in range(goal):
            P[s] = {
                a: [(1.0, s2, 1.0 if s2 == goal else 0.0, s2 == goal)]
                for a, s2 in enumerate((max(s - 1, 0), s + 1))
            }
        P[goal] = _absorbing(goal, 2)
        super().__init__(
            P,
            initial_state=0,
            state_names=[str(s) for s in range(n)],
            action_names=["left", "right"],
            terminal_states=(goal,),
            render_mode=render_mode,
        )


DEFAULT_MINEFIELD = (
    "R.M..",
    "..M.P",
    "..P..",
    ".M.M.",
    "P..MG",
)
"""The default mine field: R robot start, M mine, P power-up, G goal, '.' empty.

The shortest safe route (8 moves) passes the power-up in the middle; a random walk from R steps
on one of the five mines in most episodes.
"""

MINEFIELD_CELLS = "R.MPG"
"""The characters a mine-field layout may use."""

MAX_POWERUPS = 8
"""The state holds one bit per power-up, so n_states = rows * cols * 2**k; k is capped here."""


class MineFieldEnv(FiniteMDPEnv):
    """A robot crossing a mine field to a goal, collecting power-ups on the way.

    Actions: 0 = up, 1 = right, 2 = down, 3 = left; bumping into the edge leaves the robot in
    place. Rewards per move: -1 for a move into an empty cell (or a bump); 0 (= -1 + 1) for
    entering a power-up that is still there, after which it is gone; -100 for entering a mine and
    +100 for entering the goal, both of which end the episode.

    State encoding: with ``k`` power-ups, numbered in reading order (row by row, left to right),
    the state is ``(row * cols + col) * 2**k + mask`` where bit ``i`` of ``mask`` is set while
    power-up ``i`` is still on the board (`encode`/`decode`). Every combination is a state, even
    unreachable ones, so ``n_states = rows * cols * 2**k``; episodes start with all power-ups
    present. The mine and goal cells are absorbing terminal states whatever the mask. State
    names read ``r2c3+P10`` (row 2, column 3; power-up 0 still there, power-up 1 taken).
    """

    STEP_REWARD = -1.0
    POWERUP_REWARD = 1.0
    MINE_REWARD = -100.0
    GOAL_REWARD = 100.0
    MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))
    """(row, col) displacement of up, right, down, left."""

    def __init__(
        self, layout: Sequence[str] | str | None = None, render_mode: str | None = None
    ) -> None:
        """Build the table.

        Args:
            layout: the grid as a list of equal-length strings (or one string with rows separated
                by newlines or ``/``), using R (robot start, exactly one), G (goal, exactly one),
                M (mine), P (power-up, at most `MAX_POWERUPS`) and '.' (empty). Default:
                `DEFAULT_MINEFIELD`.
            render_mode: ``None`` or ``"ansi"``.

        Raises:
            ValueError: the layout is not rectangular, has an unknown character, or does not have
                exactly one R and one G.
        """
        self.layout = _parse_layout(DEFAULT_MINEFIELD if layout is None else layout)
        self.rows, self.cols = len(self.layout), len(self.layout[0])
        self.powerups = [
            (r, c) for r, row in enumerate(self.layout) for c, ch in enumerate(row) if ch == "P"
        ]
        self.n_masks = 2 ** len(self.powerups)
        start = next(
            (r, c) for r, row in enumerate(self.layout) for c, ch in enumerate(row) if ch == "R"
        )
        full = self.n_masks - 1
        P: Table = {}
        terminal = []
        for s in range(self.rows * self.cols * self.n_masks):
            r, c, mask = self.decode(s)
            if self.layout[r][c] in "MG":
                P[s] = _absorbing(s, len(self.MOVES))
                terminal.append(s)
            else:
                P[s] = {
                    a: [self._move(r, c, mask, dr, dc)] for a, (dr, dc) in enumerate(self.MOVES)
                }
        super().__init__(
            P,
            initial_state=self.encode(*start, full),
            state_names=[self._name(s) for s in range(len(P))],
            action_names=["up", "right", "down", "left"],
            terminal_states=terminal,
            render_mode=render_mode,
        )

    def encode(self, row: int, col: int, mask: int) -> int:
        """The state of the robot at (row, col) with the power-ups in ``mask`` still there."""
        return (row * self.cols + col) * self.n_masks + mask

    def decode(self, state: int) -> tuple[int, int, int]:
        """The inverse of `encode`: ``(row, col, mask)`` of ``state``."""
        cell, mask = divmod(int(state), self.n_masks)
        row, col = divmod(cell, self.cols)
        return row, col, mask

    def _move(self, r: int, c: int, mask: int, dr: int, dc: int) -> Transition:
        """The single outcome of moving by (dr, dc) from (r, c) with power-ups ``mask``."""
        r2, c2 = r + dr, c + dc
        if not (0 <= r2 < self.rows and 0 <= c2 < self.cols):
            return (1.0, self.encode(r, c, mask), self.STEP_REWARD, False)
        cell = self.layout[r2][c2]
        if cell == "M":
            return (1.0, self.encode(r2, c2, mask), self.MINE_REWARD, True)
        if cell == "G":
            return (1.0, self.encode(r2, c2, mask), self.GOAL_REWARD, True)
        reward = self.STEP_REWARD
        if cell == "P" and mask >> self.powerups.index((r2, c2)) & 1:
            mask &= ~(1 << self.powerups.index((r2, c2)))
            reward += self.POWERUP_REWARD
        return (1.0, self.encode(r2, c2, mask), reward, False)

    def _name(self, state: int) -> str:
        """``r{row}c{col}``, plus ``+P`` and one 1/0 per power-up (1 = still there)."""
        r, c, mask = self.decode(state)
        bits = "".join(str(mask >> i & 1) for i in range(len(self.powerups)))
        return f"r{r}c{c}" + (f"+P{bits}" if bits else "")

    def _picture(self) -> str:
        """The grid with the robot as R, taken power-ups and the start cell shown as '.'."""
        r0, c0, mask = self.decode(self.s)
        grid = [list(row.replace("R", ".")) for row in self.layout]
        for i, (r, c) in enumerate(self.powerups):
            if not mask >> i & 1:
                grid[r][c] = "."
        grid[r0][c0] = "R"
        return "\n".join("".join(row) for row in grid)


def _parse_layout(layout: Sequence[str] | str) -> list[str]:
    """Split and validate a mine-field layout; raise ValueError naming the problem."""
    if isinstance(layout, str):
        layout = layout.replace("/", "\n").split()
    rows = list(layout)
    if not rows or not all(isinstance(row, str) for row in rows):
        raise ValueError(f"layout must be a non-empty list of strings, got {layout!r}")
    widths = sorted({len(row) for row in rows})
    if len(widths) != 1 or widths[0] == 0:
        raise ValueError(
            f"layout rows must all have the same non-zero length, got lengths {widths}"
        )
    text = "".join(rows)
    unknown = sorted(set(text) - set(MINEFIELD_CELLS))
    if unknown:
        raise ValueError(
            f"layout has unknown characters {unknown}; valid: R (start), G (goal), M (mine), "
            "P (power-up), '.' (empty)"
        )
    for ch, what in (("R", "robot start"), ("G", "goal")):
        if text.count(ch) != 1:
            raise ValueError(f"layout must have exactly one {ch} ({what}), found {text.count(ch)}")
    if text.count("P") > MAX_POWERUPS:
        raise ValueError(
            f"layout has {text.count('P')} power-ups; at most {MAX_POWERUPS} (each doubles the "
            "number of states)"
        )
    return rows


class ExplorationTrapEnv(FiniteMDPEnv):
    """One decision, three doors: why a greedy learner needs to explore.

    From ``start`` the robot opens one door and the episode ends: action 0 = "near door" pays +1,
    1 = "empty room" pays 0, 2 = "far door" pays +1000.

    With Q initialised to 0 and a greedy argmax that breaks ties by the first index (``np.argmax``),
    the learner first takes action 0, gets 1, and Q(start, near door) > 0 = Q of the untried
    doors: the near door stays the argmax forever and greedy settles on 1. Epsilon-greedy
    sometimes acts at random, eventually tries the far door, finds 1000 and switches.
    """

    DOORS = (("near door", 1.0), ("empty room", 0.0), ("far door", 1000.0))
    """(action name, reward) per action, in action order."""

    def __init__(self, render_mode: str | None = None) -> None:
        """Build the table: state 0 is ``start``, states 1..3 the terminal rooms behind the doors.

        Args:
            render_mode: ``None`` or ``"ansi"``.
        """
        n_actions = len(self.DOORS)
        P: Table = {
            0: {a: [(1.0, a + 1, reward, True)] for a, (_, reward) in enumerate(self.DOORS)}
        }
        for t in range(1, n_actions + 1):
            P[t] = _absorbing(t, n_actions)
        super().__init__(
            P,
            initial_state=0,
            state_names=["start"] + [name for name, _ in self.DOORS],
            action_names=[name for name, _ in self.DOORS],
            terminal_states=range(1, n_actions + 1),
            render_mode=render_mode,
        )

    def _picture(self) -> str:
        """``[start] -> near door (+1) | empty room (+0) | far door (+1000)``, robot in brackets."""
        doors = " | ".join(
            f"[{name} ({reward:+g})]" if self.s == a + 1 else f"{name} ({reward:+g})"
            for a, (name, reward) in enumerate(self.DOORS)
        )
        start = "[start]" if self.s == 0 else "start"
        return f"{start} -> {doors}"
