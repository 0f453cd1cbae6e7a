"""Tic-tac-toe on the `Game` protocol: the smallest game search and AlphaZero are tested on.

The board's cells are numbered row by row from the top left:

    1 2 3        actions 0 1 2
    4 5 6                3 4 5
    7 8 9                6 7 8

so action `a` is cell `a + 1` in the notation (`parse_moves("159")` is `[0, 4, 8]`, the main
diagonal). Player 0 plays X and moves first; player 1 plays O. The game ends when a player has
three marks in a row, column or diagonal (that player wins) or the board is full (a draw); so the
player to move at a terminal state has lost or drawn, and `outcome` is -1 or 0.

A state is a frozen `TicTacToeState` holding one 9-bit mask per player (bit `a` set when that
player has a mark on action `a`'s cell) and the player to move. Win, legality and observation
lookups go through tables over the 512 masks built once at import, so random playouts are fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bellman.games.base import IllegalMoveError

FULL = 0b111_111_111
"""The mask with every cell occupied."""

LINES = (
    0b000_000_111, 0b000_111_000, 0b111_000_000,  # rows
    0b001_001_001, 0b010_010_010, 0b100_100_100,  # columns
    0b100_010_001, 0b001_010_100,                 # diagonals
)  # fmt: skip
"""The eight winning lines as cell masks (bit `a` is action `a`)."""

_WINS = tuple(any(mask & line == line for line in LINES) for mask in range(FULL + 1))
_LEGAL = tuple(tuple(a for a in range(9) if not mask >> a & 1) for mask in range(FULL + 1))
_PLANES = np.array([[(mask >> a) & 1 for a in range(9)] for mask in range(FULL + 1)], np.float32)


def _dihedral_permutations() -> tuple[tuple[int, ...], ...]:
    """The 8 symmetries of the square as cell permutations, identity first (see `symmetries`)."""
    grid = np.arange(9).reshape(3, 3)
    grids = [np.rot90(grid, k) for k in range(4)] + [np.fliplr(np.rot90(grid, k)) for k in range(4)]
    return tuple(tuple(int(a) for a in g.ravel()) for g in grids)


SYMMETRY_PERMUTATIONS = _dihedral_permutations()
"""For symmetry k, cell `j` of the transformed board is cell `SYMMETRY_PERMUTATIONS[k][j]` of the
original: rotations by 0, 90, 180, 270 degrees counter-clockwise, then the same followed by a
left-right mirror. A move on cell `a` becomes the move on cell `perm.index(a)`."""


@dataclass(frozen=True, slots=True)
class TicTacToeState:
    """An immutable, hashable tic-tac-toe position.

    Attributes:
        x: cell mask of player 0's marks (X).
        o: cell mask of player 1's marks (O).
        player: the player to move, 0 or 1.
    """

    x: int = 0
    o: int = 0
    player: int = 0


class TicTacToe:
    """Tic-tac-toe implementing `bellman.games.base.Game` (see the module docstring)."""

    name = "tictactoe"
    action_size = 9
    board_shape = (3, 3)
    observation_shape = (2, 3, 3)

    def initial_state(self) -> TicTacToeState:
        """The empty board, X (player 0) to move."""
        return TicTacToeState()

    def to_play(self, state: TicTacToeState) -> int:
        """The player to move: 0 (X) or 1 (O)."""
        return state.player

    def legal_mask(self, state: TicTacToeState) -> np.ndarray:
        """Boolean `[9]`: the empty cells, all False once the game is over."""
        return (_PLANES[state.x | state.o] == 0) & (not self.is_terminal(state))

    def legal_actions(self, state: TicTacToeState) -> list[int]:
        """The empty cells' actions in increasing order; [] once the game is over."""
        if _WINS[state.x] or _WINS[state.o]:
            return []
        return list(_LEGAL[state.x | state.o])

    def apply(self, state: TicTacToeState, action: int) -> TicTacToeState:
        """The position after the player to move marks `action`'s cell.

        Raises:
            IllegalMoveError: the game is over, `action` is not in 0..8 or its cell is occupied;
                the message lists the legal cells.
        """
        action = int(action)
        occupied = state.x | state.o
        if not 0 <= action < 9 or occupied >> action & 1 or self.is_terminal(state):
            raise IllegalMoveError(self._illegal_message(state, action))
        bit = 1 << action
        if state.player == 0:
            return TicTacToeState(state.x | bit, state.o, 1)
        return TicTacToeState(state.x, state.o | bit, 0)

    def _illegal_message(self, state: TicTacToeState, action: int) -> str:
        """Why `action` cannot be played at `state`, naming the legal cells."""
        if self.is_terminal(state):
            return f"move {self.format_action(action)} comes after the game has ended"
        legal = " ".join(self.format_action(a) for a in self.legal_actions(state))
        if not 0 <= action < 9:
            return f"action {action} is not a cell (valid: 0-8, cells 1-9); legal cells: {legal}"
        return f"cell {action + 1} is occupied; legal cells: {legal}"

    def is_terminal(self, state: TicTacToeState) -> bool:
        """True when a player has three in a row or the board is full."""
        return _WINS[state.x] or _WINS[state.o] or (state.x | state.o) == FULL

    def outcome(self, state: TicTacToeState) -> float:
        """-1 if the opponent of the player to move has three in a row, else 0 (draw); a
        ValueError for a state that is not terminal."""
        if not self.is_terminal(state):
            raise ValueError("outcome of a tic-tac-toe position that is not over")
        mine, theirs = (state.x, state.o) if state.player == 0 else (state.o, state.x)
        if _WINS[theirs]:
            return -1.0
        return 1.0 if _WINS[mine] else 0.0

    def observation(self, state: TicTacToeState) -> np.ndarray:
        """Float32 `[2, 3, 3]`: plane 0 the mover's marks, plane 1 the opponent's."""
        mine, theirs = (state.x, state.o) if state.player == 0 else (state.o, state.x)
        planes = np.empty((2, 9), np.float32)
        planes[0] = _PLANES[mine]
        planes[1] = _PLANES[theirs]
        return planes.reshape(2, 3, 3)

    def symmetries(
        self, planes: np.ndarray, policy: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The 8 dihedral copies of `(planes [C, 3, 3], policy [9])`, the identity first.

        Copy k moves cell `SYMMETRY_PERMUTATIONS[k][j]` to cell `j` in every plane and in the
        policy, so the pair stays consistent. The arrays returned are new (never views).
        """
        channels = planes.shape[0]
        flat = planes.reshape(channels, 9)
        return [
            (flat[:, perm].reshape(channels, 3, 3), policy[list(perm)])
            for perm in SYMMETRY_PERMUTATIONS
        ]

    def render(self, state: TicTacToeState) -> str:
        """Three lines of `X`, `O` and `.`, top row first, e.g. `"X . O\\n. X .\\n. . O"`."""
        cells = ["X" if state.x >> a & 1 else "O" if state.o >> a & 1 else "." for a in range(9)]
        return "\n".join(" ".join(cells[row * 3 : row * 3 + 3]) for row in range(3))

    def format_action(self, action: int) -> str:
        """The cell number 1-9 of `action` 0-8."""
        return str(int(action) + 1)

    def parse_action(self, text: str) -> int:
        """The action of one cell number `"1"`..`"9"`.

        Raises:
            IllegalMoveError: `text` is not a cell number 1-9.
        """
        cell = text.strip()
        if len(cell) != 1 or cell not in "123456789":
            raise IllegalMoveError(
                f"'{text}' is not a tic-tac-toe cell; valid: 1-9, row by row from the top left"
            )
        return int(cell) - 1

    def parse_moves(self, line: str) -> list[int]:
        """The actions of a sequence of cell numbers: `"159"`, `"1 5 9"` or `"1,5,9"`.

        Only the notation is checked here; `bellman.games.base.play_moves` checks legality.

        Raises:
            IllegalMoveError: a character is not a cell number 1-9 (the message says which move).
        """
        cells = [c for c in line if not c.isspace() and c != ","]
        actions = []
        for number, cell in enumerate(cells, start=1):
            try:
                actions.append(self.parse_action(cell))
            except IllegalMoveError as error:
                raise IllegalMoveError(f"move {number}: {error}") from None
        return actions
