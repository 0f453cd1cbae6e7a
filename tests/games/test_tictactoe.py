"""Tic-tac-toe: rules, notation, observation planes, symmetries and the exact value of the game."""

from __future__ import annotations

import numpy as np
import pytest

from bellman.games.base import IllegalMoveError, play_moves
from bellman.games.tictactoe import LINES, SYMMETRY_PERMUTATIONS, TicTacToe, TicTacToeState
from bellman.search.alphabeta import PerfectPlayer, solved_values

GAME = TicTacToe()


def position(moves: str) -> TicTacToeState:
    """The state after a move string in cell notation, e.g. "159"."""
    return play_moves(GAME, GAME.parse_moves(moves))


def test_protocol_attributes_and_empty_board():
    state = GAME.initial_state()
    assert (GAME.name, GAME.action_size, GAME.board_shape) == ("tictactoe", 9, (3, 3))
    assert GAME.observation_shape == (2, 3, 3)
    assert GAME.to_play(state) == 0
    assert GAME.legal_actions(state) == list(range(9))
    assert GAME.legal_mask(state).dtype == bool and GAME.legal_mask(state).all()
    assert not GAME.is_terminal(state)


@pytest.mark.parametrize("line", LINES)
def test_three_in_a_row_wins_for_x(line):
    cells = [a for a in range(9) if line >> a & 1]
    others = [a for a in range(9) if not line >> a & 1][:2]  # two O marks cannot make a line
    moves = [cells[0], others[0], cells[1], others[1], cells[2]]
    state = play_moves(GAME, moves)
    assert GAME.is_terminal(state)
    assert GAME.to_play(state) == 1 and GAME.outcome(state) == -1.0  # O to move has lost
    assert GAME.legal_actions(state) == [] and not GAME.legal_mask(state).any()


def test_o_wins_and_the_game_ends_before_the_board_is_full():
    state = position("142596")  # X: 1 2 9, O: 4 5 6
    assert GAME.is_terminal(state)
    assert GAME.to_play(state) == 0 and GAME.outcome(state) == -1.0  # X to move has lost
    with pytest.raises(IllegalMoveError, match="after the game has ended"):
        GAME.apply(state, 8)
    with pytest.raises(IllegalMoveError, match="move 7 .* after the game has ended"):
        position("1425963")


def test_full_board_without_a_line_is_a_draw():
    state = position("123546879")
    assert GAME.render(state) == "X O X\nX O O\nO X X"
    assert GAME.is_terminal(state) and GAME.outcome(state) == 0.0
    assert not GAME.is_terminal(position("12354687"))


def test_occupied_cell_is_illegal_and_the_message_lists_the_legal_cells():
    state = position("5")
    with pytest.raises(IllegalMoveError, match="cell 5 is occupied; legal cells: 1 2 3 4 6 7 8 9"):
        GAME.apply(state, 4)
    with pytest.raises(IllegalMoveError, match=r"move 2 \(5\) is illegal; legal: 1 2 3 4 6 7 8 9"):
        play_moves(GAME, GAME.parse_moves("55"))
    with pytest.raises(IllegalMoveError, match="not a cell"):
        GAME.apply(state, 9)


def test_apply_returns_a_new_state_and_positions_are_values():
    empty = GAME.initial_state()
    after = GAME.apply(empty, 4)
    assert empty == TicTacToeState() and after != empty
    assert position("1539") == position("3519")  # same marks, same player to move
    assert hash(position("1539")) == hash(position("3519"))
    assert len({position("15"), position("15"), position("51")}) == 2


def test_notation_round_trip_and_errors():
    assert GAME.parse_moves("159") == [0, 4, 8]
    assert GAME.parse_moves("1 5, 9") == [0, 4, 8]
    assert GAME.parse_moves("") == []
    assert GAME.format_action(0) == "1" and GAME.format_action(8) == "9"
    for action in range(9):
        assert GAME.parse_action(GAME.format_action(action)) == action
    for bad in ["0", "x", "10", ""]:
        with pytest.raises(IllegalMoveError, match="valid: 1-9"):
            GAME.parse_action(bad)
    with pytest.raises(IllegalMoveError, match="move 2: '0' is not a tic-tac-toe cell"):
        GAME.parse_moves("10")


def test_observation_is_from_the_movers_point_of_view():
    x_to_move = GAME.observation(position("15"))
    assert x_to_move.dtype == np.float32 and x_to_move.shape == (2, 3, 3)
    assert x_to_move[0].ravel().tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]  # X's marks
    assert x_to_move[1].ravel().tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]  # O's marks
    o_to_move = GAME.observation(position("1"))
    assert o_to_move[0].sum() == 0 and o_to_move[1].ravel()[0] == 1


def test_render_shows_x_o_and_empty_cells():
    assert GAME.render(position("153")) == "X . X\n. O .\n. . ."


def test_symmetries_equal_the_positions_reached_by_transformed_moves():
    moves = GAME.parse_moves("1962")  # no symmetry of the square fixes this position
    state = play_moves(GAME, moves)
    policy = np.arange(9, dtype=np.float64) / 36.0
    copies = GAME.symmetries(GAME.observation(state), policy)
    assert len(copies) == 8
    assert np.array_equal(copies[0][0], GAME.observation(state))  # identity first
    assert np.array_equal(copies[0][1], policy)
    seen = set()
    for perm, (planes, transformed_policy) in zip(SYMMETRY_PERMUTATIONS, copies, strict=True):
        moved = [perm.index(a) for a in moves]  # where each move's cell goes
        assert np.array_equal(planes, GAME.observation(play_moves(GAME, moved)))
        for a in range(9):  # the policy moves with the board
            assert transformed_policy[perm.index(a)] == policy[a]
        seen.add(planes.tobytes())
    assert len(seen) == 8


def test_symmetries_return_new_arrays():
    planes = GAME.observation(position("1"))
    policy = np.full(9, 1 / 9)
    for new_planes, new_policy in GAME.symmetries(planes, policy):
        new_planes[...] = -1
        new_policy[...] = -1
    assert planes.min() == 0 and policy.min() > 0


def test_empty_board_is_a_draw_with_perfect_play():
    assert PerfectPlayer(GAME).value(GAME.initial_state()) == 0.0
    # Against a corner opening, the centre is O's only move that does not lose.
    values = solved_values(GAME, position("1"))
    assert np.isnan(values[0])
    assert values[1:].tolist() == [-1, -1, -1, 0, -1, -1, -1, -1]
