"""Go on a 9x9, 13x13 or 19x19 board with Tromp-Taylor rules and positional superko.

Rules implemented:

- Black (player 0) moves first; players alternate, and a pass is a move. `set_to_play` gives
  the move to either colour without a move (setup and handicap stones, GTP's `play` for the
  colour not to move); it does not count as a move or a pass.
- A stone is placed on an empty point. Opponent groups left without liberties are removed
  (captured) first; a move that then leaves its own group without liberties is suicide and
  illegal (so a move that captures is never suicide).
- Positional superko: a move may not recreate any whole-board position that occurred earlier in
  the game (whoever was to move then). Positions are compared by 64-bit Zobrist hashes; a hash
  collision, which would forbid one legal move, has probability about 2^-64 per comparison.
- Passing is always legal and never breaks superko. The game ends after two consecutive passes
  (one by each colour), or when `max_moves` moves (passes included; default `2 * N * N`) have
  been played, so that self-play always finishes; either way the board is scored as it stands.
- Tromp-Taylor area scoring: a player's score is their stones on the board plus the empty points
  in regions that reach only their colour; white adds `komi`. `score(state)` is black minus white
  including komi; `outcome(state)` is +1 / -1 / 0 for the player to move (0 only with a tie,
  possible only with an integer komi).

Conventions (see `bellman.games.base` for those every game shares):

- Action `row * N + col` is the point in row `row` counted from the TOP (row 0 is GTP row N)
  and column `col` from the left; action `N * N` is pass. So `action_size = N * N + 1`, and the
  board part of a policy reshaped to `[N, N]` lines up with the observation planes and `render`.
- Text: GTP coordinates, columns `A`-`T` without `I`, rows `1`-`N` from the bottom, e.g. `D4`,
  and `pass`; case-insensitive. `parse_moves("D4 E5 pass")` reads a whitespace- or
  comma-separated sequence.
- State: `GoState`, an immutable, hashable value: the board as `bytes` (0 empty, 1 black,
  2 white), the player to move, move and consecutive-pass counters, the Zobrist hash of the
  board, the frozenset of the hashes of every position so far (for superko) and the prisoners
  each player has taken.
- `observation(state)` is float32 `[6, N, N]`, from the mover's point of view:
  0. the mover's stones;
  1. the opponent's stones;
  2. empty points where the mover may not play (suicide or superko), so the network sees kos;
  3. constant 1 if the previous move was a pass (a pass now would end the game), else 0;
  4. constant 1 if the mover is white (komi makes the colours unequal), else 0;
  5. constant 1 (shows the board edge to convolutions that pad with zeros).
- With `features = "tactical"` the observation is `[19, N, N]`: those 6 planes, then 13 of
  AlphaGo's input features (Silver et al. 2016, Extended Data Table 2), one-hot in 3 buckets
  (1, 2, 3 or more) where the paper has 8, from the mover's point of view:
  6.-8. liberties of the group of each of the mover's stones;
  9.-11. the same for the opponent's stones;
  12.-14. capture size: opponent stones a move at this point would capture (none: all 0);
  15.-17. liberties after move: of the mover's group that a move here would make (1: the move
     is self-atari);
  18. sensibleness: the point is legal and not one of the mover's own eyes (`own_eyes`).
  Planes 12-18 are 0 wherever the mover may not play. Left out: the paper's "turns since"
  (a state keeps no move history) and its ladder planes (a ladder search per point).
- `symmetries` gives the 8 dihedral transforms of the planes and of the board part of the policy
  (the pass entry is unchanged); number `k` turns the board `k % 4` quarter turns
  counter-clockwise (as `numpy.rot90`) and then, for `k >= 4`, mirrors it left-right; `k = 0`,
  the identity, comes first.

Reference: John Tromp and Gunnar Farnebäck, "Combinatorics of Go" (2006), for the rules; Albert
Zobrist (1970) for the hashing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import cache
from numbers import Integral, Real

import numpy as np

from bellman.errors import ConfigError
from bellman.games.base import IllegalMoveError

SIZES = (9, 13, 19)
"""The board sizes supported."""

EMPTY, BLACK, WHITE = 0, 1, 2
_OFF_BOARD = 3  # what `own_eyes` sees beyond the edge
_LEGAL_CACHE = 512  # states whose legal points a Go remembers
_COLUMNS = "ABCDEFGHJKLMNOPQRST"  # GTP skips I
_PLANES = 6
_TACTICAL_PLANES = 13
FEATURES = ("board", "tactical")
"""The observation encodings (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class GoState:
    """A Go position with the history that the rules need (see the module docstring).

    Attributes:
        board: `N * N` bytes, row 0 at the top: 0 empty, 1 black, 2 white.
        history: Zobrist hashes of every board position of the game so far, this one included.
        moves: Moves played, passes included.
        passes: Consecutive passes just played (0, 1 or 2), by alternating colours.
        zobrist: Zobrist hash of `board` (0 for the empty board).
        captures: Stones captured so far by (black, white).
        mover: The player to move (0 = black); it alternates with every move and changes
            otherwise only by `Go.set_to_play`.
    """

    board: bytes
    history: frozenset[int]
    moves: int = 0
    passes: int = 0
    zobrist: int = 0
    captures: tuple[int, int] = (0, 0)
    mover: int = 0


@cache
def _zobrist_keys(size: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Random 63-bit keys per (colour, point), indexed by colour 0 (unused), 1, 2; fixed seed."""
    rng = np.random.default_rng(20061016 + size)
    keys = rng.integers(1, 2**63, size=(2, size * size), dtype=np.int64)
    return (), tuple(int(k) for k in keys[0]), tuple(int(k) for k in keys[1])


@cache
def _eye_neighbours(size: int) -> tuple[np.ndarray, np.ndarray]:
    """`[N * N, 4]` indices of every point's orthogonal and diagonal neighbours, N * N (one past
    the board) where a neighbour would be off the board."""
    result = []
    for steps in (((-1, 0), (1, 0), (0, -1), (0, 1)), ((-1, -1), (-1, 1), (1, -1), (1, 1))):
        index = np.full((size * size, 4), size * size, dtype=np.intp)
        for point in range(size * size):
            row, col = divmod(point, size)
            for k, (dr, dc) in enumerate(steps):
                if 0 <= row + dr < size and 0 <= col + dc < size:
                    index[point, k] = (row + dr) * size + col + dc
        result.append(index)
    return result[0], result[1]


@cache
def _neighbours(size: int) -> tuple[tuple[int, ...], ...]:
    """The orthogonal neighbours of every point."""
    result = []
    for row in range(size):
        for col in range(size):
            around = []
            for r, c in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
                if 0 <= r < size and 0 <= c < size:
                    around.append(r * size + c)
            result.append(tuple(around))
    return tuple(result)


def _dihedral(board: np.ndarray, k: int) -> np.ndarray:
    """Symmetry number `k` (0-7) of the last two axes: `k % 4` quarter turns, then a mirror."""
    turned = np.rot90(board, k % 4, axes=(-2, -1))
    return turned[..., ::-1] if k >= 4 else turned


class Go:
    """The game of Go, implementing the `Game` protocol.

    Args:
        size: Board size N, one of 9, 13, 19.
        komi: Points added to white's score.
        max_moves: Moves (passes included) after which the game ends and is scored; None means
            `2 * size * size`.
        features: The observation: "board" (6 planes) or "tactical" (19 planes: AlphaGo's
            liberty, capture and sensibleness features added; see the module docstring).

    Raises:
        ConfigError: an unsupported size, a non-finite komi, a max_moves below 1 or unknown
            features.
    """

    def __init__(
        self,
        size: int = 9,
        komi: float = 7.5,
        max_moves: int | None = None,
        features: str = "board",
    ):
        if isinstance(size, bool) or size not in SIZES:
            valid = ", ".join(str(s) for s in SIZES)
            raise ConfigError(f"Go board size {size!r} is not supported; valid sizes: {valid}")
        if isinstance(komi, bool) or not isinstance(komi, Real) or not math.isfinite(komi):
            raise ConfigError(f"Go komi must be a finite number such as 7.5, got {komi!r}")
        if max_moves is None:
            max_moves = 2 * size * size
        if isinstance(max_moves, bool) or not isinstance(max_moves, Integral) or max_moves < 1:
            raise ConfigError(f"Go max_moves must be a positive integer, got {max_moves!r}")
        if features not in FEATURES:
            raise ConfigError(f"Go features {features!r} are unknown; valid: {', '.join(FEATURES)}")
        size, max_moves = int(size), int(max_moves)
        self.size = size
        self.komi = float(komi)
        self.max_moves = max_moves
        self.name = f"go{size}"
        self.pass_action = size * size
        self.action_size = size * size + 1
        self.board_shape = (size, size)
        self.features = features
        planes = _PLANES + (_TACTICAL_PLANES if features == "tactical" else 0)
        self.observation_shape = (planes, size, size)
        self._neighbours = _neighbours(size)
        self._eye_neighbours = _eye_neighbours(size)
        self._legal_cache: dict[int, tuple[GoState, tuple]] = {}
        self._keys = _zobrist_keys(size)
        self._columns = _COLUMNS[:size]
        # Symmetry k maps policy entry `perm[k][i]` (old point) to new point i.
        points = np.arange(size * size).reshape(size, size)
        self._permutations = [_dihedral(points, k).ravel().copy() for k in range(8)]

    # ----- rules -------------------------------------------------------------------------------

    def initial_state(self) -> GoState:
        """The empty board, black (player 0) to move."""
        return GoState(board=bytes(self.size * self.size), history=frozenset({0}))

    def to_play(self, state: GoState) -> int:
        """The player to move: 0 (black) or 1 (white)."""
        return state.mover

    def set_to_play(self, state: GoState, player: int) -> GoState:
        """`state` with `player` (0 black, 1 white) to move, as for setup or handicap stones.

        Not a move: the board, the move count and the superko history stay. Giving the move
        to the other colour clears the consecutive passes (a pass followed by another move of
        the same colour was not answered by the opponent), so the next pass does not end the
        game.

        Raises:
            IllegalMoveError: the game is over.
            ValueError: `player` is not 0 or 1.
        """
        if player not in (0, 1):
            raise ValueError(f"Go player must be 0 (black) or 1 (white), got {player!r}")
        if self.is_terminal(state):
            raise IllegalMoveError("the game is over; no move is legal")
        if player == state.mover:
            return state
        return replace(state, mover=player, passes=0)

    def is_terminal(self, state: GoState) -> bool:
        """True after two consecutive passes or once `max_moves` moves have been played."""
        return state.passes >= 2 or state.moves >= self.max_moves

    def legal_actions(self, state: GoState) -> list[int]:
        """The legal points in increasing order, then pass ([] when the game is over)."""
        if self.is_terminal(state):
            return []
        return [*self._legal_points(state), self.pass_action]

    def legal_mask(self, state: GoState) -> np.ndarray:
        """Boolean `[N * N + 1]`: legal points and pass (all False when the game is over)."""
        legal = np.zeros(self.action_size, dtype=bool)
        legal[self.legal_actions(state)] = True
        return legal

    def own_eyes(self, state: GoState) -> np.ndarray:
        """Boolean `[N * N]`: the empty points that are eyes of the player to move, by Monte-Carlo
        Go's simple rule: every on-board orthogonal neighbour is the mover's stone, and of the
        diagonal neighbours at most one is the opponent's in the middle of the board and none on
        the edge or in a corner (a false eye, which the opponent can take, fails it)."""
        colour = BLACK + state.mover
        board = np.frombuffer(state.board + bytes([_OFF_BOARD]), dtype=np.uint8)
        orthogonal, diagonal = board[self._eye_neighbours[0]], board[self._eye_neighbours[1]]
        enclosed = ((orthogonal == colour) | (orthogonal == _OFF_BOARD)).all(axis=1)
        opponent = (diagonal == BLACK + WHITE - colour).sum(axis=1)
        on_edge = (diagonal == _OFF_BOARD).any(axis=1)
        return (board[:-1] == EMPTY) & enclosed & (opponent + on_edge < 2)

    def playout_mask(self, state: GoState) -> np.ndarray:
        """Boolean `[N * N + 1]`: the moves of a playout, the legal points that do not fill one
        of the mover's own eyes (`own_eyes`), and pass only when there is none. A playout (a
        rollout, a self-play game whose result is a learning target) then ends as Monte-Carlo
        Go's do (Bruegmann 1993; MoGo), once every point left is an eye or illegal: dead stones
        are captured and the Tromp-Taylor score counts what a player who passed would agree to.
        (AlphaGo's policy nets see the same rule as their "sensibleness" feature plane.)"""
        mask = self.legal_mask(state)
        mask[: self.pass_action] &= ~self.own_eyes(state)
        if mask[: self.pass_action].any():
            mask[self.pass_action] = False
        return mask

    def apply(self, state: GoState, action: int) -> GoState:
        """The state after the player to move plays `action` (a point or pass).

        Raises:
            IllegalMoveError: the action is out of range, the point is occupied, the move is
                suicide or repeats an earlier position, or the game is over.
        """
        point = int(action)
        if self.is_terminal(state):
            raise IllegalMoveError("the game is over; no move is legal")
        if not 0 <= point <= self.pass_action:
            raise IllegalMoveError(
                f"Go action {action} is out of range; valid: 0-{self.pass_action} "
                f"({self.pass_action} = pass)"
            )
        if point == self.pass_action:
            return replace(
                state, moves=state.moves + 1, passes=state.passes + 1, mover=1 - state.mover
            )
        if state.board[point] != EMPTY:
            raise IllegalMoveError(f"{self.format_action(point)} is occupied")
        colour = BLACK + state.mover
        enemy = BLACK + WHITE - colour
        board = bytearray(state.board)
        board[point] = colour
        zobrist = state.zobrist ^ self._keys[colour][point]
        # 1. Remove the opponent groups this stone leaves without liberties.
        captured = 0
        for neighbour in self._neighbours[point]:
            if board[neighbour] == enemy:
                dead = self._dead_group(board, neighbour)
                for stone in dead:
                    board[stone] = EMPTY
                    zobrist ^= self._keys[enemy][stone]
                captured += len(dead)
        # 2. Suicide: the new stone's own group has no liberty left.
        if not captured and self._dead_group(board, point):
            raise IllegalMoveError(f"{self.format_action(point)} is suicide")
        # 3. Positional superko.
        if zobrist in state.history:
            raise IllegalMoveError(
                f"{self.format_action(point)} would repeat an earlier position (superko)"
            )
        captures = list(state.captures)
        captures[state.mover] += captured
        return GoState(
            board=bytes(board),
            history=state.history | {zobrist},
            moves=state.moves + 1,
            passes=0,
            zobrist=zobrist,
            captures=(captures[0], captures[1]),
            mover=1 - state.mover,
        )

    def score(self, state: GoState) -> float:
        """Tromp-Taylor area score, black minus white, komi included (any state)."""
        board, neighbours = state.board, self._neighbours
        black, white = board.count(BLACK), board.count(WHITE)
        seen = bytearray(len(board))
        for start in range(len(board)):
            if board[start] != EMPTY or seen[start]:
                continue
            # Flood-fill the empty region from `start`, noting which colours it touches.
            seen[start] = 1
            stack, size, reaches = [start], 0, 0
            while stack:
                point = stack.pop()
                size += 1
                for neighbour in neighbours[point]:
                    stone = board[neighbour]
                    if stone == EMPTY:
                        if not seen[neighbour]:
                            seen[neighbour] = 1
                            stack.append(neighbour)
                    else:
                        reaches |= stone
            if reaches == BLACK:
                black += size
            elif reaches == WHITE:
                white += size
        return black - white - self.komi

    def outcome(self, state: GoState) -> float:
        """+1 / -1 / 0 for the player to move at a finished game, by `score`.

        Raises:
            ValueError: `state` is not terminal.
        """
        if not self.is_terminal(state):
            raise ValueError("outcome() of a Go position that is not over")
        score = self.score(state)
        black = 1.0 if score > 0 else -1.0 if score < 0 else 0.0
        return black if state.mover == 0 else -black

    # ----- rule helpers ------------------------------------------------------------------------

    def _dead_group(self, board: bytearray, start: int) -> list[int]:
        """The stones of the group at `start` if it has no liberty, else [] (stops early)."""
        colour, neighbours = board[start], self._neighbours
        stones, stack, seen = [start], [start], {start}
        while stack:
            point = stack.pop()
            for neighbour in neighbours[point]:
                stone = board[neighbour]
                if stone == EMPTY:
                    return []
                if stone == colour and neighbour not in seen:
                    seen.add(neighbour)
                    stones.append(neighbour)
                    stack.append(neighbour)
        return stones

    def _groups(self, board: bytes) -> tuple[list[int], list[set[int]], list[int]]:
        """Label every group: (group id per point or -1, liberties per group, hash per group)."""
        neighbours, keys = self._neighbours, self._keys
        label = [-1] * len(board)
        liberties: list[set[int]] = []
        hashes: list[int] = []
        for start, colour in enumerate(board):
            if colour == EMPTY or label[start] >= 0:
                continue
            group = len(liberties)
            label[start] = group
            stack, free, zobrist, colour_keys = [start], set(), 0, keys[colour]
            while stack:
                point = stack.pop()
                zobrist ^= colour_keys[point]
                for neighbour in neighbours[point]:
                    stone = board[neighbour]
                    if stone == EMPTY:
                        free.add(neighbour)
                    elif stone == colour and label[neighbour] < 0:
                        label[neighbour] = group
                        stack.append(neighbour)
            liberties.append(free)
            hashes.append(zobrist)
        return label, liberties, hashes

    def _legal_points(self, state: GoState) -> list[int]:
        """The empty points where the mover may play (`_analysis`)."""
        return self._analysis(state)[2]

    def _analysis(self, state: GoState) -> tuple[list[int], list[set[int]], list[int]]:
        """(group label per point, liberties per group, legal points) of `state`
        (`_groups`, `_find_legal_points`), remembered for the last few hundred states asked
        about (by identity: a state is immutable): the legal moves and the observation of a
        state are usually asked for together, and each needs them."""
        hit = self._legal_cache.get(id(state))
        if hit is not None and hit[0] is state:
            return hit[1]
        label, liberties, hashes = self._groups(state.board)
        analysis = (label, liberties, self._find_legal_points(state, label, liberties, hashes))
        if len(self._legal_cache) >= _LEGAL_CACHE:
            self._legal_cache.clear()
        self._legal_cache[id(state)] = (state, analysis)  # kept alive: its id stays its own
        return analysis

    def __getstate__(self) -> dict:
        """Pickled (for a worker process) without the cache of legal points."""
        return self.__dict__ | {"_legal_cache": {}}

    def _find_legal_points(self, state: GoState, label=None, liberties=None, hashes=None
                           ) -> list[int]:  # fmt: skip
        """The empty points where the mover may play: not suicide and not a superko repeat
        (from `_groups(state.board)`, computed here unless given)."""
        board, neighbours, history = state.board, self._neighbours, state.history
        colour = BLACK + state.mover
        own_keys = self._keys[colour]
        if label is None:
            label, liberties, hashes = self._groups(board)
        legal = []
        for point, stone in enumerate(board):
            if stone != EMPTY:
                continue
            breathes = False  # the new stone's group keeps a liberty without any capture
            zobrist = state.zobrist ^ own_keys[point]
            taken: set[int] = set()  # opponent groups in atari at `point`
            for neighbour in neighbours[point]:
                other = board[neighbour]
                if other == EMPTY:
                    breathes = True
                elif other == colour:
                    breathes = breathes or len(liberties[label[neighbour]]) > 1
                elif len(liberties[label[neighbour]]) == 1:
                    taken.add(label[neighbour])
            for group in taken:
                zobrist ^= hashes[group]
            if (breathes or taken) and zobrist not in history:
                legal.append(point)
        return legal

    # ----- tensors -----------------------------------------------------------------------------

    def observation(self, state: GoState) -> np.ndarray:
        """Float32 `[6, N, N]` planes (`[19, N, N]` with tactical features) from the mover's point
        of view (see the module docstring)."""
        n = self.size
        board = np.frombuffer(state.board, dtype=np.uint8)
        colour = BLACK + state.mover
        planes = np.zeros((_PLANES, n * n), dtype=np.float32)
        planes[0] = board == colour
        planes[1] = board == BLACK + WHITE - colour
        planes[2] = board == EMPTY
        planes[2, self._legal_points(state)] = 0.0
        planes[3] = float(state.passes > 0)
        planes[4] = float(colour == WHITE)
        planes[5] = 1.0
        if self.features == "tactical":
            planes = np.concatenate([planes, self._tactical_planes(state)])
        return planes.reshape(self.observation_shape)

    def _tactical_planes(self, state: GoState) -> np.ndarray:
        """Float32 `[13, N * N]`: the tactical planes 6-18 of the observation (module docstring)."""
        board, neighbours = state.board, self._neighbours
        colour = BLACK + state.mover
        enemy = BLACK + WHITE - colour
        label, liberties, legal = self._analysis(state)
        planes = np.zeros((_TACTICAL_PLANES, len(board)), dtype=np.float32)
        for point, stone in enumerate(board):  # 6-11: the liberties of every stone's group
            if stone != EMPTY:
                bucket = min(len(liberties[label[point]]), 3) - 1
                planes[bucket + (0 if stone == colour else 3), point] = 1.0
        for point in legal:
            own = {label[q] for q in neighbours[point] if board[q] == colour}
            taken = {label[q] for q in neighbours[point]
                     if board[q] == enemy and len(liberties[label[q]]) == 1}  # fmt: skip
            captured = [p for p, group in enumerate(label) if group in taken] if taken else []
            if captured:  # 12-14: capture size
                planes[6 + min(len(captured), 3) - 1, point] = 1.0
            free = {q for q in neighbours[point] if board[q] == EMPTY}
            for group in own:
                free |= liberties[group]
            free.discard(point)
            if captured:  # a captured stone next to the new group becomes its liberty
                stones = {point} | {p for p, group in enumerate(label) if group in own}
                free.update(p for p in captured if any(q in stones for q in neighbours[p]))
            planes[9 + min(len(free), 3) - 1, point] = 1.0  # 15-17: liberties after move
        planes[12, legal] = 1.0  # 18: sensibleness
        planes[12] *= ~self.own_eyes(state)
        return planes

    def symmetries(
        self, planes: np.ndarray, policy: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The 8 dihedral copies of `(planes [C, N, N], policy [N * N + 1])`, identity first."""
        n = self.size
        flat = planes.reshape(planes.shape[0], n * n)
        result = [(planes, policy)]
        for perm in self._permutations[1:]:
            new_policy = np.concatenate([policy[: n * n][perm], policy[n * n :]])
            result.append((flat[:, perm].reshape(planes.shape), new_policy))
        return result

    # ----- text --------------------------------------------------------------------------------

    def render(self, state: GoState) -> str:
        """The board with GTP coordinates: `X` black, `O` white, `.` empty; row N on top."""
        n = self.size
        header = "   " + " ".join(self._columns)
        lines = [header]
        for row in range(n):
            cells = " ".join(".XO"[state.board[row * n + col]] for col in range(n))
            lines.append(f"{n - row:>2} {cells} {n - row:<2}".rstrip())
        lines.append(header)
        return "\n".join(lines)

    def format_action(self, action: int) -> str:
        """A point in GTP coordinates (`D4`), or `pass`."""
        action = int(action)
        if action == self.pass_action:
            return "pass"
        row, col = divmod(action, self.size)
        return f"{self._columns[col]}{self.size - row}"

    def parse_action(self, text: str) -> int:
        """A GTP point such as `D4` or `pass` (case-insensitive) as an action."""
        token = text.strip().upper()
        if token == "PASS":
            return self.pass_action
        match = re.fullmatch(r"([A-Z])(\d{1,2})", token)
        if match:
            col = self._columns.find(match.group(1))
            row = int(match.group(2))
            if col >= 0 and 1 <= row <= self.size:
                return (self.size - row) * self.size + col
        raise IllegalMoveError(
            f"'{text}' is not a point on the {self.size}x{self.size} board; valid: a column "
            f"A-{self._columns[-1]} (no I) then a row 1-{self.size}, such as D4, or pass"
        )

    def parse_moves(self, line: str) -> list[int]:
        """Whitespace- or comma-separated GTP moves (`"D4 E5 pass"`) as actions.

        Only the notation is checked here; `play_moves` checks that each move is legal.
        """
        actions = []
        for number, token in enumerate(line.replace(",", " ").split(), start=1):
            try:
                actions.append(self.parse_action(token))
            except IllegalMoveError as error:
                raise IllegalMoveError(f"move {number}: {error}") from None
        return actions
