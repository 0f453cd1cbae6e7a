"""AlphaZero's config, loss, learner and loop: checkpoints, exact resume, workers, threads, the
solver option, Go."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman.errors import ConfigError
from bellman.games import make_game
from bellman.games.base import play_moves
from bellman.run import TIMING_COLUMNS
from bellman.zero import alphazero as az
from bellman.zero.arena import search_player
from bellman.zero.network import (
    NetworkEvaluator,
    gradient_steps,
    load_network,
    set_learning_rate,
)
from bellman.zero.play import load_agent

torch.set_num_threads(1)

TINY = [
    "steps=60", "simulations=8", "blocks=1", "channels=8", "value_hidden=8", "batch_size=16",
    "replay_window=2000", "train_steps=3", "games_per_iteration=4", "arena_games=2",
    "arena_simulations=4", "baseline_simulations=8", "optimizer=adam", "learning_rate=0.001",
    "checkpoint_every=20", "keep_checkpoints=10",
]  # fmt: skip


def test_loss_against_hand_computed_value():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (0.25, 0.75)
    values = torch.tensor([0.5])
    pi = torch.tensor([[0.5, 0.5]])
    z = torch.tensor([1.0])
    theta = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]  # ||theta||^2 = 14
    total, value_loss, policy_loss = az.alphazero_loss(logits, values, pi, z, theta, c=0.01)
    expected_policy = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert value_loss.item() == pytest.approx(0.25)
    assert policy_loss.item() == pytest.approx(expected_policy)
    assert total.item() == pytest.approx(0.25 + expected_policy + 0.14)


def test_config_validation():
    with pytest.raises(ConfigError, match="replay_window"):
        az.AlphaZeroConfig(env="tictactoe", batch_size=10, replay_window=5).validate()
    with pytest.raises(ConfigError, match="gating"):
        az.AlphaZeroConfig(env="tictactoe", gating=True, arena_games=0).validate()
    with pytest.raises(ConfigError, match="baselines"):
        az.AlphaZeroConfig(env="tictactoe", baselines="random,minimax").validate()


def test_trains_on_the_game_itself():
    # self-play needs no env: the training "env" of the registry is the game
    config = az.AlphaZeroConfig(env="connect4")
    game = az.make_train_env(config)
    assert game.name == "connect4" and not hasattr(game, "step")
    az.check_env(game, config)
    with pytest.raises(ConfigError, match="board games"):
        az.check_env(gymnasium.make("CartPole-v1"), config)
    with pytest.raises(ConfigError, match="'tictactoe'"):
        az.check_env(make_game("tictactoe"), config)


def test_checkpoint_round_trip_and_exact_resume(tmp_path: Path):
    one_go = api.train("alphazero", "tictactoe", overrides=TINY, run_dir=tmp_path / "a", quiet=True)
    arrays, meta = checkpoint.load(one_go.dir / "checkpoints")
    assert meta["step"] >= 60 and meta["state"]["game"] == "tictactoe"
    assert {"net/stem.0.weight", "best/stem.0.weight", "replay/planes", "torch_rng"} <= set(arrays)
    assert any(key.startswith("optim/") for key in arrays)
    assert "elo" in meta["state"] and "random" in meta["state"]["elo"]
    # stop after the first checkpoint, then resume: the same final checkpoint bit for bit
    short = [*TINY[1:], "steps=20"]
    api.train("alphazero", "tictactoe", overrides=short, run_dir=tmp_path / "b", quiet=True)
    resumed = api.resume(tmp_path / "b", steps=60, quiet=True)
    final, final_meta = checkpoint.load(resumed.dir / "checkpoints")
    assert final_meta["step"] == meta["step"]
    assert set(final) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(final[key], value, err_msg=key)
    for key in ("elo", "games", "updates", "numpy_rng", "python_rng", "replay_size"):
        assert final_meta["state"][key] == meta["state"][key], key
    rows_a = (one_go.dir / "metrics.csv").read_text().splitlines()
    rows_b = (resumed.dir / "metrics.csv").read_text().splitlines()
    assert rows_a[0] == rows_b[0] and len(rows_a) == len(rows_b)
    header = rows_a[0].split(",")
    assert {"elo", "score_vs_random", "score_vs_mcts", "score_vs_alphabeta", "loss"} <= set(header)
    # every row the same but for the clocks (losses, arena scores and Elo included)
    timed = [i for i, name in enumerate(header) if name in TIMING_COLUMNS or "seconds" in name]
    for a, b in zip(rows_a[1:], rows_b[1:], strict=True):
        a, b = a.split(","), b.split(",")
        assert [v for i, v in enumerate(a) if i not in timed] == [
            v for i, v in enumerate(b) if i not in timed
        ]
    episodes = "episodes.csv"
    assert (one_go.dir / episodes).read_text() == (resumed.dir / episodes).read_text()
    json.dumps(meta)  # the state is plain JSON


def test_a_row_for_every_arena_and_the_end(tmp_path: Path):
    # log_every far away: rows come from the arena (every 2nd iteration) and the last iteration
    settings = [*TINY[1:], "steps=130", "arena_every=2", "log_every=1000000"]
    run = api.train("alphazero", "tictactoe", overrides=settings, run_dir=tmp_path / "r",
                    quiet=True)  # fmt: skip
    with open(run.dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    _, meta = checkpoint.load(run.dir / "checkpoints")
    last = meta["state"]["iteration"]
    logged = [int(row["iteration"]) for row in rows]
    assert logged == sorted({*range(2, last + 1, 2), last})
    assert last % 2 == 1  # (this seed's run ends on an iteration without an arena)
    for row in rows:  # the arena's columns in the arena's rows, empty in the others
        assert (row["elo"] != "") == (int(row["iteration"]) % 2 == 0), row


def train_with_one_and_two_workers(tmp_path: Path, settings: list[str]):
    """The final checkpoints ((arrays, meta) twice) of one run with 1 worker and one with 2."""
    one = api.train("alphazero", "tictactoe", overrides=settings, run_dir=tmp_path / "1",
                    quiet=True)  # fmt: skip
    two = api.train("alphazero", "tictactoe", overrides=[*settings, "workers=2"],
                    run_dir=tmp_path / "2", quiet=True)  # fmt: skip
    return checkpoint.load(one.dir / "checkpoints"), checkpoint.load(two.dir / "checkpoints")


def test_two_workers_match_one(tmp_path: Path):
    # 4 games in groups of 2: two groups, so both workers play
    settings = [*TINY[1:], "steps=12", "arena_games=0", "concurrent_games=2"]
    (a, _), (b, _) = train_with_one_and_two_workers(tmp_path, settings)
    np.testing.assert_array_equal(a["replay/policies"], b["replay/policies"])
    np.testing.assert_allclose(a["net/policy_fc.weight"], b["net/policy_fc.weight"], atol=1e-6)


def test_learner_threads_keep_a_run_reproducible(tmp_path: Path):
    # step 5 on 2 threads (the core the idle workers leave): twice the same run, bit for bit,
    # and the same function as on 1 thread up to float rounding; torch is back on 1 thread
    settings = [*TINY[1:], "steps=30", "arena_games=0", "channels=32", "batch_size=128"]
    runs = [
        api.train("alphazero", "tictactoe", overrides=[*settings, f"train_threads={threads}"],
                  run_dir=tmp_path / name, quiet=True)
        for name, threads in (("a", 2), ("b", 2), ("c", 1))
    ]  # fmt: skip
    assert torch.get_num_threads() == 1
    (a, _), (b, _), (c, _) = (checkpoint.load(run.dir / "checkpoints") for run in runs)
    assert a["net/policy_fc.weight"].any()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_allclose(a["net/policy_fc.weight"], c["net/policy_fc.weight"], atol=1e-4)


def test_solver_option_trains_and_its_player_takes_a_proven_win(tmp_path: Path):
    run = api.train("alphazero", "tictactoe", overrides=[*TINY[1:], "steps=20", "solve=true"],
                    run_dir=tmp_path / "run", quiet=True)  # fmt: skip
    arrays, meta = checkpoint.load(run.dir / "checkpoints")
    assert meta["step"] >= 20
    _, config = api.load_run_config(run.dir)
    assert config.solve
    game = make_game("tictactoe")
    network = load_network(arrays, config, game)
    act = search_player(game, NetworkEvaluator(game, network), 40, config)
    state = play_moves(game, game.parse_moves("1425"))  # X: 1 2, O: 4 5; 3 wins at once
    assert act(state) == 2
    agent = load_agent(run.dir, "tictactoe", 40)  # `bellman play` and `move` search the same way
    assert agent.mcts.solve and agent.act(state) == 2


def test_go9_pipeline_smoke(tmp_path: Path):
    settings = [
        *TINY[1:], "steps=1", "games_per_iteration=1", "simulations=2", "search_batch_size=2",
        "batch_size=8", "arena_games=0", "checkpoint_every=1",
    ]  # fmt: skip
    run = api.train("alphazero", "go9", overrides=settings, run_dir=tmp_path / "go", quiet=True)
    arrays, meta = checkpoint.load(run.dir / "checkpoints")
    assert meta["state"]["games"] == 1 and meta["state"]["updates"] == 3
    assert arrays["replay/planes"].shape[1:] == (6, 9, 9)
    assert arrays["net/policy_fc.weight"].shape[0] == 82


def test_replay_ratio_and_learning_rate_schedule():
    config = az.AlphaZeroConfig(env="tictactoe", batch_size=100, train_steps=7, steps=1000)
    assert gradient_steps(config, 1234) == 7
    ratio = az.AlphaZeroConfig(env="tictactoe", batch_size=100, replay_ratio=2.0)
    assert gradient_steps(ratio, 1234) == 25  # ceil(2 * 1234 / 100)
    decaying = az.AlphaZeroConfig(
        env="tictactoe", steps=1000, learning_rate=0.01, lr_final_fraction=0.1, blocks=1,
        channels=4, value_hidden=4, batch_size=8, replay_window=8,
    )  # fmt: skip
    learner = az.AlphaZeroLearner(decaying, make_game("tictactoe"))
    rates = []
    for step in (0, 500, 1000, 5000):
        set_learning_rate(learner.optimizer, decaying, step)
        rates.append(learner.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.01, 0.0055, 0.001, 0.001])


def test_concurrent_groups_do_not_depend_on_workers(tmp_path: Path):
    # groups of 3 games by number; 2 workers play the groups [0 1 2] and [3] of the iteration
    settings = [*TINY[1:], "steps=12", "arena_games=0", "concurrent_games=3",
                "fast_simulations=3", "value_target_mix=0.3", "replay_ratio=1.5"]  # fmt: skip
    (a, meta_a), (b, meta_b) = train_with_one_and_two_workers(tmp_path, settings)
    np.testing.assert_array_equal(a["replay/policies"], b["replay/policies"])
    np.testing.assert_array_equal(a["replay/outcomes"], b["replay/outcomes"])
    assert meta_a["state"]["updates"] == meta_b["state"]["updates"] > 0
