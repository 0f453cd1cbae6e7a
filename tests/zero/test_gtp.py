"""GTP v2 conformance: the engine's answers command by command (ids, comments, errors that do
not end the session, illegal moves of every kind), `bellman gtp` through a pipe, a full game
against another GTP engine (GnuGo when installed, else a small fake engine), and
`bellman data gnugo`."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from bellman import api
from bellman.errors import CheckpointError, ConfigError
from bellman.games import Go
from bellman.games.sgf import read_sgf_file
from bellman.zero.go_players import load_go_player
from bellman.zero.gtp import (
    COMMANDS,
    GtpClient,
    GtpEngine,
    GtpError,
    LocalClient,
    gnugo_command,
    gnugo_file_name,
    gnugo_games,
    play_against_gnugo,
    play_gnugo_games,
    play_match_game,
    result_of_score,
)
from tests.conftest import run_process

GNUGO = shutil.which("gnugo") or shutil.which("gnugo", path="/usr/games")
needs_gnugo = pytest.mark.skipif(
    GNUGO is None, reason="gnugo is not installed (Debian's gnugo package: `make gnugo`)"
)


def _first_legal(game: Go):
    return lambda state: game.legal_actions(state)[0]


def _engine() -> GtpEngine:
    game = Go(9)
    return GtpEngine(_first_legal(game), game, version="0.1.0")


def _talk(engine: GtpEngine, *lines: str) -> list[str]:
    return [engine.handle(line) for line in lines]


def test_the_administrative_commands():
    engine = _engine()
    answers = _talk(engine, "protocol_version", "7 name", "version", "known_command genmove",
                    "known_command fly", "list_commands")  # fmt: skip
    assert answers[:5] == ["= 2\n\n", "=7 bellman\n\n", "= 0.1.0\n\n", "= true\n\n",
                           "= false\n\n"]  # fmt: skip
    assert answers[5] == "= " + "\n".join(COMMANDS) + "\n\n"
    for name in ("protocol_version", "name", "version", "known_command", "list_commands",
                 "boardsize", "clear_board", "komi", "play", "genmove", "undo", "final_score",
                 "showboard", "quit"):  # fmt: skip
        assert name in COMMANDS


def test_comments_empty_lines_and_control_characters():
    engine = _engine()
    assert engine.handle("") is None
    assert engine.handle("   # only a comment") is None
    assert engine.handle("3 name # trailing comment") == "=3 bellman\n\n"
    assert engine.handle("\x01na\x02me\r\n") == "= bellman\n\n"
    assert engine.handle("12") == "?12 missing command\n\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("fly away", "unknown command"),
        ("boardsize 19", "unacceptable size"),
        ("boardsize nine", "integer"),
        ("komi lots", "komi needs a finite number"),
        ("komi nan", "komi needs a finite number"),
        ("play", "syntax error"),
        ("play black", "syntax error"),
        ("play red E5", "invalid color"),
        ("play black Z99", "invalid coordinate"),
        ("play black J10", "invalid coordinate"),
        ("genmove", "syntax error"),
        ("undo", "cannot undo"),
    ],
)
def test_errors_are_answered_and_the_engine_goes_on(line: str, message: str):
    engine = _engine()
    answer = engine.handle("5 " + line)
    assert answer.startswith("?5 ") and answer.endswith("\n\n"), answer
    assert message in answer
    assert not engine.quit
    assert engine.handle("name") == "= bellman\n\n"


def test_illegal_moves_occupied_suicide_superko():
    engine = _engine()
    # a ko: black D6 C5 D4 and white E6 F5 E4 around D5/E5; white D5, then black takes at E5
    for move in ["B D6", "W E6", "B C5", "W F5", "B D4", "W E4", "B A1", "W D5", "B E5"]:
        colour, vertex = move.split()
        assert engine.handle(f"play {colour} {vertex}") == "=\n\n", move
    assert "superko" in engine.handle("play W D5")  # the immediate retake repeats a position
    assert "occupied" in engine.handle("play W E5")
    assert engine.handle("play B J1") == "=\n\n"  # black again: white's turn given away
    assert engine.handle("play W D5") == "=\n\n"  # J1 is new on the board: no repetition
    assert engine.handle("undo") == engine.handle("undo") == "=\n\n"
    assert "superko" in engine.handle("play W D5")  # back to the ko, white to move, exactly
    assert "white to move" in engine.handle("showboard")
    assert engine.handle("play W J1") == "=\n\n"  # still white's move after the refusals
    engine.handle("clear_board")
    for move in ["B A1", "W H9", "B A2", "W J8"]:
        colour, vertex = move.split()
        engine.handle(f"play {colour} {vertex}")
    assert "suicide" in engine.handle("play B J9")  # the corner inside white's two stones


def test_moves_of_one_colour_in_a_row_end_no_game():
    """Black passes twice in a row (no white pass between): not two passes of a game, so the
    game goes on; a white pass then ends it. undo gives the turn back exactly."""
    engine = _engine()
    assert _talk(engine, "play b pass", "play b pass") == ["=\n\n", "=\n\n"]
    assert not engine.game.is_terminal(engine.state) and engine.state.passes == 1
    assert engine.handle("genmove b") == "= A9\n\n"  # black a third time, on the board
    assert engine.handle("undo") == "=\n\n" and "white to move" in engine.handle("showboard")
    assert engine.handle("play w pass") == "=\n\n"  # answered by white: the game is over
    assert "game is over" in engine.handle("play b E5")
    assert engine.handle("undo") == engine.handle("undo") == "=\n\n"
    assert engine.state.passes == 1 and engine.game.to_play(engine.state) == 1  # after b pass


def test_genmove_undo_final_score_showboard_and_quit():
    engine = _engine()
    assert engine.handle("play b E5") == "=\n\n"
    assert engine.handle("final_score") == "= B+73.5\n\n"  # 81 points for black, 7.5 komi
    assert engine.handle("komi 0.5") == "=\n\n"
    assert engine.handle("final_score") == "= B+80.5\n\n"
    assert engine.handle("genmove w") == "= A9\n\n"  # the scripted player: first legal point
    assert engine.handle("undo") == "=\n\n"
    assert engine.handle("undo") == "=\n\n"
    assert engine.handle("undo") == "? cannot undo\n\n"
    assert engine.handle("final_score") == "= W+0.5\n\n"
    board = engine.handle("showboard")
    assert board.startswith("= \n   A B C D E F G H J\n 9 . . .") and "black to move" in board
    for _ in range(2):
        engine.handle("play b pass" if engine.game.to_play(engine.state) == 0 else "play w pass")
    assert "game is over" in engine.handle("genmove b")
    assert engine.handle("clear_board") == "=\n\n"
    assert engine.handle("quit") == "=\n\n" and engine.quit


# ---- through a pipe --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def go_run(tmp_path_factory) -> Path:
    """A tiny AlphaZero go9 run (one self-play game of 2 simulations a move)."""
    run_dir = tmp_path_factory.mktemp("gtp") / "run"
    settings = ["steps=1", "simulations=2", "blocks=1", "channels=8", "value_hidden=8",
                "games_per_iteration=1", "batch_size=8", "train_steps=1", "arena_games=0",
                "replay_window=64", "arena_simulations=2", "search_batch_size=2",
                "gating=false"]  # fmt: skip
    api.train("alphazero", "go9", overrides=settings, run_dir=run_dir, quiet=True)
    return run_dir


def _bellman_gtp(run: Path, script: str):
    """`bellman gtp` on `run`'s checkpoint, reading `script`."""
    return run_process(["gtp", "--checkpoint", run, "--simulations", "2"], run.parent,
                       timeout=120, input=script)  # fmt: skip


