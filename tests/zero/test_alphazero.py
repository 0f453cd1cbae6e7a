"""AlphaZero mechanisms: network, loss, evaluator, self-play data, Elo, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman.errors import ConfigError
from bellman.games import make_game
from bellman.games.base import play_moves
from bellman.nets import AlphaZeroNetwork
from bellman.zero import alphazero as az
from bellman.zero.play import load_agent
from tests.conftest import HashEvaluator

torch.set_num_threads(1)

TINY = [
    "steps=60", "simulations=8", "blocks=1", "channels=8", "value_hidden=8", "batch_size=16",
    "replay_window=2000", "train_steps=3", "games_per_iteration=4", "arena_games=2",
    "arena_simulations=4", "baseline_simulations=8", "optimizer=adam", "learning_rate=0.001",
    "checkpoint_every=20", "keep_checkpoints=10",
]  # fmt: skip


@pytest.mark.parametrize("name", ["tictactoe", "connect4", "go9"])
def test_network_shapes(name):
    game = make_game(name)
    network = AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=2, channels=8)
    planes = torch.zeros((5, *game.observation_shape))
    logits, values = network(planes)
    assert logits.shape == (5, game.action_size)
    assert values.shape == (5,)
    assert (values.abs() < 1).all()
    # the tower: stem + 2 blocks of 2 convolutions, plus the two 1x1 head convolutions
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 2 + 2


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


class CountingNetwork(torch.nn.Module):
    """Wraps a network and records the batch size of every forward call."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, planes):
        self.batches.append(len(planes))
        return self.inner(planes)


def test_evaluator_makes_one_forward_per_batch():
    game = make_game("connect4")
    torch.manual_seed(0)
    network = CountingNetwork(
        AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=1, channels=8)
    )
    evaluator = az.NetworkEvaluator(game, network)
    states = [game.initial_state()]
    for column in range(6):
        states.append(game.apply(states[-1], column))
    priors, values = evaluator.evaluate(states)
    assert network.batches == [7]
    assert priors.shape == (7, 7) and values.shape == (7,)
    np.testing.assert_allclose(priors.sum(axis=1), 1.0, rtol=1e-5)
    # the same numbers as one state at a time (eval mode: BatchNorm does not mix the batch)
    single = np.concatenate([evaluator.evaluate([s])[1] for s in states])
    np.testing.assert_allclose(values, single, rtol=1e-5, atol=1e-6)


def test_search_batches_leaves():
    game = make_game("connect4")
    network = CountingNetwork(
        AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=1, channels=8)
    )
    evaluator = az.NetworkEvaluator(game, network)
    from bellman.search import MCTS

    MCTS(game, evaluator, simulations=64, batch_size=16).search(game.initial_state())
    assert evaluator.calls == len(network.batches) <= 1 + 64 // 16 + 1
    assert max(network.batches) > 8


def _settings(game_name="tictactoe", **changes):
    values = dict(
        game=game_name, simulations=16, c_puct=1.25, dirichlet_alpha=1.0, dirichlet_fraction=0.25,
        temperature_moves=4, search_batch_size=4, virtual_loss=1.0, blocks=1, channels=8,
        value_hidden=8, torch_threads=1,
    )  # fmt: skip
    values.update(changes)
    return az.SelfPlaySettings(**values)


def test_self_play_data():
    game = make_game("tictactoe")
    settings = _settings()
    torch.manual_seed(0)
    blob = az.weights_bytes(
        AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=1, channels=8,
                         value_hidden=8)
    )  # fmt: skip
    pairs = az.self_play_games((blob, settings, 0, [0, 1, 2]))
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
    again = az.self_play_games((blob, settings, 0, [1]))[0][1]
    np.testing.assert_array_equal(again.policies, pairs[1][1].policies)


def test_final_outcomes_from_each_movers_view():
    game = make_game("tictactoe")
    moves = game.parse_moves("14253")  # X takes the top row: X wins
    state = game.initial_state()
    movers = []
    for action in moves:
        movers.append(game.to_play(state))
        state = game.apply(state, action)
    z = az.final_outcomes(game, movers, state)
    np.testing.assert_array_equal(z, [1, -1, 1, -1, 1])


def test_symmetries_of_a_position():
    game = make_game("tictactoe")
    state = game.apply(game.initial_state(), 0)  # X in the top-left corner
    pi = np.zeros(9, np.float32)
    pi[1] = 1.0  # all mass on cell 2
    record = az.GameRecord(game.observation(state)[None], pi[None], np.ones(1, np.float32), 1.0)
    planes, policies, outcomes = az.augment(game, record, symmetries=True)
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
    off = az.augment(game, record, symmetries=False)
    assert off[0].shape == (1, 2, 3, 3)


