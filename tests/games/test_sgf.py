"""SGF read and write: worked examples, round trips for every game, the main line of a record
with variations, and every malformed or illegal record refused with one SgfError."""

from __future__ import annotations

import numpy as np
import pytest

from bellman.games import IllegalMoveError, make_game, play_moves
from bellman.games.sgf import SgfError, parse_sgf, read_sgf, read_sgf_file, to_sgf


def _random_game(name: str, seed: int, limit: int = 400) -> list[int]:
    game, rng = make_game(name), np.random.default_rng(seed)
    state, moves = game.initial_state(), []
    while not game.is_terminal(state) and len(moves) < limit:
        action = int(rng.choice(game.legal_actions(state)))
        moves.append(action)
        state = game.apply(state, action)
    return moves


def test_a_go_record_written_as_the_standard_says():
    game = make_game("go9")
    moves = game.parse_moves("E5 D5 pass C3 E4 pass pass")
    text = to_sgf(game, moves, black="bell]man", white="gnugo", date="2026-12-05")
    assert text == (
        "(;FF[4]CA[UTF-8]AP[bellman]GM[1]SZ[9]KM[7.5]RU[Tromp-Taylor]PB[bell\\]man]PW[gnugo]"
        "RE[W+7.5]DT[2026-12-05];B[ee];W[de];B[];W[cg];B[ef];W[];B[])\n"
    )  # E5 is column e, row 5 from the bottom = 5th from the top: 'ee'; C3 is 'cg'


def test_a_worked_go_record_from_elsewhere():
    # FF[3] style: tt for pass, lower-case letters in identifiers, comments, a komi of 6.5
    text = "(;GaMe[1]SZ[9]KM[6.5]PB[x]C[first \\] line\\\nsecond];B[ee];W[cc]C[hi];B[tt];W[aa])"
    record = read_sgf(text)
    assert record.game.name == "go9" and record.game.komi == 6.5
    assert record.moves == [4 * 9 + 4, 2 * 9 + 2, 81, 0]
    assert record.properties["C"] == "first ] linesecond"
    assert record.properties["PB"] == "x"


def test_captures_replay_as_the_rules_say():
    # black captures the white stone on A9 (aa) with B9 and A8: the point is empty after
    game = make_game("go9")
    text = "(;GM[1]SZ[9];B[ba];W[aa];B[ab])"
    record = read_sgf(text, "go9")
    state = play_moves(game, record.moves)
    assert state.board[0] == 0 and state.captures == (1, 0)


@pytest.mark.parametrize("name", ["go9", "connect4", "tictactoe"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_of_random_games(name: str, seed: int):
    game = make_game(name)
    moves = _random_game(name, seed)
    record = read_sgf(to_sgf(game, moves), name)
    assert record.moves == moves
    assert play_moves(record.game, record.moves) == play_moves(game, moves)


def test_connect_four_cells_are_where_the_stones_land():
    game = make_game("connect4")
    text = to_sgf(game, game.parse_moves("4453"), date="")
    assert text.endswith(";B[df];W[de];B[ef];W[cf])\n")  # row f is the bottom row
    assert "SZ[7:6]" in text and "BELLMANGAME[connect4]" in text
    with pytest.raises(SgfError, match="lands on 'de', not 'dc'"):
        read_sgf(text.replace("W[de]", "W[dc]"))


def test_only_the_main_line_of_variations_is_read():
    nodes = parse_sgf("(;SZ[9](;B[aa];W[bb](;B[cc])(;B[dd]))(;B[ee]))")
    assert [node.get("B", node.get("W")) for node in nodes[1:]] == [["aa"], ["bb"], ["cc"]]


def test_the_result_of_a_finished_game():
    game = make_game("tictactoe")
    assert "RE[B+]" in to_sgf(game, [0, 3, 1, 4, 2])
    assert "RE[W+R]" in to_sgf(make_game("go9"), [40], result="W+R")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", "must start with '\\(;'"),
        ("(;GM[1]SZ[9];B[ee]", "unbalanced"),
        ("(;GM[1]SZ[9];B[ee", "never closed"),
        ("(;GM[1]SZ[9];[ee])", "unexpected .\\[."),
        ("(;GM[1]SZ[9];B[ee]W)", "no upper-case name or no \\[value\\]"),
        ("(;GM[1]SZ[9];B[ee]B[dd])", "appears twice"),
        ("(;GM[1]SZ[9];B[ee]$)", "unexpected '\\$'"),
        ("(;GM[2]SZ[8])", "not Go"),
        ("(;GM[1]SZ[7])", "SZ\\[7\\]"),
        ("(;GM[1]SZ[nine])", "SZ\\[nine\\]"),
        ("(;GM[1]SZ[19];B[aa])", "go19 game, not go9"),
        ("(;GM[1]SZ[9]AB[aa][bb];W[ee])", "setup stones"),
        ("(;BELLMANGAME[connect4]SZ[7:6];W[df])", "W plays out of turn"),
        ("(;GM[1]SZ[9];B[ee]W[dd])", "both B and W"),
        ("(;GM[1]SZ[9];B[ee];W[ee])", "occupied"),
        ("(;GM[1]SZ[9];B[ba];W[ee];B[ab];W[aa])", "suicide"),
        ("(;GM[1]SZ[9];B[zz])", "'zz' is not a point of the 9x9 board"),
        ("(;BELLMANGAME[chess])", "valid: tictactoe, connect4"),
        ("(;BELLMANGAME[connect4]SZ[7])", "not SZ\\[7:6\\]"),
    ],
)
def test_malformed_or_illegal_records_are_refused(text: str, expected: str):
    with pytest.raises(SgfError, match=expected):
        read_sgf(text, "go9" if "GM[1]" in text else None)