def test_bellman_gtp_through_a_pipe(go_run: Path):
    """Errors answered and survived; two black moves in a row (setup stones) then white's
    genmove, each taken back by undo; white moving twice; nothing after quit."""
    script = "\n".join([
        "1 protocol_version", "2 boardsize 19", "3 boardsize 9", "4 clear_board", "5 komi 7.5",
        "6 play black E5", "7 play white E5", "8 play black D4", "8b play white D4", "9 ???",
        "10 genmove white", "11 final_score", "12 undo", "13 undo", "14 showboard", "15 undo",
        "16 showboard", "17 undo", "18 play white C3", "19 genmove w", "20 showboard",
        "21 quit", "22 name",
    ]) + "\n"  # fmt: skip
    done = _bellman_gtp(go_run, script)
    assert done.returncode == 0, done.stderr
    answers = done.stdout.split("\n\n")
    assert answers[0] == "=1 2"
    assert answers[1].startswith("?2 unacceptable size")
    assert answers[2:5] == ["=3", "=4", "=5"]
    assert answers[5] == "=6"
    assert answers[6].startswith("?7 illegal move") and "occupied" in answers[6]
    assert answers[7] == "=8"  # black again: legal GTP (a setup stone), no pass invented
    assert answers[8].startswith("? unknown command")  # "8b" is not an id: the command name
    assert answers[9].startswith("?9 unknown command")
    assert re.fullmatch(r"=10 [A-HJ][1-9]", answers[10]) and answers[10][4:] not in "E5 D4"
    assert answers[11] == "=11 W+6.5"  # 2 black stones, 1 white, the rest dame, komi 7.5
    assert answers[12:14] == ["=12", "=13"]  # white's move, then black's D4, taken back
    rows = Go(9).render(Go(9).apply(Go(9).initial_state(), 40))  # black E5 alone
    assert answers[14] == f"=14 \n{rows}\nwhite to move"
    assert answers[15] == "=15"
    assert answers[16] == f"=16 \n{Go(9).render(Go(9).initial_state())}\nblack to move"
    assert answers[17] == "?17 cannot undo"
    assert answers[18] == "=18"  # white first: a board edit
    assert re.fullmatch(r"=19 [A-HJ][1-9]", answers[19]) and answers[19] != "=19 C3"
    assert answers[20].count("O") == 2 and "X" not in answers[20] and "black to move" in answers[20]
    assert answers[21] == "=21" and answers[22] == ""  # nothing after quit


