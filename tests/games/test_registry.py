"""Tests for the game registry: names, factories, did-you-mean errors."""

from __future__ import annotations

import importlib.util

import pytest

from bellman.errors import ConfigError
from bellman.games import GAMES, Connect4, Go, make_game, play_moves


def test_every_name_is_registered():
    assert set(GAMES) == {"tictactoe", "connect4", "go9", "go13", "go19"}


@pytest.mark.parametrize(("name", "size"), [("go9", 9), ("go13", 13), ("go19", 19)])
def test_go_games(name, size):
    game = make_game(name)
    assert isinstance(game, Go)
    assert game.name == name and game.size == size and game.komi == 7.5
    assert game.action_size == size * size + 1


def test_connect4():
    game = make_game("connect4")
    assert isinstance(game, Connect4) and game.name == "connect4"
    assert game.to_play(play_moves(game, game.parse_moves("4453"))) == 0


def test_each_call_builds_a_game_of_that_name():
    for name in ("connect4", "go9", "go13", "go19"):
        game = make_game(name)
        assert game.name == name
        assert game.to_play(game.initial_state()) == 0
        assert game.legal_mask(game.initial_state()).shape == (game.action_size,)


@pytest.mark.skipif(
    importlib.util.find_spec("bellman.games.tictactoe") is None,
    reason="bellman.games.tictactoe is not written yet",
)
def test_tictactoe():
    game = make_game("tictactoe")
    assert game.name == "tictactoe"
    assert game.action_size == 9


@pytest.mark.parametrize(
    ("name", "suggestion"), [("conect4", "connect4"), ("go-9", "go9"), ("tic-tac-toe", "tictactoe")]
)
def test_unknown_name_suggests_the_closest(name, suggestion):
    with pytest.raises(ConfigError, match=f"unknown game '{name}' \\(did you mean '{suggestion}'"):
        make_game(name)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ConfigError, match="valid: connect4, go13, go19, go9, tictactoe"):
        make_game("chess")


def test_go_size_outside_the_registry_is_a_config_error():
    with pytest.raises(ConfigError, match="Go board size 10 is not supported; valid sizes: 9, 13"):
        Go(10)
