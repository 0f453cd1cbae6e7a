"""Connect Four on a 7-wide, 6-high board, as a bitboard in the manner of Pascal Pons' solver.

Rules: players drop stones into one of 7 columns; a stone falls to the lowest empty cell. Four
stones of one player in a row (horizontal, vertical or either diagonal) win; the game is a draw
when all 42 cells are full with no four. Player 0 moves first (drawn as `X`, player 1 as `O`).

Conventions (see `bellman.games.base` for those every game shares):

- Action = column index 0..6 (left to right). Text notation numbers columns 1-7, so
  `parse_moves("4453")` is `[3, 3, 4, 2]` and `format_action(3)` is `"4"`.
- State = `Connect4State(position, mask, moves)`, three Python ints: an immutable, hashable value.
  Bit `7 * col + row` stands for the cell of column `col`, row `row` counted from the bottom
  (row 6 of each column is an always-empty sentinel that keeps the columns apart). `position`
  holds the stones of the player to move, `mask` all stones, `moves` the number of stones played;
  the player to move is `moves % 2`.
- A win is tested with four shift-and checks on the bitboard of the player who just moved
  (shift 1 = vertical, 7 = horizontal, 6 and 8 = the two diagonals).
- `observation(state)` is float32 `[2, 6, 7]`: plane 0 the mover's stones, plane 1 the
  opponent's; row 0 is the TOP row (as `render` draws it), column 0 the leftmost column.
- `symmetries` are the identity and the left-right mirror (the policy is mirrored too).
- `heuristic(state)` is a cheap static evaluation in (-1, 1) for depth-limited search, and
  `winning_moves(state)` lists the columns that win at once.

Reference: Pascal Pons, "Solving Connect 4: how to build a perfect AI" (blog, 2019), for the
bitboard layout and the winning-position computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bellman.games.base import IllegalMoveError

WIDTH = 7
HEIGHT = 6
_H1 = HEIGHT + 1  # bits per column: 6 cells and one sentinel
_CELLS = WIDTH * HEIGHT

_BOTTOM = sum(1 << (col * _H1) for col in range(WIDTH))  # lowest cell of every column
_BOARD = _BOTTOM * ((1 << HEIGHT) - 1)  # every playable cell, no sentinels
_BOTTOM_OF = tuple(1 << (col * _H1) for col in range(WIDTH))
_TOP_OF = tuple(1 << (HEIGHT - 1 + col * _H1) for col in range(WIDTH))
_COLUMN_OF = tuple(((1 << HEIGHT) - 1) << (col * _H1) for col in range(WIDTH))

# Bit index of observation cell [row, col] with row 0 at the top.
_OBS_BITS = np.array(
    [[col * _H1 + (HEIGHT - 1 - row) for col in range(WIDTH)] for row in range(HEIGHT)]
)


_OBS_SHIFTS = _OBS_BITS.astype(np.uint64)


def _window_masks() -> tuple[int, ...]:
    """Every line of four cells on the board (69 of them), as bitmasks."""
    windows = []
    for col in range(WIDTH):
        for row in range(HEIGHT):
            for dcol, drow in ((1, 0), (0, 1), (1, 1), (1, -1)):
                cells = [(col + k * dcol, row + k * drow) for k in range(4)]
                if all(0 <= c < WIDTH and 0 <= r < HEIGHT for c, r in cells):
                    windows.append(sum(1 << (c * _H1 + r) for c, r in cells))
    return tuple(windows)


_WINDOWS = _window_masks()
# Centre-column preference for the heuristic: columns 3, 2/4, 1/5, 0/6.
_CENTRE_WEIGHT = tuple(3 - abs(3 - col) for col in range(WIDTH))


@dataclass(frozen=True, slots=True)
class Connect4State:
    """A Connect Four position (bitboards; see the module docstring).

    Attributes:
        position: Bits of the stones of the player to move.
        mask: Bits of all stones.
        moves: Number of stones on the board; the player to move is `moves % 2`.
    """

    position: int = 0
    mask: int = 0
    moves: int = 0


def four_in_a_row(stones: int) -> bool:
    """True when the bitboard `stones` contains four in a row in any direction."""
    for shift in (1, _H1, HEIGHT, _H1 + 1):  # vertical, horizontal, diagonal \, diagonal /
        pairs = stones & (stones >> shift)
        if pairs & (pairs >> (2 * shift)):
            return True
    return False


def _winning_cells(stones: int, mask: int) -> int:
    """Empty cells that would complete a four for the player owning `stones` (Pons' method)."""
    # Vertical: three stones directly below.
    cells = (stones << 1) & (stones << 2) & (stones << 3)
    for shift in (_H1, HEIGHT, _H1 + 1):  # horizontal and the two diagonals
        pair = (stones << shift) & (stones << (2 * shift))
        cells |= pair & (stones << (3 * shift))  # three to one side
        cells |= pair & (stones >> shift)  # two on one side, one on the other
        pair = (stones >> shift) & (stones >> (2 * shift))
        cells |= pair & (stones << shift)
        cells |= pair & (stones >> (3 * shift))
    return cells & (_BOARD ^ mask)


class Connect4:
    """Connect Four, 7 columns by 6 rows, implementing the `Game` protocol."""

    name = "connect4"
    action_size = WIDTH
    board_shape = (HEIGHT, WIDTH)
    observation_shape = (2, HEIGHT, WIDTH)

    # ----- rules -------------------------------------------------------------------------------

    def initial_state(self) -> Connect4State:
        """The empty board, player 0 to move."""
        return Connect4State()

    def to_play(self, state: Connect4State) -> int:
        """The player to move: 0 (first player, `X`) or 1 (`O`)."""
        return state.moves % 2

    def is_terminal(self, state: Connect4State) -> bool:
        """True when the player who just moved has four in a row or the board is full."""
        return state.moves >= _CELLS or four_in_a_row(state.position ^ state.mask)

    def outcome(self, state: Connect4State) -> float:
        """-1 if the mover has lost (the opponent just made four), 0 for a draw.

        Raises:
            ValueError: `state` is not terminal.
        """
        if four_in_a_row(state.position ^ state.mask):
            return -1.0
        if state.moves >= _CELLS:
            return 0.0
        raise ValueError("outcome() of a Connect Four position that is not over")

    def legal_actions(self, state: Connect4State) -> list[int]:
        """The columns that are not full, in increasing order ([] when the game is over)."""
        if self.is_terminal(state):
            return []
        mask = state.mask
        return [col for col in range(WIDTH) if not mask & _TOP_OF[col]]

    def legal_mask(self, state: Connect4State) -> np.ndarray:
        """Boolean `[7]`: True for the columns that are not full (all False when over)."""
        legal = np.zeros(WIDTH, dtype=bool)
        legal[self.legal_actions(state)] = True
        return legal

    def apply(self, state: Connect4State, action: int) -> Connect4State:
        """Drop a stone of the player to move into column `action` (0-6).

        Raises:
            IllegalMoveError: the column is out of range or full, or the game is over.
        """
        col = int(action)
        if not 0 <= col < WIDTH:
            raise IllegalMoveError(f"column index {action} is out of range; valid: 0-{WIDTH - 1}")
        if self.is_terminal(state):
            raise IllegalMoveError("the game is over; no move is legal")
        if state.mask & _TOP_OF[col]:
            legal = " ".join(self.format_action(a) for a in self.legal_actions(state))
            raise IllegalMoveError(f"column {col + 1} is full; legal columns: {legal}")
        # The opponent becomes the mover: their stones are `position ^ mask` before the move.
        mask = state.mask | (state.mask + _BOTTOM_OF[col])
        return Connect4State(state.position ^ state.mask, mask, state.moves + 1)

    # ----- search helpers ----------------------------------------------------------------------

    def winning_moves(self, state: Connect4State) -> list[int]:
        """The columns where the player to move makes four at once ([] when the game is over)."""
        if self.is_terminal(state):
            return []
        playable = (state.mask + _BOTTOM) & _BOARD
        cells = _winning_cells(state.position, state.mask) & playable
        return [col for col in range(WIDTH) if cells & _COLUMN_OF[col]]

    def can_win_now(self, state: Connect4State) -> bool:
        """True when the player to move has a move that makes four at once."""
        playable = (state.mask + _BOTTOM) & _BOARD
        cells = _winning_cells(state.position, state.mask) & playable
        return cells != 0 and not self.is_terminal(state)

    def heuristic(self, state: Connect4State) -> float:
        """A static value of `state` for the player to move, for depth-limited search.

        Terminal states give `outcome(state)` (-1 or 0). Otherwise the value lies strictly inside
        (-1, 1): 0.95 when the mover can win at once; -0.9 when the opponent has two or more
        immediate wins the mover cannot all block; else `0.8 * tanh(s / 20)` where `s` counts
        the lines of four still open to one player only (+1 for two stones, +4 for three, and
        likewise negative for the opponent) plus a small bonus for central stones.
        """
        if self.is_terminal(state):
            return self.outcome(state)
        mine, mask = state.position, state.mask
        theirs = mine ^ mask
        playable = (mask + _BOTTOM) & _BOARD
        if _winning_cells(mine, mask) & playable:
            return 0.95
        threats = _winning_cells(theirs, mask) & playable
        if threats.bit_count() >= 2:
            return -0.9
        score = 0.0
        for window in _WINDOWS:
            own, other = (mine & window).bit_count(), (theirs & window).bit_count()
            if other == 0:
                score += (0.0, 0.0, 1.0, 4.0)[own] if own < 4 else 0.0
            elif own == 0:
                score -= (0.0, 0.0, 1.0, 4.0)[other] if other < 4 else 0.0
        for col in range(WIDTH):
            column = _COLUMN_OF[col]
            weight = 0.2 * _CENTRE_WEIGHT[col]
            score += weight * ((mine & column).bit_count() - (theirs & column).bit_count())
        return 0.8 * math.tanh(score / 20.0)

    # ----- tensors -----------------------------------------------------------------------------

    def observation(self, state: Connect4State) -> np.ndarray:
        """Float32 `[2, 6, 7]`: the mover's stones, the opponent's; row 0 is the top row."""
        mine = _bits(state.position)
        theirs = _bits(state.position ^ state.mask)
        return np.stack([mine[_OBS_BITS], theirs[_OBS_BITS]]).astype(np.float32)

    def observations(self, states: list[Connect4State]) -> np.ndarray:
        """Float32 `[B, 2, 6, 7]`: `observation` of each state, computed for all at once."""
        boards = np.array(
            [(s.position, s.position ^ s.mask) for s in states], dtype=np.uint64
        ).reshape(len(states), 2, 1, 1)
        return ((boards >> _OBS_SHIFTS) & np.uint64(1)).astype(np.float32)

    def symmetries(
        self, planes: np.ndarray, policy: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The identity and the left-right mirror of `(planes [C, 6, 7], policy [7])`."""
        mirrored = (np.ascontiguousarray(planes[..., ::-1]), np.ascontiguousarray(policy[::-1]))
        return [(planes, policy), mirrored]

    # ----- text --------------------------------------------------------------------------------

    def render(self, state: Connect4State) -> str:
        """The board, top row first, `X` for player 0, `O` for player 1, column numbers below."""
        first = state.position if state.moves % 2 == 0 else state.position ^ state.mask
        lines = []
        for row in range(HEIGHT - 1, -1, -1):
            cells = []
            for col in range(WIDTH):
                bit = 1 << (col * _H1 + row)
                cells.append("." if not state.mask & bit else "X" if first & bit else "O")
            lines.append(" ".join(cells))
        lines.append(" ".join(str(col + 1) for col in range(WIDTH)))
        return "\n".join(lines)

    def format_action(self, action: int) -> str:
        """Column index 0-6 as its number 1-7."""
        return str(int(action) + 1)

    def parse_action(self, text: str) -> int:
        """A column number 1-7 (surrounding spaces allowed) as the column index 0-6."""
        token = text.strip()
        if len(token) != 1 or token not in "1234567":
            raise IllegalMoveError(f"'{text}' is not a Connect Four column; valid: 1-7")
        return int(token) - 1

    def parse_moves(self, line: str) -> list[int]:
        """A string of column numbers such as `"4453"` (spaces ignored) as column indices.

        Only the notation is checked here; `play_moves` checks that each move is legal.
        """
        moves = []
        for position, char in enumerate(line, start=1):
            if char.isspace():
                continue
            if char not in "1234567":
                raise IllegalMoveError(
                    f"character {position} ('{char}') of '{line}' is not a column; valid: 1-7"
                )
            moves.append(int(char) - 1)
        return moves


def _bits(board: int) -> np.ndarray:
    """The 64 low bits of `board` as a uint8 array, bit 0 first."""
    raw = np.frombuffer(board.to_bytes(8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")