def test_two_go_moves_of_one_colour_in_a_row():
    """Setup or handicap stones sent as moves: B E5, B D4 (no white pass between), then W."""
    game = make_game("go9")
    moves, players = game.parse_moves("E5 D4 C3"), [0, 0, 1]
    text = to_sgf(game, moves, players=players, date="")
    assert text.endswith(";B[ee];B[df];W[cg])\n")
    record = read_sgf(text, "go9")
    assert (record.moves, record.players) == (moves, players)
    state = game.set_to_play(game.apply(game.initial_state(), moves[0]), 0)
    state = game.apply(game.apply(state, moves[1]), moves[2])
    assert state.board.count(1) == 2 and state.board.count(2) == 1 and state.moves == 3
    with pytest.raises(IllegalMoveError, match="move 2 \\(E5\\) is illegal"):
        to_sgf(game, [40, 40], players=[0, 0])
    with pytest.raises(SgfError, match="W plays out of turn"):
        read_sgf("(;BELLMANGAME[tictactoe]SZ[3];W[bb])")


def test_superko_in_a_record_is_refused():
    # black takes the ko at ee (capturing de); white's immediate retake at de would recreate
    # the position before black's capture
    ko = "(;GM[1]SZ[9];B[dd];W[ed];B[ce];W[fe];B[df];W[ef];B[aa];W[de];B[ee]"
    assert len(read_sgf(ko + ")").moves) == 9
    with pytest.raises(SgfError, match="SGF move 10 \\(D5\\).*superko"):
        read_sgf(ko + ";W[de])")


def test_files(tmp_path):
    path = tmp_path / "game.sgf"
    path.write_text(to_sgf(make_game("go9"), [40, 41]))
    assert read_sgf_file(path, "go9").moves == [40, 41]
    path.write_text("(;GM[1]SZ[9];B[zz])")
    with pytest.raises(SgfError, match="game.sgf: SGF move 1"):
        read_sgf_file(path)
    with pytest.raises(OSError):
        read_sgf_file(tmp_path / "missing.sgf")


def test_self_play_games_are_exported_as_sgf(tmp_path):
    from bellman import api

    settings = ["steps=10", "simulations=2", "blocks=1", "channels=8", "value_hidden=8",
                "games_per_iteration=3", "batch_size=8", "replay_window=64", "train_steps=1",
                "arena_games=0", "gating=false", "sgf_every=2"]  # fmt: skip
    run = api.train("alphazero", "tictactoe", overrides=settings, run_dir=tmp_path / "r",
                    quiet=True)  # fmt: skip
    files = sorted((run.dir / "games").glob("*.sgf"))
    assert [f.name for f in files] == ["selfplay-0000000.sgf", "selfplay-0000002.sgf"]
    rows = (run.dir / "episodes.csv").read_text().split()[1:]  # episode,step,return,length
    lengths = [int(row.split(",")[3]) for row in rows]
    for path in files:  # each record replays to a finished game of the logged length
        record = read_sgf_file(path, "tictactoe")
        state = play_moves(record.game, record.moves)
        assert record.game.is_terminal(state)
        assert len(record.moves) == lengths[int(path.stem.split("-")[1])]
