"""AlphaZero's steps 3-4: self-play data, outcomes, symmetries, the replay window, games
played together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bellman.games import make_game
from bellman.nets import AlphaZeroNetwork
from bellman.zero import selfplay as sp
from bellman.zero.network import weights_bytes
from tests.conftest import HashEvaluator

torch.set_num_threads(1)


def _settings(game_name="tictactoe", **changes):
    values = dict(
        game=game_name, simulations=16, c_puct=1.25, dirichlet_alpha=1.0, dirichlet_fraction=0.25,
        temperature_moves=4, search_batch_size=4, virtual_loss=1.0, blocks=1, channels=8,
        value_hidden=8, torch_threads=1,
    )  # fmt: skip
    values.update(changes)
    return sp.SelfPlaySettings(**values)


def test_self_play_data():
    game = make_game("tictactoe")
    settings = _settings()
    torch.manual_seed(0)
    blob = weights_bytes(
        AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=1, channels=8,
                         value_hidden=8)
    )  # fmt: skip
    pairs = sp.self_play_games((blob, settings, 0, [0, 1, 2]))
    assert [n for n, _ in pairs] == [0, 1, 2]
    for _, record in pairs:
        np.testing.assert_allclose(record.policies.sum(axis=1), 1.0, rtol=1e-6)
        # z from each mover's point of view: alternating sign, +-1 or all 0
        z = record.outcomes
        assert set(np.unique(np.abs(z))) <= {0.0, 1.0}
        np.testing.assert_array_equal(z[1:], -z[:-1])
        # replay the game from the stored planes: the winner is the last mover
        if z[-1] != 0:
            assert z[-1] == 1.0  # in tic-tac-toe the last mover is the winner
        assert record.first_player_result == z[0]
        # illegal moves never get visits: the occupied cells of each position
        occupied = record.planes.sum(axis=1).reshape(len(z), 9) > 0
        assert (record.policies[occupied] == 0).all()
    # the same seed plays the same games
    again = sp.self_play_games((blob, settings, 0, [1]))[0][1]
    np.testing.assert_array_equal(again.policies, pairs[1][1].policies)


def test_final_outcomes_from_each_movers_view():
    game = make_game("tictactoe")
    moves = game.parse_moves("14253")  # X takes the top row: X wins
    state = game.initial_state()
    movers = []
    for action in moves:
        movers.append(game.to_play(state))
        state = game.apply(state, action)
    z = sp.final_outcomes(game, movers, state)
    np.testing.assert_array_equal(z, [1, -1, 1, -1, 1])


def test_symmetries_of_a_position():
    game = make_game("tictactoe")
    state = game.apply(game.initial_state(), 0)  # X in the top-left corner
    pi = np.zeros(9, np.float32)
    pi[1] = 1.0  # all mass on cell 2
    record = sp.GameRecord(game.observation(state)[None], pi[None], np.ones(1, np.float32), 1.0)
    planes, policies, outcomes = sp.augment(game, record, symmetries=True)
    assert planes.shape == (8, 2, 3, 3) and policies.shape == (8, 9)
    np.testing.assert_array_equal(outcomes, np.ones(8))
    # X stays in a corner, the policy's cell stays an edge next to it, in every copy
    corners, edges = [0, 2, 6, 8], [1, 3, 5, 7]
    pairs = set()
    for p, q in zip(planes, policies, strict=True):
        x = int(np.flatnonzero(p[1].ravel())[0])
        target = int(np.argmax(q))
        assert x in corners and target in edges
        assert abs(x // 3 - target // 3) + abs(x % 3 - target % 3) == 1
        pairs.add((x, target))
    assert len(pairs) == 8  # every (corner, adjacent edge) pair once
    off = sp.augment(game, record, symmetries=False)
    assert off[0].shape == (1, 2, 3, 3)


def test_replay_window_keeps_the_newest():
    window = sp.ReplayWindow(5, (1, 1, 1), 2)
    for value in range(7):
        window.add(
            np.full((1, 1, 1, 1), value, np.float32), np.zeros((1, 2), np.float32),
            np.full(1, value, np.float32),
        )  # fmt: skip
    assert len(window) == 5
    assert sorted(window.outcomes.tolist()) == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("changes", [{}, {"fast_simulations": 4, "full_search_prob": 0.3}])
def test_games_played_together_equal_games_played_alone(changes):
    game = make_game("connect4")
    settings = _settings("connect4", **changes)
    seeds = [sp.game_seed(0, n) for n in range(5)]
    evaluator = HashEvaluator(game.action_size, 0.5)
    together = sp.play_self_play_games(game, evaluator, settings, seeds)
    assert max(evaluator.batch_sizes) > settings.search_batch_size  # the games shared calls
    for number, record in enumerate(together):  # (a SeedSequence spawns once: a fresh one)
        alone = sp.play_self_play_game(
            game, HashEvaluator(game.action_size, 0.5), settings, sp.game_seed(0, number)
        )
        np.testing.assert_array_equal(alone.planes, record.planes)
        np.testing.assert_array_equal(alone.policies, record.policies)
        np.testing.assert_array_equal(alone.outcomes, record.outcomes)
        assert (
            alone.moves == record.moves and alone.first_player_result == record.first_player_result
        )


def test_playout_cap_randomisation_records_only_the_full_searches():
    game = make_game("connect4")
    settings = _settings("connect4", fast_simulations=2, full_search_prob=0.25)
    seeds = [sp.game_seed(3, n) for n in range(6)]
    records = sp.play_self_play_games(game, HashEvaluator(game.action_size, 0.5), settings, seeds)
    recorded = sum(len(r.outcomes) for r in records)
    played = sum(r.moves for r in records)
    assert 0 < recorded < 0.5 * played  # about a quarter of the moves are recorded
    for record in records:
        np.testing.assert_allclose(record.policies.sum(axis=1), 1.0, rtol=1e-6)
        # illegal moves (full columns: a stone in the top row) never get visits
        full = record.planes[:, :, 0, :].sum(axis=1) > 0
        assert (record.policies[full] == 0).all()
        planes, policies, outcomes = sp.augment(game, record, symmetries=True)
        assert len(outcomes) == 2 * len(record.outcomes)


def test_value_target_mix_blends_z_with_the_root_value():
    game = make_game("tictactoe")
    seeds = [sp.game_seed(0, n) for n in range(3)]
    plain = sp.play_self_play_games(game, HashEvaluator(game.action_size, 0.5), _settings(), seeds)
    seeds = [sp.game_seed(0, n) for n in range(3)]
    mixed = sp.play_self_play_games(
        game, HashEvaluator(game.action_size, 0.5), _settings(value_target_mix=0.5), seeds
    )
    for a, b in zip(plain, mixed, strict=True):
        np.testing.assert_array_equal(a.policies, b.policies)  # the same games
        assert np.all(np.abs(b.outcomes - 0.5 * a.outcomes) <= 0.5 + 1e-6)  # 0.5 z + 0.5 q
        assert not np.array_equal(a.outcomes, b.outcomes)
        assert a.first_player_result == b.first_player_result
