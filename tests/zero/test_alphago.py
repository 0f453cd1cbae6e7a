"""AlphaGo (2016): the leaf evaluation's mix, the policy gradient's direction, and the five
stages on a tiny Connect Four budget, each past a threshold a broken stage cannot reach, then
resumed from a middle stage bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman import config as configs
from bellman.errors import ConfigError
from bellman.games import make_game
from bellman.games.connect4 import Connect4State
from bellman.games.go import Go
from bellman.games.sgf import to_sgf
from bellman.zero import alphago as ag
from bellman.zero.go_players import load_go_player

torch.set_num_threads(1)

TINY = [
    "expert_games=40", "expert_depth=2", "sl_epochs=3", "rollout_epochs=3", "rl_iterations=2",
    "rl_games=6", "value_games=40", "value_epochs=3", "simulations=6", "arena_games=2",
    "blocks=1", "channels=16", "batch_size=64", "keep_checkpoints=5",
]  # fmt: skip


def _config(**changes) -> ag.AlphaGoConfig:
    return ag.AlphaGoConfig(env="connect4", blocks=1, channels=8, value_hidden=8, **changes)


def test_the_leaf_value_is_the_lambda_mix_of_the_value_net_and_a_rollout():
    game, config = make_game("connect4"), _config()
    torch.manual_seed(0)
    nets = {"sl": ag.build_net(config, game).eval(), "value": ag.build_net(config, game).eval()}
    rollout = ag.RolloutPolicy(game).numpy_weights()
    states = [game.initial_state(), game.apply(game.initial_state(), 3)]
    _, v = ag.MixedLeafEvaluator(game, nets["sl"], nets["value"], rollout, 0.0, 0).evaluate(states)
    with torch.inference_mode():
        planes = torch.from_numpy(np.stack([game.observation(s) for s in states]))
        np.testing.assert_allclose(v, nets["value"](planes)[1].numpy(), rtol=1e-6)
    mixed = ag.MixedLeafEvaluator(game, nets["sl"], nets["value"], rollout, 0.25, 0)
    mixed.rollout = lambda state: 1.0  # z_L = +1 for the player to move
    priors, values = mixed.evaluate(states)
    np.testing.assert_allclose(values, 0.75 * v + 0.25, rtol=1e-6)
    np.testing.assert_allclose(priors.sum(axis=1), 1.0, rtol=1e-5)
    only_rollouts = ag.MixedLeafEvaluator(game, nets["sl"], nets["value"], rollout, 1.0, 0)
    only_rollouts.rollout = lambda state: -1.0
    assert only_rollouts.evaluate(states)[1].tolist() == [-1.0, -1.0]


def test_a_rollout_is_a_whole_game_seen_from_the_player_to_move():
    game = make_game("connect4")
    rollout = ag.RolloutPolicy(game).numpy_weights()
    evaluator = ag.MixedLeafEvaluator(game, None, None, rollout, 1.0, 0)
    # first player has three in column 1 and moves: a win unless the rollout misses it;
    # over many rollouts the mean result for the mover is clearly positive
    state = game.initial_state()
    for action in [0, 1, 0, 1, 0, 2]:
        state = game.apply(state, action)
    results = [evaluator.rollout(state) for _ in range(60)]
    assert set(results) <= {-1.0, 0.0, 1.0}
    assert np.mean(results) > 0.05


@pytest.mark.parametrize("z", [1.0, -1.0])
def test_the_policy_gradient_moves_probability_towards_won_moves(z: float):
    game, config = make_game("connect4"), _config()
    torch.manual_seed(0)
    net = ag.build_net(config, game).eval()
    state = game.initial_state()
    before = torch.softmax(ag.torch.from_numpy(ag.policy_logits(net, game, [state])), 1)[0, 3]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    recorded = [([state, state], [3, 3])]  # the learner (black) played column 4 twice
    ag.reinforce_step(net, optimizer, game, recorded, np.array([z]), [0])
    after = torch.softmax(ag.torch.from_numpy(ag.policy_logits(net, game, [state])), 1)[0, 3]
    assert (after > before) if z > 0 else (after < before)


def test_the_rl_policy_beats_the_sl_policy_it_started_from(tmp_path: Path):
    """Stages 1-3 on a small budget: REINFORCE against the pool must beat p_sigma in clearly
    more than half of 200 games (both sampling); a policy gradient of the wrong sign, or none,
    stays at or below one half. (Seeds 0, 1, 2 gave 0.76, 0.735, 0.81.)"""
    settings = ["expert_games=30", "expert_depth=1", "sl_epochs=2", "rollout_epochs=1",
                "rl_iterations=20", "rl_games=32", "rl_learning_rate=0.01", "arena_games=200",
                "blocks=1", "channels=8", "value_hidden=8", "stage=rl"]  # fmt: skip
    run = api.train("alphago", "connect4", overrides=settings, run_dir=tmp_path / "r", quiet=True)
    _, meta = checkpoint.load(run.dir / "checkpoints")
    assert meta["state"]["metrics"]["rl_win_rate_vs_sl"] > 0.6, meta["state"]["metrics"]


def _one_ply(game, rng):
    """states -> a winning move, else a block of the opponent's winning move, else a random
    move: players whose results the position predicts in part, cheap to play."""

    def act(state) -> int:
        opponent = Connect4State(state.position ^ state.mask, state.mask, state.moves + 1)
        tactical = game.winning_moves(state) or game.winning_moves(opponent)
        return tactical[0] if tactical else int(rng.choice(game.legal_actions(state)))

    return lambda states: [act(state) for state in states]


def test_value_targets_are_the_result_for_the_player_to_move():
    """MSE cannot see a target of the wrong sign (a net learns -v as well as v): with one-ply
    players, who take a win whenever there is one, every stage-4 position whose mover can win
    at once must have z = +1."""
    game = make_game("connect4")
    rng = np.random.default_rng(0)
    players = _one_ply(game, rng)
    wins = 0
    for planes, z in ag.value_positions(game, players, players, rng, 38, 600):
        mine, theirs = (sum(1 << int(col * 7 + 5 - row) for row, col in np.argwhere(plane))
                        for plane in planes)  # fmt: skip
        state = Connect4State(mine, mine | theirs, int(planes.sum()))
        assert np.array_equal(game.observation(state), planes)  # the position, rebuilt
        if game.winning_moves(state):
            wins += 1
            assert z == 1.0
    assert wins > 30


def test_the_value_net_beats_predicting_zero_on_held_out_positions():
    """Stage 4's training (one position per game, the mover's result, early stopping) with
    one-ply tactical players in place of p_sigma and p_rho: the held-out MSE must be clearly
    below predicting 0 (a net that learned only the mean result gains about 0.015; the test
    above checks the sign). Seeds 0, 1, 2: 0.062, 0.062, 0.060 below."""
    game = make_game("connect4")
    torch.manual_seed(0)
    config = ag.AlphaGoConfig(env="connect4", blocks=1, channels=16, value_hidden=16,
                              value_games=6000, value_epochs=8, held_out=0.3)  # fmt: skip
    rng = np.random.default_rng(0)
    players = _one_ply(game, rng)
    metrics = ag.train_value_net(ag.build_net(config, game), game, players, players, config, rng)
    assert metrics["value_positions"] == 6000
    assert metrics["value_mse"] < metrics["value_mse_of_zero"] - 0.035, metrics


def test_expert_records_must_alternate(tmp_path: Path):
    """An SGF record with two black moves in a row (legal SGF: setup stones) cannot be
    replayed as alternating expert moves: one ConfigError naming the file."""
    game = make_game("go9")
    (tmp_path / "a.sgf").write_text(to_sgf(game, [40, 41, 42]))
    (tmp_path / "b.sgf").write_text(to_sgf(game, [40, 41, 42], players=[0, 0, 1]))
    config = ag.AlphaGoConfig(env="go9", expert_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="b.sgf' has two moves of one colour in a row"):
        ag.go_expert_games(game, config, tmp_path)
    (tmp_path / "b.sgf").unlink()
    (tmp_path / "c.sgf").write_text(to_sgf(game, [30, 31]))
    assert ag.go_expert_games(game, config, tmp_path) == [[40, 41, 42], [30, 31]]


def test_bad_settings_are_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="lambdas"):
        ag.lambda_values("0,2")
    with pytest.raises(ConfigError, match="not 'tictactoe'"):
        api.train("alphago", "tictactoe", overrides=["stage=sl"], quiet=True)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
            api.train("alphago", "connect4", overrides=["device=cuda"], run_dir=tmp_path / "r")
        assert not (tmp_path / "r").exists()


def test_the_pipeline_on_connect_four_and_its_exact_resume(tmp_path: Path):
    run = api.train("alphago", "connect4", overrides=TINY, run_dir=tmp_path / "run", quiet=True)
    final, meta = checkpoint.load(run.dir / "checkpoints")
    metrics = meta["state"]["metrics"]
    assert meta["step"] == 5 and meta["state"]["stages_done"] == 5
    # 1. SL: the alpha-beta expert's moves, far above the 1/7 of a blind guess
    assert metrics["sl_accuracy"] > 0.3, metrics
    # 2. rollout: a linear policy, above a blind guess, and much faster than the network
    assert metrics["rollout_accuracy"] > 0.17, metrics
    assert metrics["rollout_us_per_move"] < 1000 * metrics["sl_ms_per_move"], metrics
    # 3.-4. measured (tiny budgets: no threshold on strength)
    assert 0 <= metrics["rl_win_rate_vs_sl"] <= 1
    assert 0 <= metrics["value_mse"] < 4 and metrics["value_mse_of_zero"] > 0
    # 5. the search with the SL prior beats the raw SL policy with some lambda
    assert max(metrics[f"search_lambda{v}_vs_sl"] for v in ("0", "0.5", "1")) >= 0.5, metrics
    for v in ("0", "0.5", "1"):
        assert 0 <= metrics[f"search_lambda{v}_vs_expert"] <= 1
    # resume after stage 2: the same networks and metrics as the run that went through
    copy = tmp_path / "copy"
    shutil.copytree(run.dir, copy)
    for stage in (3, 4, 5):
        for suffix in (".safetensors", ".json"):
            (copy / "checkpoints" / f"step-{stage}{suffix}").unlink()
    (copy / "checkpoints" / "latest").write_text("step-2\n")
    api.resume(copy, quiet=True)
    resumed, resumed_meta = checkpoint.load(copy / "checkpoints")
    assert sorted(resumed) == sorted(final)
    for key in final:
        np.testing.assert_array_equal(resumed[key], final[key], err_msg=key)
    timing = ("sl_ms_per_move", "rollout_us_per_move")
    same = {k: v for k, v in metrics.items() if k not in timing}
    assert {k: v for k, v in resumed_meta["state"]["metrics"].items() if k not in timing} == same


def test_a_stop_inside_a_stage_gives_it_up_and_resume_plays_it_again(tmp_path: Path, monkeypatch):
    settings = ["expert_games=10", "expert_depth=1", "sl_epochs=1", "rollout_epochs=1",
                "blocks=1", "channels=8", "steps=2"]  # fmt: skip
    original = ag.AlphaGoPipeline.stage_rollout

    def stopped_at_once(self, run):
        run.stop_requested = True  # as Ctrl-C's handler does, just before the first minibatch
        return original(self, run)

    monkeypatch.setattr(ag.AlphaGoPipeline, "stage_rollout", stopped_at_once)
    run = api.train("alphago", "connect4", overrides=settings, run_dir=tmp_path / "r", quiet=True)
    assert (run.dir / "checkpoints" / "latest").read_text().strip() == "step-1"
    assert len((run.dir / "metrics.csv").read_text().splitlines()) == 2  # header, stage 1
    monkeypatch.setattr(ag.AlphaGoPipeline, "stage_rollout", original)
    api.resume(run.dir, quiet=True)
    _, meta = checkpoint.load(run.dir / "checkpoints")
    assert meta["step"] == 2 and meta["state"]["metrics"]["rollout_accuracy"] is not None


def test_a_stop_during_the_search_ablation_ends_it_before_the_next_move(monkeypatch):
    # on Go a move of the lambda-mixed search takes seconds and an arena minutes: Ctrl-C must
    # not wait for the arena's end (it did: the stop was polled only between arenas)
    game = make_game("connect4")
    pipeline = ag.AlphaGoPipeline(_config(lambdas="0,1", arena_games=4), game)
    moves = []

    def first_legal(game_, nets, config, mixing, seed):
        return lambda state: moves.append(mixing) or game_.legal_actions(state)[0]

    monkeypatch.setattr(ag, "search_agent", first_legal)
    pipeline.stop_requested = lambda: len(moves) >= 5  # Ctrl-C after the fifth move
    with pytest.raises(ag.StageStopped):
        pipeline.stage_search(run=None)
    assert len(moves) == 5


def test_go_rollouts_with_sensible_playouts_never_fill_their_own_eyes():
    # a black group holding the whole board but for its two eyes A1 and C1, black to move:
    # a rollout that may fill its own eyes sometimes lets white capture everything; one that
    # plays only sensible moves passes at once (black then owns the board: +1 for black)
    game = make_game("go9")
    state = game.initial_state()
    for point in range(81):
        if game.format_action(point) not in ("A1", "C1"):
            state = game.apply(game.set_to_play(state, 0), point)
    state = game.set_to_play(state, 0)
    rollout = ag.RolloutPolicy(game).numpy_weights()
    sensible = ag.move_mask(game, sensible=True)
    evaluator = ag.MixedLeafEvaluator(game, None, None, rollout, 1.0, 0, mask=sensible)
    assert [evaluator.rollout(state) for _ in range(20)] == [1.0] * 20
    careless = ag.MixedLeafEvaluator(game, None, None, rollout, 1.0, 0,
                                     mask=ag.move_mask(game, sensible=False))  # fmt: skip
    assert -1.0 in [careless.rollout(state) for _ in range(20)]
    connect4 = make_game("connect4")
    assert ag.move_mask(connect4, sensible=True) == connect4.legal_mask


def test_go_with_tactical_features_trains_and_plays(tmp_path: Path):
    # the networks take the 19 tactical planes; a run's player (GTP's, the arena's) rebuilds
    # its game with them; Connect Four has no such planes
    game = make_game("go9")
    rng = np.random.default_rng(0)
    for number in range(6):
        state, moves = game.initial_state(), []
        while len(moves) < 30:
            move = int(rng.choice(np.flatnonzero(game.playout_mask(state))))
            state, moves = game.apply(state, move), [*moves, move]
        (tmp_path / f"{number}.sgf").write_text(to_sgf(game, moves))
    settings = [f"expert_dir={tmp_path}", "features=tactical", "sl_epochs=1", "rollout_epochs=1",
                "blocks=1", "channels=8", "value_hidden=8", "steps=2", "simulations=4"]  # fmt: skip
    run = api.train("alphago", "go9", overrides=settings, run_dir=tmp_path / "run", quiet=True)
    arrays, meta = checkpoint.load(run.dir / "checkpoints")
    assert meta["state"]["metrics"]["sl_accuracy"] is not None
    assert arrays["sl/stem.0.weight"].shape[1] == arrays["value/stem.0.weight"].shape[1] == 19
    act, player_game, _ = load_go_player(run.dir, simulations=4)
    assert player_game.observation_shape == (19, 9, 9)
    assert act(game.initial_state()) in game.legal_actions(game.initial_state())
    with pytest.raises(ConfigError, match="features = 'tactical' are Go's planes"):
        api.train("alphago", "connect4", overrides=["features=tactical"], quiet=True)


def test_expert_planes_are_stored_as_bytes_and_given_back_exactly():
    # go9's tactical planes are 0/1: kept as bytes (a quarter of the memory), and the float32
    # the networks get is the observation itself; a non-binary plane keeps float32
    game = Go(9, features="tactical")
    moves = [40, 41, 30, 31, 50, 49]
    planes, actions = ag.expert_positions(game, [moves], symmetries=False)
    assert planes.dtype == np.uint8 and actions.tolist() == moves
    state = game.initial_state()
    for number, move in enumerate(moves):
        assert np.array_equal(ag.as_float(planes[number]), game.observation(state))
        state = game.apply(state, move)
    halves = np.full((2, 3, 3), 0.5, np.float32)
    assert ag.compact(halves).dtype == np.float32 and np.array_equal(ag.compact(halves), halves)
    mixed = np.stack([ag.compact(np.ones((2, 3, 3), np.float32)), ag.compact(halves)])
    assert mixed.dtype == np.float32 and mixed[1, 0, 0, 0] == 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")
def test_the_pipeline_trains_on_cuda_and_its_agent_plays_on_the_cpu(tmp_path: Path):
    run = api.train("alphago", "connect4", overrides=[*TINY, "device=cuda"],
                    run_dir=tmp_path / "run", quiet=True)  # fmt: skip
    arrays, meta = checkpoint.load(run.dir / "checkpoints")
    assert meta["step"] == 5 and meta["state"]["metrics"]["sl_accuracy"] > 0.3
    config = ag.AlphaGoConfig(env="connect4", blocks=1, channels=16, device="cuda")
    game = make_game("connect4")
    act = ag.search_agent(game, ag.load_nets(arrays, config, game), config, 0.5, 0)
    assert act(game.initial_state()) in game.legal_actions(game.initial_state())


def test_the_go9_gpu_config_layers_on_the_shipped_one():
    path = Path(ag.__file__).parents[1] / "configs" / "alphago-go9-gpu.toml"
    config, _ = configs.resolve(ag.AlphaGoConfig, "alphago", "go9", path, ["device=cpu"])
    assert (config.features, config.blocks, config.value_games) == ("tactical", 6, 100000)
    assert config.rl_learning_rate == 1e-4  # from alphago-go9.toml, beneath it
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
            configs.resolve(ag.AlphaGoConfig, "alphago", "go9", path, [])


@pytest.mark.skipif(
    shutil.which("gnugo") is None and shutil.which("gnugo", path="/usr/games") is None,
    reason="gnugo is not installed (Debian's gnugo package: `make gnugo`)",
)
def test_go_expert_games_are_played_on_every_worker_and_a_resumed_run_plays_only_the_rest(
    tmp_path: Path,
):
    game = make_game("go9")
    config = ag.AlphaGoConfig(env="go9", expert_games=3, expert_level=0, expert_workers=2)
    games = ag.go_expert_games(game, config, tmp_path)
    assert len(games) == 3 and all(len(moves) >= 10 for moves in games)
    (tmp_path / "expert" / "gnugo-L0-00001.sgf").unlink()
    started = []
    again = ag.go_expert_games(game, config, tmp_path, check=lambda: started.append(1))
    assert again == games and len(started) == 1  # the same three games, one of them replayed
