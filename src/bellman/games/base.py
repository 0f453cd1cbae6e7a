"""The `Game` protocol: two-player, zero-sum, perfect-information games with alternating moves.

Search (`search/mcts.py`) and AlphaZero (`zero/`) see a game only through this protocol, so
tic-tac-toe, Connect Four and Go are interchangeable. Conventions every implementation follows:

- A state is an immutable, hashable value (equal positions with equal history compare equal).
  `apply` returns a new state and never mutates its argument.
- Players are 0 (moves first) and 1; they alternate strictly (in Go a pass is a move).
- Actions are integers in a fixed range `[0, action_size)`; `legal_mask` is a boolean mask over it.
- Values are from the point of view of the player to move: `outcome(state)` of a terminal state is
  +1 if the player to move there has won, -1 if lost, 0 for a draw. (In tic-tac-toe and Connect Four
  the player to move at a terminal state has either lost or drawn.)
- `observation(state)` is float32 planes `[C, H, W]` from the mover's point of view (the mover's
  stones first), so one network plays both sides.
- `symmetries(planes, policy)` returns `(planes, policy)` pairs for every symmetry of the board,
  the identity first, for data augmentation: `policy` is a probability vector `[A]`.
- Text: `format_action(a)` writes an action in the game's notation (tic-tac-toe cells 1-9 row by
  row, Connect Four columns 1-7, Go GTP coordinates such as `D4` or `pass`); `parse_moves(line)`
  reads a whole move sequence from the empty board (`"4453"`, `"D4 E5 pass"`) into actions, and
  `parse_action(text)` one action. Malformed text raises `IllegalMoveError` naming what is valid.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from bellman.errors import BellmanError


class IllegalMoveError(BellmanError):
    """A malformed or illegal move, in any game's notation."""


class Game(Protocol):
    """What search and self-play need from a board game (see the module docstring)."""

    name: str
    action_size: int
    board_shape: tuple[int, int]
    observation_shape: tuple[int, int, int]

    def initial_state(self) -> Any:
        """The empty board, player 0 to move."""

    def to_play(self, state: Any) -> int:
        """The player to move: 0 or 1."""

    def legal_mask(self, state: Any) -> np.ndarray:
        """Boolean mask `[A]` of the legal actions (all False at a terminal state)."""

    def legal_actions(self, state: Any) -> list[int]:
        """The legal actions in increasing order."""

    def apply(self, state: Any, action: int) -> Any:
        """The state after the player to move plays `action`; raises IllegalMoveError if illegal."""

    def is_terminal(self, state: Any) -> bool:
        """True when the game is over."""

    def outcome(self, state: Any) -> float:
        """+1 / -1 / 0 for the player to move at terminal `state` (win / loss / draw); raises
        ValueError for a state that is not terminal."""

    def observation(self, state: Any) -> np.ndarray:
        """Float32 planes `[C, H, W]` from the mover's point of view."""

    def symmetries(
        self, planes: np.ndarray, policy: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every symmetric copy of `(planes [C,H,W], policy [A])`, the identity first."""

    def render(self, state: Any) -> str:
        """A text picture of the board for the terminal."""

    def format_action(self, action: int) -> str:
        """`action` in the game's notation."""

    def parse_action(self, text: str) -> int:
        """One action from the game's notation; IllegalMoveError when malformed."""

    def parse_moves(self, line: str) -> list[int]:
        """A move sequence from the empty board; IllegalMoveError when malformed."""


def play_moves(game: Game, moves: list[int]) -> Any:
    """The state reached from the empty board by `moves`; IllegalMoveError names the bad move."""
    state = game.initial_state()
    for number, action in enumerate(moves, start=1):
        if not 0 <= action < game.action_size:
            raise IllegalMoveError(
                f"move {number} is action {action}, outside [0, {game.action_size})"
            )
        move = f"move {number} ({game.format_action(action)})"
        if game.is_terminal(state):
            raise IllegalMoveError(f"{move} comes after the game has ended")
        if not game.legal_mask(state)[action]:
            legal = " ".join(game.format_action(a) for a in game.legal_actions(state))
            raise IllegalMoveError(f"{move} is illegal; legal: {legal}")
        state = game.apply(state, action)
    return state