def test_replay_window_keeps_the_newest():
    window = az.ReplayWindow(5, (1, 1, 1), 2)
    for value in range(7):
        window.add(
            np.full((1, 1, 1, 1), value, np.float32), np.zeros((1, 2), np.float32),
            np.full(1, value, np.float32),
        )  # fmt: skip
    assert len(window) == 5
    assert sorted(window.outcomes.tolist()) == [2, 3, 4, 5, 6]


def test_elo_worked_example():
    # 1500 beats 1700: E = 1 / (1 + 10^(200/400)) = 0.2403; with K = 32 the winner gains
    # 32 * (1 - 0.240253) = 24.312 points and the loser drops as much.
    assert az.elo_expected(1500, 1700) == pytest.approx(0.240253, abs=1e-6)
    winner, loser = az.elo_update(1500, 1700, 1.0, k=32)
    assert winner == pytest.approx(1524.312, abs=1e-3)
    assert loser == pytest.approx(1675.688, abs=1e-3)
    table = az.EloTable(k=32)
    table.record("net-1", "random", 0.0)  # losing to the anchor: the anchor stays at 0
    assert table.ratings["random"] == 0.0
    assert table.ratings["net-1"] == pytest.approx(-16.0)


def test_config_validation():
    with pytest.raises(ConfigError, match="replay_window"):
        az.AlphaZeroConfig(env="tictactoe", batch_size=10, replay_window=5).validate()
    with pytest.raises(ConfigError, match="gating"):
        az.AlphaZeroConfig(env="tictactoe", gating=True, arena_games=0).validate()
    with pytest.raises(ConfigError, match="baselines"):
        az.AlphaZeroConfig(env="tictactoe", baselines="random,minimax").validate()


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
    for key in ("elo", "games", "updates", "agent_rng", "replay_size"):
        assert final_meta["state"][key] == meta["state"][key], key
    rows_a = (one_go.dir / "metrics.csv").read_text().splitlines()
    rows_b = (resumed.dir / "metrics.csv").read_text().splitlines()
    assert rows_a[0] == rows_b[0] and len(rows_a) == len(rows_b)
    header = rows_a[0].split(",")
    assert {"elo", "score_vs_random", "score_vs_mcts", "score_vs_alphabeta", "loss"} <= set(header)
    json.dumps(meta)  # the state is plain JSON


def train_with_one_and_two_workers(tmp_path: Path, settings: list[str]):
    """The final checkpoints ((arrays, meta) twice) of one run with 1 worker and one with 2."""
    one = api.train("alphazero", "tictactoe", overrides=settings, run_dir=tmp_path / "1",
                    quiet=True)  # fmt: skip
    two = api.train("alphazero", "tictactoe", overrides=[*settings, "workers=2"],
                    run_dir=tmp_path / "2", quiet=True)  # fmt: skip
    return checkpoint.load(one.dir / "checkpoints"), checkpoint.load(two.dir / "checkpoints")


def test_two_workers_match_one(tmp_path: Path):
    settings = [*TINY[1:], "steps=12", "arena_games=0"]
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
    network = az.load_network(arrays, config, game)
    act = az.search_player(game, az.NetworkEvaluator(game, network), 40, config)
    state = play_moves(game, game.parse_moves("1425"))  # X: 1 2, O: 4 5; 3 wins at once
    assert act(state) == 2
    agent = load_agent(run.dir, "tictactoe", 40)  # `bellman play` and `move` search the same way
    assert agent.mcts.solve and agent.act(state) == 2


def test_eval_env_plays_whole_games():
    config = az.AlphaZeroConfig(env="tictactoe", eval_opponent="random")
    env = az.make_eval_env(config)
    rng = np.random.default_rng(0)
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        assert (obs >= 0).sum() == seed % 2  # the opponent opened when the agent is second
        done, reward = False, 0.0
        while not done:
            legal = env.game.legal_actions(env.state)
            obs, reward, done, _, _ = env.step(int(rng.choice(legal)))
        assert reward in (-1.0, 0.0, 1.0)


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