def test_bellman_gtp_plays_a_muzero_go_run(tmp_path: Path):
    """A MuZero go9 run through the same engine: its search over its learned model answers
    genmove with a legal point, and illegal input is still a `?` answer."""
    settings = ["steps=1", "simulations=2", "blocks=1", "channels=8", "value_hidden=8",
                "games_per_iteration=1", "batch_size=8", "train_steps=1", "replay_window=64",
                "eval_simulations=2"]  # fmt: skip
    api.train("muzero", "go9", overrides=settings, run_dir=tmp_path / "mz", quiet=True)
    script = "1 name\n2 play black E5\n3 play white E5\n4 genmove white\n5 quit\n"
    done = _bellman_gtp(tmp_path / "mz", script)
    assert done.returncode == 0, done.stderr
    answers = done.stdout.split("\n\n")
    assert answers[0] == "=1 bellman" and answers[1] == "=2"
    assert answers[2].startswith("?3 illegal move") and "occupied" in answers[2]
    assert re.fullmatch(r"=4 ([A-HJ][1-9]|pass)", answers[3]) and answers[3] != "=4 E5"


def test_bellman_gtp_refuses_runs_it_cannot_play(bellman, tmp_path: Path):
    for name, algo, env in [("ttt", "alphazero", "tictactoe"), ("dqn", "dqn", "go9")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text(f'algo = "{algo}"\nenv = "{env}"\n')
    wrong = bellman("gtp", "--checkpoint", "ttt")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr == "error: run 'ttt' was trained on 'tictactoe', not Go (go9, go13, go19)\n"
    plays = "trained with 'dqn'; GTP plays alphazero, muzero, alphago"
    with pytest.raises(CheckpointError, match=plays):
        load_go_player(tmp_path / "dqn")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_go_player(tmp_path / "nowhere")


_FAKE_ENGINE = """
import sys
from bellman.errors import CheckpointError, ConfigError
from bellman.games import Go
from bellman.zero.gtp import GtpEngine, serve
game = Go(9)
serve(GtpEngine(lambda state: game.legal_actions(state)[-2:][0], game, name="fake"),
      sys.stdin, sys.stdout)
"""


def test_a_full_game_against_a_gtp_engine(go_run: Path):
    """bellman's GTP engine (black) against GnuGo level 0 through a pipe, or a fake engine
    where gnugo is missing."""
    game = Go(9)
    opponent = ([GNUGO, "--mode", "gtp", "--level", "0"] if GNUGO
                else [sys.executable, "-c", _FAKE_ENGINE])  # fmt: skip
    player, _, _ = load_go_player(go_run, simulations=2)  # in this process: `bellman gtp`'s
    engine = GtpEngine(player, game)  # engine, as the pipe test above drives it
    with LocalClient(engine) as black, GtpClient(opponent) as white:
        with pytest.raises(GtpError, match="'boardsize 13' failed: unacceptable size"):
            black.send("boardsize 13")  # a `?` answer: an exception, and the engine goes on
        played = play_match_game(black, white, game, referee=white)
        state = game.initial_state()
        for action in played.moves:  # every move was legal for bellman's rules too
            state = game.apply(state, action)
        ours = black.send("showboard")
    assert len(played.moves) >= 10
    assert played.result == "0" or played.result[:2] in ("B+", "W+")
    assert game.render(state).strip() in ours  # both sides saw the same game


@needs_gnugo
def test_gnugo_with_area_rules_captures_every_dead_stone_before_it_passes(go_run: Path):
    """`go_vs_gnugo.py --scoring tromp-taylor`'s opponent: the game ends on two passes with no
    stone of bellman's left that GnuGo judges dead, so Tromp-Taylor's count of the board as it
    stands is the result both rules agree on; GnuGo by its default rules passes leaving them."""
    game = Go(9)
    player, _, _ = load_go_player(go_run, simulations=2)
    left = []
    for area in (True, False):
        with LocalClient(GtpEngine(player, game)) as black, \
                GtpClient(gnugo_command(0, 0, area_rules=area)) as white:  # fmt: skip
            played = play_match_game(black, white, game)
            dead = {point.upper() for point in white.send("final_status_list dead").split()}
            gnugo_score = white.send("final_score")
        state = game.initial_state()
        for action in played.moves:
            state = game.apply(state, action)
        assert played.moves[-2:] == [game.pass_action] * 2
        left.append({game.format_action(p) for p in range(81) if state.board[p] == 1} & dead)
        if area:
            assert played.result == result_of_score(game.score(state))
            assert gnugo_score[0] == played.result[0], gnugo_score
    assert left[0] == set() and left[1], left


@needs_gnugo
def test_a_game_against_gnugo_says_whether_our_side_won_in_either_colour(go_run: Path):
    # the one place that turns "black won" into "bellman won" (the benchmark's and AlphaGo's
    # search ablation's games against GnuGo)
    game = Go(9)
    player, _, _ = load_go_player(go_run, simulations=2)
    for ours_black in (True, False):
        played, won = play_against_gnugo(LocalClient(GtpEngine(player, game)), game, 0, 0,
                                         ours_black)  # fmt: skip
        winner = played.result[0]
        assert winner in "BW" and played.black_won == (winner == "B")
        assert won == (winner == ("B" if ours_black else "W")), (ours_black, played.result)


@needs_gnugo
def test_bellman_data_gnugo(bellman, tmp_path: Path):
    done = bellman("data", "gnugo", "--games", "2", "--level", "0", "--out", "games")
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "games").glob("*.sgf"))
    assert [f.name for f in files] == ["gnugo-L0-00000.sgf", "gnugo-L0-00001.sgf"]
    records = [read_sgf_file(f, "go9") for f in files]
    assert records[0].moves != records[1].moves  # seeds 0 and 1: two different games
    assert all(len(r.moves) >= 10 and r.properties["RE"][:2] in ("B+", "W+") for r in records)
    assert records[0].properties["PB"].startswith("GNU Go")
    again = bellman("data", "gnugo", "--games", "1", "--out", "games")
    assert again.returncode == 2 and "already holds SGF files" in again.stderr
    bad = bellman("data", "gnugo", "--games", "1", "--level", "11", "--out", "other")
    assert bad.returncode == 2 and "valid: 0-10" in bad.stderr
    assert not (tmp_path / "other").exists()


