"""Alpha-beta and the exact solver on tic-tac-toe: agreement, wins in one, heuristics, ties."""

from __future__ import annotations

import numpy as np
import pytest

from bellman.errors import ConfigError
from bellman.games.base import IllegalMoveError, play_moves
from bellman.games.tictactoe import TicTacToe
from bellman.search.alphabeta import AlphaBetaPlayer, PerfectPlayer, alphabeta, solved_values

TTT = TicTacToe()


def position(moves: str):
    """A tic-tac-toe state from cell notation, e.g. "1425"."""
    return play_moves(TTT, TTT.parse_moves(moves))


def random_positions(count: int, seed: int = 0) -> list:
    """`count` non-terminal positions reached by random legal moves (1 to 7 of them)."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < count:
        state = TTT.initial_state()
        for _ in range(int(rng.integers(1, 8))):
            state = TTT.apply(state, int(rng.choice(TTT.legal_actions(state))))
            if TTT.is_terminal(state):
                break
        if not TTT.is_terminal(state):
            positions.append(state)
    return positions


@pytest.mark.parametrize("state", random_positions(25))
def test_full_depth_alphabeta_agrees_with_the_perfect_player(state):
    values = solved_values(TTT, state)
    value, action = alphabeta(TTT, state, 9)
    assert np.sign(value) == PerfectPlayer(TTT).value(state)
    assert values[action] == np.nanmax(values)  # its move is a perfect move
    assert values[AlphaBetaPlayer(TTT, 9).act(state)] == np.nanmax(values)
    assert values[PerfectPlayer(TTT).act(state)] == np.nanmax(values)


def test_solved_values_mark_illegal_moves_nan():
    values = solved_values(TTT, position("15"))
    assert np.isnan(values[[0, 4]]).all() and not np.isnan(np.delete(values, [0, 4])).any()


def test_finds_the_win_in_one_and_scales_it_by_the_depth_left():
    state = position("1425")  # X: 1 2, O: 4 5; X wins at 3, anything else loses to 6
    assert alphabeta(TTT, state, 9) == (pytest.approx(9 / 10), 2)  # win with 8 plies left
    assert alphabeta(TTT, state, 1) == (pytest.approx(1 / 2), 2)
    assert alphabeta(TTT, state, 2)[0] == pytest.approx(2 / 3)
    for seed in range(5):
        assert AlphaBetaPlayer(TTT, 3, seed=seed).act(state) == 2
        assert PerfectPlayer(TTT, seed=seed).act(state) == 2


def test_the_perfect_player_prefers_the_fastest_win():
    # X: 1 5, O: 2 3, X to move: 9 wins now; 4 and 7 also win, later (a double threat).
    state = position("1253")
    values = solved_values(TTT, state)
    assert values[8] == 1 and (values == 1).sum() > 1
    for seed in range(5):
        assert PerfectPlayer(TTT, seed=seed).act(state) == 8
        assert AlphaBetaPlayer(TTT, 5, seed=seed).act(state) == 8


def test_forced_results_are_scaled_by_when_they_come():
    value, _ = alphabeta(TTT, position("12"), 9)  # O's adjacent edge reply loses by force
    assert 0 < value < 9 / 10  # a win, but not at once
    # X: 1 4 5 threatens 6, 7 and 9; whatever O does, X wins at ply 2 (7 plies left of 9).
    assert alphabeta(TTT, position("12534"), 9)[0] == pytest.approx(-8 / 10)
    assert PerfectPlayer(TTT).value(position("12534")) == -1


def test_depth_limited_search_uses_the_heuristic():
    def centre(state):
        """-0.5 for the mover when the opponent holds the centre, else 0."""
        opponent = state.o if state.player == 0 else state.x
        return -0.5 if opponent >> 4 & 1 else 0.0

    empty = TTT.initial_state()
    assert alphabeta(TTT, empty, 0, heuristic=lambda state: 0.3) == (0.3, None)
    # One ply: taking the centre leaves O at -0.5, worth 0.5 / (1 + 1) to X.
    assert alphabeta(TTT, empty, 1, heuristic=centre) == (pytest.approx(0.25), 4)
    assert alphabeta(TTT, empty, 1) == (0.0, 0)  # default heuristic: 0, first move
    assert AlphaBetaPlayer(TTT, 1, heuristic=centre).act(empty) == 4


def test_heuristic_never_outranks_a_proven_result():
    state = position("1425")
    value, action = alphabeta(TTT, state, 3, heuristic=lambda state: 0.99)
    assert (value, action) == (pytest.approx(3 / 4), 2)


def test_ties_are_broken_at_random_with_the_seed():
    empty = TTT.initial_state()
    moves = {AlphaBetaPlayer(TTT, 1, seed=seed).act(empty) for seed in range(20)}
    assert len(moves) > 3  # all 9 moves tie at depth 1 with no heuristic
    player, again = AlphaBetaPlayer(TTT, 1, seed=4), AlphaBetaPlayer(TTT, 1, seed=4)
    assert [player.act(empty) for _ in range(5)] == [again.act(empty) for _ in range(5)]
    corners = {PerfectPlayer(TTT, seed=seed).act(position("1")) for seed in range(5)}
    assert corners == {4}  # the only move that draws


def test_terminal_and_invalid_inputs():
    over = position("14253")
    assert alphabeta(TTT, over, 3) == (-1.0, None)
    assert alphabeta(TTT, position("123546879"), 2) == (0.0, None)
    with pytest.raises(IllegalMoveError, match="game is over"):
        AlphaBetaPlayer(TTT, 2).act(over)
    with pytest.raises(IllegalMoveError, match="game is over"):
        PerfectPlayer(TTT).act(over)
    with pytest.raises(ConfigError, match=r"depth = -1 is invalid; valid: an integer >= 0"):
        alphabeta(TTT, TTT.initial_state(), -1)
    with pytest.raises(ConfigError, match=r"depth = 0 is invalid; valid: an integer >= 1"):
        AlphaBetaPlayer(TTT, 0)
    with pytest.raises(ValueError, match=r"heuristic returned 1.5"):
        alphabeta(TTT, TTT.initial_state(), 1, heuristic=lambda state: 1.5)


def test_the_perfect_player_never_loses():
    rng = np.random.default_rng(0)
    for game in range(20):
        perfect = PerfectPlayer(TTT, seed=game)
        perfect_side = game % 2
        state = TTT.initial_state()
        while not TTT.is_terminal(state):
            if TTT.to_play(state) == perfect_side:
                action = perfect.act(state)
            else:
                action = int(rng.choice(TTT.legal_actions(state)))
            state = TTT.apply(state, action)
        loser = TTT.to_play(state) if TTT.outcome(state) < 0 else None
        assert loser != perfect_side
    state = TTT.initial_state()
    while not TTT.is_terminal(state):  # perfect against perfect: a draw
        state = TTT.apply(state, PerfectPlayer(TTT, seed=1).act(state))
    assert TTT.outcome(state) == 0