@pytest.mark.parametrize("changes", [{}, {"fast_simulations": 4, "full_search_prob": 0.3}])
def test_games_played_together_equal_games_played_alone(changes):
    game = make_game("connect4")
    settings = _settings("connect4", **changes)
    seeds = [az.game_seed(0, n) for n in range(5)]
    evaluator = HashEvaluator(game.action_size, 0.5)
    together = az.play_self_play_games(game, evaluator, settings, seeds)
    assert max(evaluator.batch_sizes) > settings.search_batch_size  # the games shared calls
    for number, record in enumerate(together):  # (a SeedSequence spawns once: a fresh one)
        alone = az.play_self_play_game(
            game, HashEvaluator(game.action_size, 0.5), settings, az.game_seed(0, number)
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
    seeds = [az.game_seed(3, n) for n in range(6)]
    records = az.play_self_play_games(game, HashEvaluator(game.action_size, 0.5), settings, seeds)
    recorded = sum(len(r.outcomes) for r in records)
    played = sum(r.moves for r in records)
    assert 0 < recorded < 0.5 * played  # about a quarter of the moves are recorded
    for record in records:
        np.testing.assert_allclose(record.policies.sum(axis=1), 1.0, rtol=1e-6)
        # illegal moves (full columns: a stone in the top row) never get visits
        full = record.planes[:, :, 0, :].sum(axis=1) > 0
        assert (record.policies[full] == 0).all()
        planes, policies, outcomes = az.augment(game, record, symmetries=True)
        assert len(outcomes) == 2 * len(record.outcomes)


def test_value_target_mix_blends_z_with_the_root_value():
    game = make_game("tictactoe")
    seeds = [az.game_seed(0, n) for n in range(3)]
    plain = az.play_self_play_games(game, HashEvaluator(game.action_size, 0.5), _settings(), seeds)
    seeds = [az.game_seed(0, n) for n in range(3)]
    mixed = az.play_self_play_games(
        game, HashEvaluator(game.action_size, 0.5), _settings(value_target_mix=0.5), seeds
    )
    for a, b in zip(plain, mixed, strict=True):
        np.testing.assert_array_equal(a.policies, b.policies)  # the same games
        assert np.all(np.abs(b.outcomes - 0.5 * a.outcomes) <= 0.5 + 1e-6)  # 0.5 z + 0.5 q
        assert not np.array_equal(a.outcomes, b.outcomes)
        assert a.first_player_result == b.first_player_result


def test_replay_ratio_and_learning_rate_schedule():
    config = az.AlphaZeroConfig(env="tictactoe", batch_size=100, train_steps=7, steps=1000)
    assert az._train_steps(config, 1234) == 7
    ratio = az.AlphaZeroConfig(env="tictactoe", batch_size=100, replay_ratio=2.0)
    assert az._train_steps(ratio, 1234) == 25  # ceil(2 * 1234 / 100)
    decaying = az.AlphaZeroConfig(
        env="tictactoe", steps=1000, learning_rate=0.01, lr_final_fraction=0.1, blocks=1,
        channels=4, value_hidden=4, batch_size=8, replay_window=8,
    )  # fmt: skip
    learner = az.Learner(decaying, make_game("tictactoe"))
    rates = []
    for step in (0, 500, 1000, 5000):
        learner.step = step
        learner.set_learning_rate()
        rates.append(learner.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.01, 0.0055, 0.001, 0.001])


def test_frozen_evaluator_matches_the_network():
    game = make_game("connect4")
    torch.manual_seed(0)
    network = AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=2, channels=8)
    network.eval()
    states = [game.initial_state()]
    for column in [3, 3, 2, 4, 0, 6]:
        states.append(game.apply(states[-1], column))
    eager = az.NetworkEvaluator(game, network).evaluate(states)
    frozen = az.NetworkEvaluator(game, network, frozen=True).evaluate(states)
    np.testing.assert_allclose(frozen[0], eager[0], atol=1e-5)
    np.testing.assert_allclose(frozen[1], eager[1], atol=1e-5)


def test_concurrent_groups_do_not_depend_on_workers(tmp_path: Path):
    # groups of 3 games by number; 2 workers play the groups [0 1 2] and [3] of the iteration
    settings = [*TINY[1:], "steps=12", "arena_games=0", "concurrent_games=3",
                "fast_simulations=3", "value_target_mix=0.3", "replay_ratio=1.5"]  # fmt: skip
    (a, meta_a), (b, meta_b) = train_with_one_and_two_workers(tmp_path, settings)
    np.testing.assert_array_equal(a["replay/policies"], b["replay/policies"])
    np.testing.assert_array_equal(a["replay/outcomes"], b["replay/outcomes"])
    assert meta_a["state"]["updates"] == meta_b["state"]["updates"] > 0
