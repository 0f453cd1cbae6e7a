"""Tests for Connect Four: hand-made wins, draws and errors, and Pascal Pons' labelled positions."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bellman.games.base import IllegalMoveError, play_moves
from bellman.games.connect4 import Connect4, Connect4State, four_in_a_row

DATA = Path(os.environ.get("BELLMAN_CONNECT4_DATA", "/work/shared/data/connect4"))
GAME = Connect4()


def play(line: str) -> Connect4State:
    return play_moves(GAME, GAME.parse_moves(line))


def read_positions(name: str) -> list[list[str]]:
    """The rows of one of Pons' test files (`MOVES SCORE [s1 .. s7]`), split into fields."""
    path = DATA / name
    if not path.exists():
        pytest.skip(f"Connect Four test data not found at {path}")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_notation():
    assert GAME.parse_moves("4453") == [3, 3, 4, 2]
    assert GAME.parse_moves(" 4 4 ") == [3, 3]
    assert GAME.parse_moves("") == []
    assert GAME.format_action(3) == "4"
    assert GAME.parse_action(" 7 ") == 6
    for action in range(7):
        assert GAME.parse_action(GAME.format_action(action)) == action


@pytest.mark.parametrize("bad", ["0", "8", "x", "12", ""])
def test_parse_action_rejects_malformed_text(bad):
    with pytest.raises(IllegalMoveError, match="valid: 1-7"):
        GAME.parse_action(bad)


def test_parse_moves_names_the_bad_character():
    with pytest.raises(IllegalMoveError, match=r"character 3 \('8'\).*valid: 1-7"):
        GAME.parse_moves("448")


@pytest.mark.parametrize(
    ("line", "direction"),
    [
        ("1122334", "horizontal"),
        ("1212121", "vertical"),
        ("44534525315", "diagonal /"),
        ("33223224435", "diagonal \\"),
    ],
)
def test_four_in_a_row_wins(line, direction):
    before = play(line[:-1])
    assert not GAME.is_terminal(before), direction
    assert GAME.winning_moves(before) == [int(line[-1]) - 1]
    assert GAME.can_win_now(before)
    after = play(line)
    assert GAME.is_terminal(after)
    assert GAME.outcome(after) == -1.0  # the player to move has lost
    assert not GAME.legal_mask(after).any()
    assert GAME.legal_actions(after) == []
    with pytest.raises(IllegalMoveError, match="over"):
        GAME.apply(after, 0)


def test_three_in_a_row_is_not_a_win():
    state = play("112233")
    assert not GAME.is_terminal(state)
    assert not four_in_a_row(state.position ^ state.mask)
    # The sentinel bit keeps columns apart: the top three cells of column 1 and the bottom cell
    # of column 2 are consecutive cells but not a vertical line.
    assert not four_in_a_row(0b111 << 3 | 1 << 7)
    assert four_in_a_row(0b1111 << 2)


# A full board without four, X moving first:
#   O X O X O X O         row 6 (top)
#   O X O X O X O
#   O X O X O X O
#   X O X O X O X
#   X O X O X O X
#   X O X O X O X         row 1
# Along every line the colour changes at each step except once between rows 3 and 4.
DRAW = "121211313132232323545454454545767676676767"


def test_full_board_without_four_is_a_draw():
    moves = GAME.parse_moves(DRAW)
    assert len(moves) == 42
    state = play_moves(GAME, moves[:-1])
    assert not GAME.is_terminal(state)
    assert GAME.legal_actions(state) == [6]
    state = GAME.apply(state, 6)
    assert state.moves == 42
    assert GAME.render(state).splitlines()[0] == "O X O X O X O"
    assert GAME.is_terminal(state)
    assert GAME.outcome(state) == 0.0
    assert not GAME.legal_mask(state).any()


def test_outcome_of_a_game_in_progress_is_an_error():
    with pytest.raises(ValueError):
        GAME.outcome(play("44"))


def test_move_into_a_full_column_lists_the_legal_columns():
    state = play("444444")
    assert GAME.legal_actions(state) == [0, 1, 2, 4, 5, 6]
    assert not GAME.legal_mask(state)[3]
    with pytest.raises(IllegalMoveError, match="column 4 is full; legal columns: 1 2 3 5 6 7"):
        GAME.apply(state, 3)
    with pytest.raises(IllegalMoveError, match=r"move 7 \(4\) is illegal; legal: 1 2 3 5 6 7"):
        play("4444444")
    with pytest.raises(IllegalMoveError, match="out of range"):
        GAME.apply(state, 7)


def test_apply_does_not_mutate_and_states_are_values():
    state = play("4453")
    snapshot = copy.deepcopy(state)
    child = GAME.apply(state, 0)
    assert state == snapshot and child != state
    assert hash(play("4453")) == hash(state)
    assert play("4453") == state
    assert play("4354") == state  # a transposition reaches the same position