@needs_gnugo
def test_gnugo_games_are_the_same_for_any_number_of_workers_and_a_stop_ends_them(tmp_path):
    one = gnugo_games(tmp_path / "one", 2, 0, workers=1)
    two = gnugo_games(tmp_path / "two", 2, 0, workers=2)
    assert [p.name for p in one] == [p.name for p in two] == [
        gnugo_file_name(0, n) for n in range(2)]  # fmt: skip
    assert [p.read_text() for p in one] == [p.read_text() for p in two]
    with pytest.raises(ConfigError, match="one per core"):
        gnugo_games(tmp_path / "bad", 1, 0, workers=-1)
    assert not (tmp_path / "bad").exists()
    started = []

    def check():  # a stop requested as the third game would start
        if len(started) == 2:
            raise KeyboardInterrupt
        started.append(1)

    (tmp_path / "stopped").mkdir()
    with pytest.raises(KeyboardInterrupt):
        play_gnugo_games(Go(9), tmp_path / "stopped", 0, range(3), 0, 1, check)
    assert sorted(p.name for p in (tmp_path / "stopped").iterdir()) == [
        gnugo_file_name(0, 0), gnugo_file_name(0, 1)]  # fmt: skip


def test_a_local_client_answers_as_a_pipe_would():
    client = LocalClient(_engine())
    assert client.send("1 name") == "bellman" and client.send("play b E5") == ""
    with pytest.raises(GtpError, match="'play w E5' failed: illegal move: E5 is occupied"):
        client.send("play w E5")
    assert client.send("play b E6") == ""  # black twice
    assert client.send("final_score") == "B+73.5"
