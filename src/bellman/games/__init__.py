"""Two-player board games behind one protocol (`Game`), and a registry of them by name.

`make_game("connect4")` builds a game from its name; `GAMES` maps every name to a factory that
takes no arguments. Names: `tictactoe`, `connect4`, `go9`, `go13`, `go19` (Go with komi 7.5 and
the default move cap; build `Go(size, komi=..., max_moves=...)` directly for other settings).
"""

from __future__ import annotations

from collections.abc import Callable

from bellman.errors import unknown
from bellman.games.base import Game, IllegalMoveError, play_moves
from bellman.games.connect4 import Connect4
from bellman.games.go import Go


def _tictactoe() -> Game:
    # Imported here so that this registry does not depend on tictactoe.py at import time.
    from bellman.games.tictactoe import TicTacToe

    return TicTacToe()


GAMES: dict[str, Callable[[], Game]] = {
    "tictactoe": _tictactoe,
    "connect4": Connect4,
    "go9": lambda: Go(9),
    "go13": lambda: Go(13),
    "go19": lambda: Go(19),
}
"""Every game name and a factory that builds the game with its default settings."""


def make_game(name: str) -> Game:
    """The game called `name` (see `GAMES`).

    Raises:
        ConfigError: `name` is not a known game (the message suggests the closest name).
    """
    if name not in GAMES:
        raise unknown("game", name, GAMES)
    return GAMES[name]()


__all__ = ["GAMES", "Connect4", "Game", "Go", "IllegalMoveError", "make_game", "play_moves"]
