"""Alpha-beta search and exact solving over the `Game` protocol: the classical baselines.

Knuth and Moore, "An analysis of alpha-beta pruning", Artificial Intelligence 6, 1975. In negamax
form (every value is from the point of view of the player to move, so a child's value is negated),
with D the depth of the root call and d the depth left:

    negamax(s, d, alpha, beta):
    1.  if s is terminal:  return outcome(s) * (1 + d) / (1 + D)
    2.  if d == 0:         return heuristic(s) / (1 + D)
    3.  v = -inf
        for a in legal(s):
    4.      v = max(v, -negamax(apply(s, a), d - 1, -beta, -alpha))
    5.      alpha = max(alpha, v)
    6.      if alpha >= beta: break          (cut-off: the opponent will not allow s)
        return v

Value scale. Values lie in [-1, 1], for the player to move. A game that ends inside the search is
worth its outcome scaled by (1 + d) / (1 + D): a win now (at the root, d = D) is 1, a win at the
search horizon (d = 0) is 1 / (1 + D); so of two wins the faster scores higher, and of two losses
the slower. The heuristic, in (-1, 1), is scaled by 1 / (1 + D), so every proven win ranks above
every heuristic estimate and every proven loss below. With D = 0 the value is just `heuristic(s)`
(or `outcome(s)` at a terminal state). The sign of a value at or beyond +-1 / (1 + D) is the
game-theoretic result; a value strictly between comes from the heuristic (or is a draw, 0).

`PerfectPlayer` and `solved_values` solve small games exactly (tic-tac-toe: 5,478 positions) by
full negamax memoised on the state, with exact values in {-1, 0, +1}; the perfect player prefers
the fastest win and the slowest loss and breaks the remaining ties at random with its seed.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from bellman.errors import ConfigError
from bellman.games.base import Game, IllegalMoveError

Heuristic = Callable[[Any], float]
"""heuristic(state) -> an estimate in (-1, 1) of the value for the player to move at `state`."""

_TIE_WINDOW = 1e-9
"""The root searches each move with alpha this far below the best value so far, so a move that
ties with the best gets an exact value rather than a bound (`AlphaBetaPlayer` breaks ties)."""


def alphabeta(
    game: Game, state: Any, depth: int, *, heuristic: Heuristic | None = None
) -> tuple[float, int | None]:
    """The negamax value of `state` searched `depth` plies deep, and a best move.

    Args:
        game: the game.
        state: the position to search.
        depth: plies to search, >= 0; at depth 0 a non-terminal state is scored by `heuristic`.
        heuristic: estimate in (-1, 1) for the player to move at a state; default: 0 everywhere.

    Returns:
        `(value, action)`: the value for the player to move at `state` (scale in the module
        docstring) and the first best legal move in `legal_actions` order; action is None at a
        terminal state or at depth 0.

    Raises:
        ConfigError: `depth` is negative or not an integer.
        ValueError: the heuristic returned a value outside (-1, 1).
    """
    values = _root_values(game, state, depth, heuristic)
    if isinstance(values, float):
        return values + 0.0, None
    best = max(values.values())
    return best + 0.0, next(a for a, v in values.items() if v == best)  # + 0.0: no -0.0


class AlphaBetaPlayer:
    """Plays the best move of a depth-limited alpha-beta search, ties broken at random.

    Args:
        game: the game.
        depth: plies searched per move, >= 1.
        heuristic: estimate in (-1, 1) for the player to move; default: 0 everywhere.
        seed: seed of the generator breaking ties among equally valued moves.
    """

    def __init__(self, game: Game, depth: int, heuristic: Heuristic | None = None, seed: int = 0):
        if not _is_int(depth) or depth < 1:
            raise ConfigError(f"depth = {depth!r} is invalid; valid: an integer >= 1 (plies)")
        self.game = game
        self.depth = int(depth)
        self.heuristic = heuristic
        self.rng = np.random.default_rng(seed)

    def act(self, state: Any) -> int:
        """A best move at the non-terminal `state`.

        Raises:
            IllegalMoveError: `state` is terminal.
        """
        values = _root_values(self.game, state, self.depth, self.heuristic)
        if isinstance(values, float):
            raise IllegalMoveError("the game is over: there is no move to play")
        best = max(values.values())
        return int(self.rng.choice([a for a, v in values.items() if v == best]))


class PerfectPlayer:
    """The exact minimax player for small games: a full solve memoised on the state.

    Among the moves of the best exact value it prefers the fastest win and the slowest loss; the
    remaining ties are broken at random with `seed`. On tic-tac-toe it never loses.

    Args:
        game: the game (small enough to solve: every reachable state is stored).
        seed: seed of the generator breaking ties.
    """

    def __init__(self, game: Game, seed: int = 0):
        self.game = game
        self.solver = _solver_for(game)
        self.rng = np.random.default_rng(seed)

    def value(self, state: Any) -> float:
        """The exact value of `state` for the player to move: +1 win, 0 draw, -1 loss."""
        return self.solver.solve(state)[0]

    def action_values(self, state: Any) -> np.ndarray:
        """Float64 `[A]`: the exact value of each legal move for the mover; NaN if illegal."""
        return self.solver.action_values(state)

    def act(self, state: Any) -> int:
        """A perfect move at the non-terminal `state`.

        Raises:
            IllegalMoveError: `state` is terminal.
        """
        game = self.game
        if game.is_terminal(state):
            raise IllegalMoveError("the game is over: there is no move to play")
        ranked = {}
        for action in game.legal_actions(state):
            value, plies = self.solver.solve(game.apply(state, action))
            ranked[action] = _preference(-value, plies + 1)
        best = max(ranked.values())
        return int(self.rng.choice([a for a, key in ranked.items() if key == best]))


def solved_values(game: Game, state: Any) -> np.ndarray:
    """Float64 `[A]`: the exact negamax value of each legal move at `state`; NaN if illegal.

    Values are +1 / 0 / -1 (win / draw / loss with perfect play) for the player to move at
    `state`. The solutions are memoised per game object, so repeated calls are cheap.
    """
    return _solver_for(game).action_values(state)


class _Solver:
    """Exact negamax with a transposition table: state -> (value, plies to the end)."""

    def __init__(self, game: Game):
        self.game = game
        self.memo: dict[Any, tuple[float, int]] = {}

    def solve(self, state: Any) -> tuple[float, int]:
        """(exact value for the mover, plies to the end under the preferred perfect line)."""
        known = self.memo.get(state)
        if known is not None:
            return known
        game = self.game
        if game.is_terminal(state):
            result = (float(game.outcome(state)), 0)
        else:
            best_key = None
            for action in game.legal_actions(state):
                value, plies = self.solve(game.apply(state, action))
                key = _preference(-value, plies + 1)
                if best_key is None or key > best_key:
                    best_key, result = key, (0.0 - value, plies + 1)  # 0.0 - 0.0 is not -0.0
        self.memo[state] = result
        return result

    def action_values(self, state: Any) -> np.ndarray:
        """Exact value of each legal move `[A]`, NaN for illegal moves."""
        values = np.full(self.game.action_size, np.nan)
        for action in self.game.legal_actions(state):
            values[action] = 0.0 - self.solve(self.game.apply(state, action))[0]
        return values


def _preference(value: float, plies: int) -> tuple[float, int]:
    """Sort key of a move reaching `value` in `plies`: best value, then fast wins, slow losses."""
    return value, (-plies if value > 0 else plies if value < 0 else 0)


_SOLVERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _solver_for(game: Game) -> _Solver:
    """The memoised solver of `game` (a fresh one when the game object cannot be a weak key)."""
    try:
        solver = _SOLVERS.get(game)
        if solver is None:
            solver = _SOLVERS[game] = _Solver(game)
        return solver
    except TypeError:  # unhashable or not weak-referenceable
        return _Solver(game)


def _root_values(
    game: Game, state: Any, depth: int, heuristic: Heuristic | None
) -> float | dict[int, float]:
    """The value of every legal move at the root, or the state's value when there is no move.

    Moves whose value ties or beats the best so far get exact values; the others get upper
    bounds (which are below the best, so the best moves and their ties are exact).
    """
    if not _is_int(depth) or depth < 0:
        raise ConfigError(f"depth = {depth!r} is invalid; valid: an integer >= 0 (plies)")
    scale = 1.0 / (1 + depth)
    if game.is_terminal(state):
        return float(game.outcome(state))
    if depth == 0:
        return _score(heuristic, state, scale)
    values = {}
    best = -math.inf
    for action in game.legal_actions(state):
        alpha = best - _TIE_WINDOW
        child = game.apply(state, action)
        value = -_negamax(game, child, depth - 1, -math.inf, -alpha, heuristic, scale)
        values[action] = value
        best = max(best, value)
    return values


def _negamax(
    game: Game,
    state: Any,
    depth: int,
    alpha: float,
    beta: float,
    heuristic: Heuristic | None,
    scale: float,
) -> float:
    """Fail-soft negamax with alpha-beta pruning (steps 1-6 of the module docstring)."""
    # 1. A finished game: its outcome, worth more the sooner it comes.
    if game.is_terminal(state):
        return game.outcome(state) * (1 + depth) * scale
    # 2. The horizon: the heuristic estimate, below every proven result.
    if depth == 0:
        return _score(heuristic, state, scale)
    # 3.-6. The best move for the mover, cutting off once the opponent would avoid this state.
    value = -math.inf
    for action in game.legal_actions(state):
        child = game.apply(state, action)
        value = max(value, -_negamax(game, child, depth - 1, -beta, -alpha, heuristic, scale))
        alpha = max(alpha, value)
        if alpha >= beta:
            break
    return value


def _score(heuristic: Heuristic | None, state: Any, scale: float) -> float:
    """The scaled heuristic value of a non-terminal state at the search horizon."""
    if heuristic is None:
        return 0.0
    estimate = float(heuristic(state))
    if not -1.0 < estimate < 1.0:
        raise ValueError(f"heuristic returned {estimate}; it must lie in (-1, 1)")
    return estimate * scale


def _is_int(value: Any) -> bool:
    """True for Python and numpy integers (not bools)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