def test_observation_planes_and_render():
    state = play("4453")  # X: 4, 5; O: 4 (on top of X), 3; X to move
    obs = GAME.observation(state)
    assert obs.shape == GAME.observation_shape == (2, 6, 7) and obs.dtype == np.float32
    mine, theirs = np.zeros((6, 7)), np.zeros((6, 7))
    mine[5, 3] = mine[5, 4] = 1  # row 5 is the bottom row
    theirs[4, 3] = theirs[5, 2] = 1
    np.testing.assert_array_equal(obs[0], mine)
    np.testing.assert_array_equal(obs[1], theirs)
    # After one more move the planes swap roles: O is now the mover.
    swapped = GAME.observation(GAME.apply(state, 0))
    np.testing.assert_array_equal(swapped[1, 5, 0], 1)
    np.testing.assert_array_equal(swapped[0], theirs)
    picture = GAME.render(state).splitlines()
    assert picture[-1] == "1 2 3 4 5 6 7"
    assert picture[-2] == ". . O X X . ."
    assert picture[-3] == ". . . O . . ."
    assert len(picture) == 7


def test_symmetries_are_identity_and_mirror():
    state = play("1123")
    planes = GAME.observation(state)
    policy = np.arange(7, dtype=np.float32) / 21
    (same_planes, same_policy), (mirror_planes, mirror_policy) = GAME.symmetries(planes, policy)
    np.testing.assert_array_equal(same_planes, planes)
    np.testing.assert_array_equal(same_policy, policy)
    np.testing.assert_array_equal(mirror_planes, GAME.observation(play("7765")))
    np.testing.assert_array_equal(mirror_policy, policy[::-1])


def test_heuristic_range_and_preferences():
    assert GAME.heuristic(play("")) == 0.0
    assert GAME.heuristic(play("112233")) == 0.95  # X to move wins at once
    assert GAME.heuristic(play("1122334")) == -1.0  # terminal: the mover has lost
    assert GAME.heuristic(play(DRAW)) == 0.0  # terminal: a draw
    # O to move, X has ".XXX." on the bottom row: two threats, O cannot block both.
    assert GAME.heuristic(play("37475")) == -0.9
    # One threat only (X has 1-2-3 on the edge): bad for O but not lost.
    assert -0.9 < GAME.heuristic(play("17273")) < 0.0
    # A centre stone is better than an edge stone for the player who owns it.
    assert GAME.heuristic(play("4")) < 0 < GAME.heuristic(play("41"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=42))
def test_random_games_keep_the_invariants(choices):
    state = GAME.initial_state()
    for choice in choices:
        if GAME.is_terminal(state):
            break
        legal = GAME.legal_actions(state)
        assert legal == list(np.flatnonzero(GAME.legal_mask(state)))
        snapshot = copy.deepcopy(state)
        child = GAME.apply(state, legal[choice % len(legal)])
        assert state == snapshot
        assert child.moves == state.moves + 1
        assert GAME.to_play(child) != GAME.to_play(state)
        obs = GAME.observation(child)
        assert obs.sum() == child.moves and not (obs[0] * obs[1]).any()
        value = GAME.heuristic(child)
        assert -1 < value < 1 or GAME.is_terminal(child)
        state = child


# ----- Pascal Pons' benchmark positions --------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Test_L1_R1", "Test_L1_R2", "Test_L1_R3", "Test_L2_R1", "Test_L2_R2", "Test_L3_R1"],
)
def test_every_benchmark_position_parses_and_is_playable(name):
    rows = read_positions(name)
    assert len(rows) == 1000
    for moves, score in rows:
        actions = GAME.parse_moves(moves)
        assert [GAME.format_action(a) for a in actions] == list(moves)
        state = play_moves(GAME, actions)
        assert not GAME.is_terminal(state), moves
        assert state.moves == len(moves)
        # The score's magnitude is at most the number of stones the mover has left to play.
        assert abs(int(score)) <= (43 - state.moves) // 2


@pytest.mark.parametrize("name", ["Test_L3_R1.labels", "Test_L2_R1.labels", "Test_L2_R2.labels"])
def test_labels_agree_with_legality_and_immediate_wins(name):
    """Full columns are exactly those labelled -1000, and the immediate wins are exactly the moves
    with the largest score possible: winning with the next stone scores `(43 - moves) // 2`
    (Pons' `22 - stones the mover will have played`), and any later win scores less. Likewise a
    move after which the opponent wins at once scores exactly `-((43 - (moves + 1)) // 2)`.
    """
    decisive = 0
    for moves, _, *labels in read_positions(name):
        state = play(moves)
        scores = [int(label) for label in labels]
        assert [score != -1000 for score in scores] == list(GAME.legal_mask(state)), moves
        win_now = (43 - state.moves) // 2
        assert GAME.winning_moves(state) == [c for c, s in enumerate(scores) if s == win_now]
        assert GAME.can_win_now(state) == (win_now in scores)
        for col in GAME.legal_actions(state):
            child = GAME.apply(state, col)
            if GAME.is_terminal(child):  # a win, or a draw on the last cell
                assert scores[col] == (win_now if col in GAME.winning_moves(state) else 0)
                continue
            loses_now = -((43 - child.moves) // 2)
            assert GAME.can_win_now(child) == (scores[col] == loses_now), (moves, col)
            decisive += scores[col] == loses_now
    assert decisive > 0


def test_observations_of_a_batch_equal_one_at_a_time():
    game = Connect4()
    rng = np.random.default_rng(0)
    states, state = [], game.initial_state()
    for _ in range(200):
        if game.is_terminal(state):
            state = game.initial_state()
        states.append(state)
        state = game.apply(state, int(rng.choice(game.legal_actions(state))))
    batch = game.observations(states)
    assert batch.dtype == np.float32 and batch.shape == (200, 2, 6, 7)
    np.testing.assert_array_equal(batch, np.stack([game.observation(s) for s in states]))
