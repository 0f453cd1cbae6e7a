"""Tests for Go: hand-made captures, suicide, ko and superko, scoring, notation, and properties of
random games checked against an independent flood fill (hypothesis)."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

from bellman.errors import ConfigError
from bellman.games.base import IllegalMoveError, play_moves
from bellman.games.go import Go, GoState

GO9 = Go(9)


def play(line: str, game: Go = GO9) -> GoState:
    return play_moves(game, game.parse_moves(line))


def at(state: GoState, point: str, game: Go = GO9) -> str:
    """What stands on `point`: '.', 'X' (black) or 'O' (white)."""
    return ".XO"[state.board[game.parse_action(point)]]


def assert_illegal(state: GoState, point: str, reason: str, game: Go = GO9) -> None:
    action = game.parse_action(point)
    assert not game.legal_mask(state)[action]
    assert action not in game.legal_actions(state)
    with pytest.raises(IllegalMoveError, match=reason):
        game.apply(state, action)


# ----- construction, notation, rendering -------------------------------------------------------


@pytest.mark.parametrize("size", [9, 13, 19])
def test_sizes_and_shapes(size):
    game = Go(size)
    assert game.name == f"go{size}"
    assert game.action_size == size * size + 1 == game.pass_action + 1
    assert game.board_shape == (size, size)
    assert game.observation_shape == (6, size, size)
    assert game.max_moves == 2 * size * size  # the documented default move cap
    state = game.initial_state()
    assert game.legal_actions(state) == list(range(size * size + 1))
    assert game.to_play(state) == 0


@pytest.mark.parametrize("size", [0, 7, 10, 21, "9", True])
def test_unsupported_size_is_a_config_error(size):
    with pytest.raises(ConfigError, match="valid sizes: 9, 13, 19"):
        Go(size)


@pytest.mark.parametrize(("komi", "max_moves"), [(math.nan, None), ("7.5", None), (7.5, 0)])
def test_bad_komi_or_move_cap_is_a_config_error(komi, max_moves):
    with pytest.raises(ConfigError):
        Go(9, komi=komi, max_moves=max_moves)


def test_gtp_notation():
    assert GO9.parse_action("A1") == 72  # bottom-left: row 8 from the top
    assert GO9.parse_action("J9") == 8  # top-right
    assert GO9.parse_action("d4") == GO9.parse_action(" D4 ") == 5 * 9 + 3
    assert GO9.parse_action("PASS") == GO9.parse_action("pass") == 81
    assert GO9.parse_moves("D4 E5 pass") == [48, 40, 81]
    assert GO9.parse_moves("D4,E5, pass") == GO9.parse_moves("d4 e5 PASS")
    assert GO9.parse_moves("") == []
    assert Go(19).parse_action("T19") == 18
    assert Go(19).format_action(342) == "A1" and Go(19).format_action(360) == "T1"
    for game in (GO9, Go(13)):
        for action in range(game.action_size):
            assert game.parse_action(game.format_action(action)) == action


@pytest.mark.parametrize("bad", ["I5", "K5", "A10", "A0", "Z", "5D", "", "passe", "D4D4"])
def test_malformed_points_name_what_is_valid(bad):
    with pytest.raises(IllegalMoveError, match=r"valid: a column A-J \(no I\).*1-9.*or pass"):
        GO9.parse_action(bad)


def test_parse_moves_names_the_bad_move():
    with pytest.raises(IllegalMoveError, match="move 2: 'I3' is not a point"):
        GO9.parse_moves("D4 I3 pass")


def test_render_draws_stones_with_coordinates():
    lines = GO9.render(play("A1 J9")).splitlines()
    assert lines[0] == lines[-1] == "   A B C D E F G H J"
    assert lines[1] == " 9 . . . . . . . . O 9"
    assert lines[9] == " 1 X . . . . . . . . 1"
    assert len(lines) == 11


# ----- captures, suicide, ko ------------------------------------------------------------------


def test_single_stone_capture():
    state = play("C5 D5 D6 A1 D4 B1")
    assert at(state, "D5") == "O"
    state = GO9.apply(state, GO9.parse_action("E5"))
    assert at(state, "D5") == "." and at(state, "E5") == "X"
    assert state.captures == (1, 0)


def test_group_capture():
    # White D5-E5 surrounded by C5 D6 E6 F5 D4 E4.
    state = play("C5 D5 D6 E5 E6 A1 D4 B1 E4 C1")
    assert at(state, "D5") == at(state, "E5") == "O"
    state = GO9.apply(state, GO9.parse_action("F5"))
    assert at(state, "D5") == at(state, "E5") == "."
    assert state.captures == (2, 0)
    # The points are free again: white may play there (D5 is not suicide: it has E5).
    assert GO9.legal_mask(state)[GO9.parse_action("D5")]


def test_corner_capture():
    state = play("A2 A1 B1")
    assert at(state, "A1") == "." and state.captures == (1, 0)
    assert at(state, "A2") == at(state, "B1") == "X"


def test_suicide_is_illegal():
    state = play("A2 J9 B1")  # white to move; A1 would have no liberty and captures nothing
    assert_illegal(state, "A1", "A1 is suicide")
    # For black, A1 fills its own eye but keeps liberties through A2 and B1: legal.
    assert GO9.legal_mask(GO9.apply(state, GO9.parse_action("J8")))[GO9.parse_action("A1")]


def test_multi_stone_suicide_is_illegal():
    # White A1 then A2 would form a two-stone group with no liberty inside black's wall.
    state = play("B1 A1 B2 J9 A3")
    assert_illegal(state, "A2", "suicide")


def test_a_move_that_captures_is_not_suicide():
    # White A2 and B1 each have A1 as their last liberty; black A1 has none of its own.
    state = play("A3 A2 B2 B1 C1 pass")
    action = GO9.parse_action("A1")
    assert GO9.legal_mask(state)[action]
    state = GO9.apply(state, action)
    assert at(state, "A1") == "X" and at(state, "A2") == at(state, "B1") == "."
    assert state.captures == (2, 0)


KO = "C5 E6 D6 F5 D4 E4 J9 D5 E5"  # black E5 has just taken the white stone on D5


def test_simple_ko_recapture_is_illegal_at_once_and_legal_after_moves_elsewhere():
    state = play(KO)
    assert at(state, "D5") == "." and state.captures == (1, 0)
    assert_illegal(state, "D5", r"repeat an earlier position \(superko\)")
    # A ko threat elsewhere and an answer elsewhere: the recapture makes a new position.
    state = play(KO + " A1 J1")
    action = GO9.parse_action("D5")
    assert GO9.legal_mask(state)[action]
    state = GO9.apply(state, action)
    assert at(state, "E5") == "." and state.captures == (1, 1)
    # ... and now black may not retake at once.
    assert_illegal(state, "E5", "superko")


def test_positional_superko_forbids_a_non_capturing_repeat():
    """'Send two, return one': white E9 takes F9, black F9 takes D9-E9, and white D9 (which
    captures nothing and is not suicide) would recreate the position before E9."""
    position = "C9 D9 D8 F8 E8 G8 F9 G9 pass"
    state = play(position + " E9 F9")
    assert at(state, "D9") == at(state, "E9") == "." and state.captures == (2, 1)
    assert_illegal(state, "D9", "superko")
    # The move is illegal only because of the history: forgetting it makes D9 legal, and the
    # board it makes is exactly the one before E9.
    forgetful = replace(state, history=frozenset({state.zobrist}))
    assert GO9.legal_mask(forgetful)[GO9.parse_action("D9")]
    repeated = GO9.apply(forgetful, GO9.parse_action("D9"))
    before = play(position)
    assert repeated.board == before.board and repeated.zobrist == before.zobrist


def test_set_to_play_gives_the_move_without_a_move_or_a_pass():
    """Two black stones in a row (setup stones): the board, the move count and the superko
    history stay; a pass then answered by the same colour does not end the game."""
    state = play("E5")
    black_again = GO9.set_to_play(state, 0)
    assert GO9.to_play(black_again) == 0 and GO9.set_to_play(state, 1) is state
    assert (black_again.board, black_again.moves, black_again.history) == (
        state.board, state.moves, state.history)  # fmt: skip
    assert GO9.observation(black_again)[4].max() == 0.0  # black's planes, black's stones first
    assert GO9.observation(black_again)[0].sum() == 1.0
    two = GO9.apply(black_again, GO9.parse_action("D4"))
    assert at(two, "E5") == at(two, "D4") == "X" and GO9.to_play(two) == 1 and two.moves == 2
    # pass, then the same colour again and pass: one pass each time, the game goes on
    passed = GO9.apply(two, GO9.pass_action)
    again = GO9.apply(GO9.set_to_play(passed, 1), GO9.pass_action)
    assert again.passes == 1 and not GO9.is_terminal(again)
    assert GO9.is_terminal(GO9.apply(again, GO9.pass_action))  # answered by black: over
    # superko still sees the whole history: the ko retake stays illegal for either mover
    ko = play("D6 E6 C5 F5 D4 E4 A1 D5 E5")
    assert_illegal(ko, "D5", "superko")
    assert_illegal(GO9.set_to_play(GO9.set_to_play(ko, 0), 1), "D5", "superko")
    with pytest.raises(ValueError, match="0 \\(black\\) or 1"):
        GO9.set_to_play(state, 2)
    with pytest.raises(IllegalMoveError, match="game is over"):
        GO9.set_to_play(play("pass pass"), 1)


def test_occupied_point_and_out_of_range_actions_raise():
    state = play("E5")
    assert_illegal(state, "E5", "E5 is occupied")
    with pytest.raises(IllegalMoveError, match="out of range; valid: 0-81"):
        GO9.apply(state, 82)
    with pytest.raises(IllegalMoveError, match=r"move 2 \(E5\) is illegal"):
        play("E5 E5")


# ----- end of game and scoring ----------------------------------------------------------------


def test_two_consecutive_passes_end_the_game():
    assert not GO9.is_terminal(play("pass"))
    assert not GO9.is_terminal(play("pass E5 pass"))  # a move in between resets the count
    state = play("pass E5 pass pass")
    assert GO9.is_terminal(state)
    assert GO9.legal_actions(state) == [] and not GO9.legal_mask(state).any()
    with pytest.raises(IllegalMoveError, match="over"):
        GO9.apply(state, GO9.pass_action)
    with pytest.raises(ValueError):
        GO9.outcome(play("pass"))


WALLS = " ".join(f"C{row} D{row}" for row in range(1, 10))  # black column C, white column D


def setup(black: str, white: str = "", to_play: int = 0) -> GoState:
    """Setup stones (GTP points) and the colour to move."""
    state = GO9.initial_state()
    for player, points in ((0, black), (1, white)):
        for point in points.split():
            state = GO9.apply(GO9.set_to_play(state, player), GO9.parse_action(point))
    return GO9.set_to_play(state, to_play)


def eyes(state: GoState) -> set[str]:
    return {GO9.format_action(int(p)) for p in np.flatnonzero(GO9.own_eyes(state))}


def test_own_eyes_follow_the_simple_rule_diagonals_included():
    ring = "D5 F5 E4 E6"
    assert eyes(setup(ring)) == {"E5"}
    assert eyes(setup(ring, "D6")) == {"E5"}  # one opponent diagonal: still an eye mid-board
    assert eyes(setup(ring, "D6 F4")) == set()  # two: a false eye
    assert eyes(setup(ring, to_play=1)) == set()  # black's eye, not white's
    assert eyes(setup("A2 B1")) == {"A1"}  # a corner
    assert eyes(setup("A2 B1", "B2")) == set()  # ... with no opponent diagonal allowed
    assert eyes(setup("D1 F1 E2")) == {"E1"}  # an edge
    assert eyes(setup("D1 F1 E2", "D2")) == set()


def test_a_playout_never_fills_its_own_eye_and_passes_only_when_nothing_else_is_left():
    ring = setup("D5 F5 E4 E6", "A9")
    mask = GO9.playout_mask(ring)
    legal = GO9.legal_mask(ring)
    e5 = GO9.parse_action("E5")
    assert legal[e5] and not mask[e5] and legal[GO9.pass_action] and not mask[GO9.pass_action]
    assert (mask | np.eye(GO9.action_size, dtype=bool)[e5] | np.eye(GO9.action_size,
            dtype=bool)[GO9.pass_action] == legal).all()  # fmt: skip
    # a black group filling the board but for its two eyes A1 and C1: black may play there
    # (it keeps a liberty), but a playout passes; white may not play there at all
    points = [GO9.format_action(p) for p in range(81)]
    full = setup(" ".join(p for p in points if p not in ("A1", "C1")))
    assert GO9.legal_mask(full)[[GO9.parse_action("A1"), GO9.parse_action("C1")]].all()
    assert np.flatnonzero(GO9.playout_mask(full)).tolist() == [GO9.pass_action]
    assert np.flatnonzero(GO9.playout_mask(GO9.set_to_play(full, 1))).tolist() == [
        GO9.pass_action]  # fmt: skip
    over = GO9.apply(GO9.apply(full, GO9.pass_action), GO9.pass_action)
    assert not GO9.playout_mask(over).any()


def test_tromp_taylor_area_scoring():
    # Black: 9 stones + columns A-B (18) = 27. White: 9 stones + columns E-J (45) = 54.
    state = play(WALLS + " pass pass")
    assert GO9.is_terminal(state)
    assert GO9.score(state) == 27 - 54 - 7.5 == -34.5
    assert GO9.to_play(state) == 0 and GO9.outcome(state) == -1.0  # black to move, black lost
    # A white stone on A5 makes columns A-B neutral (they reach both colours): 9 - 55 - 7.5.
    state = play(WALLS + " pass A5 pass pass")
    assert GO9.score(state) == 9 - 55 - 7.5 == -53.5
    assert GO9.to_play(state) == 0 and GO9.outcome(state) == -1.0
    # A black stone inside black's own area changes nothing but puts white to move at the end.
    state = play(WALLS + " B5 pass pass")
    assert GO9.score(state) == -34.5
    assert GO9.to_play(state) == 1 and GO9.outcome(state) == 1.0  # white to move, white won


def test_komi_goes_to_white():
    assert GO9.score(play("pass pass")) == -7.5
    assert GO9.outcome(play("pass pass")) == -1.0  # black to move has lost by komi
    no_komi = Go(9, komi=0)
    assert no_komi.score(play("pass pass", no_komi)) == 0.0
    assert no_komi.outcome(play("pass pass", no_komi)) == 0.0  # a tie
    state = play("E5 pass pass")  # one black stone owns the board
    assert GO9.score(state) == 81 - 7.5
    assert GO9.to_play(state) == 1 and GO9.outcome(state) == -1.0
    assert Go(9, komi=100).score(state) == 81 - 100


def test_move_cap_ends_and_scores_the_game():
    game = Go(9, max_moves=3)
    state = play("E5 D5 E6", game)
    assert game.is_terminal(state)
    assert game.legal_actions(state) == []
    with pytest.raises(IllegalMoveError, match="over"):
        game.apply(state, 0)
    assert game.score(state) == GO9.score(state)
    assert game.outcome(state) in (-1.0, 0.0, 1.0)
    assert not game.is_terminal(play("E5 D5", game))


# ----- observation and symmetries -------------------------------------------------------------


def test_observation_planes():
    state = play(KO)  # white to move; D5 is empty but forbidden to white by the ko
    obs = GO9.observation(state)
    assert obs.shape == (6, 9, 9) and obs.dtype == np.float32
    board = np.frombuffer(state.board, dtype=np.uint8).reshape(9, 9)
    np.testing.assert_array_equal(obs[0], board == 2)  # mover = white
    np.testing.assert_array_equal(obs[1], board == 1)
    banned = np.zeros(81)
    banned[GO9.parse_action("D5")] = 1
    np.testing.assert_array_equal(obs[2].ravel(), banned)
    assert not obs[3].any()  # the last move was not a pass
    assert obs[4].all()  # the mover is white
    assert obs[5].all()
    after_pass = GO9.observation(GO9.apply(state, GO9.pass_action))
    assert after_pass[3].all() and not after_pass[4].any()
    np.testing.assert_array_equal(after_pass[0], board == 1)
    assert not after_pass[2].any()  # black may play anywhere empty


def dihedral_action(game: Go, action: int, k: int) -> int:
    """Where symmetry `k` (k % 4 quarter turns as numpy.rot90, then a mirror if k >= 4) sends
    `action`; computed here independently of the implementation."""
    if action == game.pass_action:
        return action
    n = game.size
    board = np.rot90(np.arange(n * n).reshape(n, n), k % 4)
    if k >= 4:
        board = board[:, ::-1]
    return int(np.flatnonzero(board.ravel() == action)[0])


def test_symmetries_turn_a_one_hot_policy_like_the_board():
    game = Go(9)
    planes = game.observation(play("A9"))  # a black stone in the top-left corner
    policy = np.zeros(82, dtype=np.float32)
    policy[game.parse_action("B9")] = 0.75
    policy[81] = 0.25
    copies = game.symmetries(planes, policy)
    assert len(copies) == 8
    assert copies[0][0] is planes and copies[0][1] is policy
    corners = set()
    for k, (new_planes, new_policy) in enumerate(copies):
        assert new_planes.shape == planes.shape and new_policy.shape == policy.shape
        assert new_policy[81] == 0.25
        assert new_policy[dihedral_action(game, game.parse_action("B9"), k)] == 0.75
        stone = int(np.flatnonzero(new_planes[1].ravel())[0])  # black is the opponent now
        assert stone == dihedral_action(game, game.parse_action("A9"), k)
        corners.add(stone)
        assert (new_planes[3:] == planes[3:]).all()
    assert corners == {0, 8, 72, 80}


# ----- properties of random games -------------------------------------------------------------


def random_game(game: Go, choices: list[int]) -> tuple[list[GoState], list[int]]:
    """The states and actions of a game whose i-th move is legal move `choices[i] % count`."""
    states, actions = [game.initial_state()], []
    for choice in choices:
        state = states[-1]
        if game.is_terminal(state):
            break
        legal = game.legal_actions(state)
        action = legal[choice % len(legal)]
        states.append(game.apply(state, action))
        actions.append(action)
    return states, actions


def groups_and_liberties(board: np.ndarray) -> list[tuple[int, set, set]]:
    """Independent flood fill on an `[N, N]` board: (colour, stones, liberties) per group."""
    n = board.shape[0]
    seen: set = set()
    groups = []
    for start in zip(*np.nonzero(board), strict=True):
        if start in seen:
            continue
        colour, stones, liberties, stack = board[start], {start}, set(), [start]
        while stack:
            r, c = stack.pop()
            for point in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if not (0 <= point[0] < n and 0 <= point[1] < n):
                    continue
                if board[point] == 0:
                    liberties.add(point)
                elif board[point] == colour and point not in stones:
                    stones.add(point)
                    stack.append(point)
        seen |= stones
        groups.append((colour, stones, liberties))
    return groups


# Long enough that captures happen in almost every game (random 9x9 play captures by move ~60).
MOVES = st.lists(st.integers(0, 10**6), min_size=60, max_size=160)


@settings(max_examples=60, deadline=None)
@given(MOVES)
def test_random_games_keep_the_rules_invariants(choices):
    game = Go(9)
    states, actions = random_game(game, choices)
    target(sum(states[-1].captures), label="stones captured")
    placed = [0, 0]
    for number, (state, action, child) in enumerate(
        zip(states[:-1], actions, states[1:], strict=True)
    ):
        mover = number % 2
        board = np.frombuffer(child.board, dtype=np.uint8).reshape(9, 9)
        # Every group on the board has a liberty.
        for _, stones, liberties in groups_and_liberties(board):
            assert liberties, (stones, game.render(child))
        # Stones on the board = stones placed - stones captured by the other side.
        if action != game.pass_action:
            placed[mover] += 1
        assert int((board == 1).sum()) == placed[0] - child.captures[1]
        assert int((board == 2).sum()) == placed[1] - child.captures[0]
        removed = state.board.count(2 - mover) - child.board.count(2 - mover)
        assert child.captures[mover] - state.captures[mover] == removed
        assert child.captures[1 - mover] == state.captures[1 - mover]
        # History and hash bookkeeping.
        assert child.moves == state.moves + 1
        assert child.zobrist in child.history and state.history <= child.history
        assert child.passes == (state.passes + 1 if action == game.pass_action else 0)
    # The fast legality test agrees with `apply` on every empty point of the last position.
    last = states[-1]
    if not game.is_terminal(last):
        mask = game.legal_mask(last)
        for point in range(81):
            try:
                game.apply(last, point)
                assert mask[point], game.format_action(point)
            except IllegalMoveError:
                assert not mask[point], game.format_action(point)


@settings(max_examples=25, deadline=None)
@given(MOVES)
def test_apply_never_mutates_and_equal_histories_give_equal_states(choices):
    game = Go(9)
    states, actions = random_game(game, choices[:60])
    snapshots = [copy.deepcopy(state) for state in states]
    for state, action in zip(states[:-1], actions, strict=True):
        game.apply(state, action)
        for point in range(0, 81, 7):  # illegal attempts must not mutate either
            try:
                game.apply(state, point)
            except IllegalMoveError:
                pass
    assert states == snapshots
    again = play_moves(game, actions)
    assert again == states[-1] and hash(again) == hash(states[-1])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 26), min_size=1, max_size=10, unique=True),
    st.lists(st.integers(54, 80), min_size=10, max_size=10, unique=True),
    st.randoms(use_true_random=False),
)
def test_transpositions_reach_the_same_position_and_hash(black, white, rng):
    """Black plays in rows 9-7, white in rows 3-1 (never touching, so no capture), in two orders:
    the boards and their Zobrist hashes agree; the histories (and so the states) differ."""
    white = white[: len(black)]
    order = [a for pair in zip(black, white, strict=True) for a in pair]
    shuffled_black, shuffled_white = black[:], white[:]
    rng.shuffle(shuffled_black)
    rng.shuffle(shuffled_white)
    other = [a for pair in zip(shuffled_black, shuffled_white, strict=True) for a in pair]
    first, second = play_moves(GO9, order), play_moves(GO9, other)
    assert first.board == second.board
    assert first.zobrist == second.zobrist
    assert first.captures == second.captures == (0, 0)
    assert (first == second) == (order == other)
    assert first.zobrist != GO9.initial_state().zobrist


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 10**6), max_size=70))
def test_symmetric_games_give_symmetric_observations(choices):
    """Playing the k-th transform of every move gives the k-th transform of the observation
    (the ko/suicide plane and the tactical planes included) and of the legal-move mask."""
    game = Go(9, features="tactical")
    states, actions = random_game(game, choices)
    obs = game.observation(states[-1])
    mask = game.legal_mask(states[-1]).astype(np.float32)
    copies = game.symmetries(obs, mask)
    for k, (planes, policy) in enumerate(copies):
        moved = play_moves(game, [dihedral_action(game, a, k) for a in actions])
        np.testing.assert_array_equal(game.observation(moved), planes, err_msg=f"k={k}")
        np.testing.assert_array_equal(game.legal_mask(moved), policy.astype(bool))
        assert game.score(moved) == game.score(states[-1])


def test_remembered_legal_points_equal_a_fresh_computation():
    # Go remembers the legal points of recent states (by identity); over a long random game,
    # both colours to move at each position and more states than it keeps, every answer is the
    # one computed afresh
    game = Go(9)
    rng = np.random.default_rng(0)
    states: list[GoState] = []
    while len(states) <= 600:
        game_states, _ = random_game(game, [int(c) for c in rng.integers(0, 10**6, size=150)])
        live = [s for s in game_states if not game.is_terminal(s)]
        states += live + [game.set_to_play(s, 1 - game.to_play(s)) for s in live]
    for _ in range(2):
        for state in states:
            assert game._legal_points(state) == game._find_legal_points(state)
    assert copy.deepcopy(game)._legal_points(states[-1]) == game._find_legal_points(states[-1])


TACTICAL = Go(9, features="tactical")


def tactical(state: GoState) -> dict[str, list[int]]:
    """The tactical planes set at each point (GTP names), numbered as the module docstring."""
    planes = TACTICAL.observation(state)[6:].reshape(13, 81)
    return {TACTICAL.format_action(p): [6 + int(k) for k in np.flatnonzero(planes[:, p])]
            for p in range(81) if planes[:, p].any()}  # fmt: skip


def test_tactical_planes_of_a_hand_made_corner():
    # black B1 and the eye J9 (H9 J8); white A1 (in atari), B2, A3; black to move.
    # A2 captures A1 and leaves black A2 one liberty, the captured point: capture 1 (12),
    # liberties after move 1 (15). C1 joins B1 (one liberty, C1) to liberties D1 C2 (16).
    # J9 is legal but black's own eye: no sensibleness (18). White's E5 eye is suicide for
    # black: nothing at all there.
    state = setup("B1 H9 J8", "A1 B2 A3 D5 F5 E4 E6")
    planes = tactical(state)
    assert planes["B1"] == [6] and planes["A1"] == [9] and planes["B2"] == [11]
    assert planes["A3"] == [11] and planes["H9"] == [8]
    assert planes["A2"] == [12, 15, 18]
    assert planes["C1"] == [16, 18]
    assert planes["J9"] == [17] and "E5" not in planes
    assert planes["E1"] == [17, 18]  # an ordinary empty point: 3+ liberties, sensible
    assert TACTICAL.observation_shape == (19, 9, 9) and GO9.observation_shape == (6, 9, 9)
    np.testing.assert_array_equal(TACTICAL.observation(state)[:6], GO9.observation(state))
    # from white's side the colours swap: B1 is the opponent's stone in atari
    assert tactical(TACTICAL.set_to_play(state, 1))["B1"] == [9]
    with pytest.raises(ConfigError, match="valid: board, tactical"):
        Go(9, features="ladders")


@settings(max_examples=20, deadline=None)
@given(MOVES)
def test_tactical_planes_agree_with_playing_each_move(choices):
    """Capture size and liberties after move at every legal point are what `apply` and an
    independent flood fill of the resulting board give; every stone's liberty plane is its
    group's."""
    states, _ = random_game(TACTICAL, choices)
    state = states[-1]
    if TACTICAL.is_terminal(state):
        return
    planes = TACTICAL.observation(state)[6:].reshape(13, 81)
    board = np.frombuffer(state.board, dtype=np.uint8).reshape(9, 9)
    mover = 1 + state.mover
    for colour, stones, liberties in groups_and_liberties(board):
        offset = 6 if colour == mover else 9
        for r, c in stones:
            assert planes[offset - 6: offset - 3, r * 9 + c].tolist() == [
                float(min(len(liberties), 3) == b) for b in (1, 2, 3)]  # fmt: skip
    legal = TACTICAL.legal_mask(state)
    for point in range(81):
        if not legal[point]:
            assert not planes[6:, point].any()
            continue
        child = TACTICAL.apply(state, point)
        captured = state.board.count(3 - mover) - child.board.count(3 - mover)
        after = np.frombuffer(child.board, dtype=np.uint8).reshape(9, 9)
        group = next(g for g in groups_and_liberties(after) if divmod(point, 9) in g[1])
        expected = [float(min(captured, 3) == b) for b in (1, 2, 3)]
        expected += [float(min(len(group[2]), 3) == b) for b in (1, 2, 3)]
        assert planes[6:12, point].tolist() == expected, TACTICAL.format_action(point)
        assert planes[12, point] == float(not TACTICAL.own_eyes(state)[point])
