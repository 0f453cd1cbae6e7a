"""AlphaZero's steps 6-7: the Elo table and the agent against a fixed opponent (`bellman eval`)."""

from __future__ import annotations

import numpy as np
import pytest

from bellman.zero import arena
from bellman.zero.alphazero import AlphaZeroConfig, make_eval_env


def test_elo_worked_example():
    # 1500 beats 1700: E = 1 / (1 + 10^(200/400)) = 0.2403; with K = 32 the winner gains
    # 32 * (1 - 0.240253) = 24.312 points and the loser drops as much.
    assert arena.elo_expected(1500, 1700) == pytest.approx(0.240253, abs=1e-6)
    winner, loser = arena.elo_update(1500, 1700, 1.0, k=32)
    assert winner == pytest.approx(1524.312, abs=1e-3)
    assert loser == pytest.approx(1675.688, abs=1e-3)
    table = arena.EloTable(k=32)
    table.record("net-1", "random", 0.0)  # losing to the anchor: the anchor stays at 0
    assert table.ratings["random"] == 0.0
    assert table.ratings["net-1"] == pytest.approx(-16.0)


def test_eval_env_plays_whole_games():
    config = AlphaZeroConfig(env="tictactoe", eval_opponent="random")
    env = make_eval_env(config)
    assert isinstance(env, arena.OpponentEnv)
    rng = np.random.default_rng(0)
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        assert (obs >= 0).sum() == seed % 2  # the opponent opened when the agent is second
        done, reward = False, 0.0
        while not done:
            legal = env.game.legal_actions(env.state)
            obs, reward, done, _, _ = env.step(int(rng.choice(legal)))
        assert reward in (-1.0, 0.0, 1.0)
