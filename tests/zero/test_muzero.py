"""MuZero's pieces with exact numbers (the value transform, the categorical projection, the
unrolled targets of a hand-made trajectory, the gradient scaling), its networks' shapes, and
its runs: checkpoints with a bit-for-bit resume, bad input as one error line."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman.errors import CheckpointError, ConfigError
from bellman.games import make_game
from bellman.games.base import play_moves
from bellman.run import TIMING_COLUMNS
from bellman.search import best_move
from bellman.zero import muzero, muzero_selfplay
from bellman.zero.muzero_network import (
    AtariMuZeroNetwork,
    BoardMuZeroNetwork,
    VectorMuZeroNetwork,
    action_planes,
    inverse_value_transform,
    result_classes,
    scalar_to_support,
    scale_gradient,
    scale_hidden,
    support_to_scalar,
    value_transform,
)
from bellman.zero.muzero_selfplay import (
    Trajectory,
    TrajectoryReplay,
    symmetric_trajectories,
    unrolled_targets,
)
from bellman.zero.play import load_agent
from tests.conftest import run_process

torch.set_num_threads(1)

#: A run of a few seconds: 4 iterations of 8 games with 8 simulations per move.
TINY = [
    "steps=100", "games_per_iteration=8", "simulations=8", "batch_size=16", "train_steps=3",
    "blocks=1", "channels=8", "value_hidden=8", "checkpoint_every=30", "replay_window=400",
]  # fmt: skip


# ---- the value transform and the support ----------------------------------------------------
def test_value_transform_exact_numbers():
    x = torch.tensor([3.0, -8.0, 0.0, 99.0], dtype=torch.float64)
    # sign(x) (sqrt(|x| + 1) - 1) + 0.001 x
    expected = [2 - 1 + 0.003, -(3 - 1) - 0.008, 0.0, 10 - 1 + 0.099]
    assert value_transform(x).tolist() == pytest.approx(expected, abs=1e-15)
    y = torch.tensor(expected, dtype=torch.float64)
    assert inverse_value_transform(y).tolist() == pytest.approx(x.tolist(), abs=1e-9)
    wide = torch.linspace(-1000, 1000, 2001, dtype=torch.float64)
    assert torch.allclose(inverse_value_transform(value_transform(wide)), wide, atol=1e-7)


def test_categorical_projection_exact_numbers():
    # h(3) = 1.003: 0.997 on atom 1 and 0.003 on atom 2 of -2..2
    two_hot = scalar_to_support(torch.tensor([3.0, -8.0, 0.0], dtype=torch.float64), 2)
    assert two_hot[0].tolist() == pytest.approx([0, 0, 0, 0.997, 0.003], abs=1e-12)
    assert two_hot[1].tolist() == [1, 0, 0, 0, 0]  # h(-8) = -2.008, clipped to -2
    assert two_hot[2].tolist() == [0, 0, 1, 0, 0]
    # back: the expectation of the two-hot is h(x), and h^-1 of it x (logits = log probs)
    back = support_to_scalar(torch.log(two_hot[:1].clamp_min(1e-300)), 2)
    assert back.item() == pytest.approx(3.0, abs=1e-9)
    batch = scalar_to_support(torch.tensor([[1.5, 40.0]]), 10)
    assert batch.shape == (1, 2, 21) and torch.allclose(batch.sum(-1), torch.ones(1, 2))


def test_result_classes_exact_numbers():
    # a board move's results -1, 0, +1 are one-hot; between them two-hot, expectation x
    classes = result_classes(torch.tensor([-1.0, 0.0, 1.0, 0.25, -0.5, 3.0]))
    assert classes.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0.75, 0.25],
                                [0.5, 0.5, 0], [0, 0, 1]]  # fmt: skip
    board = BoardMuZeroNetwork((2, 3, 3), 9, blocks=0, channels=4, value_hidden=4,
                               reward_classes=True)  # fmt: skip
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5], [1.0, 1e-30, 1e-30]]))
    assert board.reward_scalar(logits).tolist() == pytest.approx([0.3, -1.0], abs=1e-6)
    hidden = board.initial_inference(torch.rand(4, 2, 3, 3))[0]
    _, reward, _, _ = board.recurrent_inference(hidden, torch.tensor([0, 4, 8, 1]))
    assert reward.shape == (4, 3) and board.reward_scalar(reward).abs().max() < 1


def test_scale_hidden_and_scale_gradient():
    hidden = torch.tensor([[2.0, 4.0, 3.0], [-1.0, -1.0, 1.0]])
    assert scale_hidden(hidden).tolist() == [[0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = scale_gradient(x, 0.5)
    assert y.tolist() == [1.0, -2.0]
    (3 * y).sum().backward()
    assert x.grad.tolist() == [1.5, 1.5]


def test_action_planes():
    cells = action_planes(torch.tensor([4, 0]), 9, (3, 3))  # tic-tac-toe: the cell
    assert cells.shape == (2, 1, 3, 3) and cells[0, 0, 1, 1] == 1 and cells[0].sum() == 1
    columns = action_planes(torch.tensor([2]), 7, (6, 7))  # Connect Four: the column
    assert columns.shape == (1, 1, 6, 7) and columns[0, 0, :, 2].sum() == 6 and columns.sum() == 6
    go = action_planes(torch.tensor([81, 3]), 82, (9, 9))  # Go: the cell, and a pass plane
    assert go.shape == (2, 2, 9, 9) and go[0, 0].sum() == 0 and go[0, 1].sum() == 81
    assert go[1, 0, 0, 3] == 1 and go[1, 1].sum() == 0


# ---- the unrolled targets --------------------------------------------------------------------
def _trajectory(rewards, terminated=True):
    length = len(rewards)
    policies = np.eye(length, 3, dtype=np.float32)
    return Trajectory(
        np.zeros((length, 2), np.float32), np.array([0, 1, 2, 1][:length], np.int64),
        np.array(rewards, np.float32), policies, np.array([10, 20, 30, 40][:length], np.float32),
        terminated, 0.0,
    )  # fmt: skip


def test_unrolled_targets_of_a_hand_made_trajectory():
    rng = np.random.default_rng(0)
    trajectory = _trajectory([1, 2, 3, 4])
    knobs = dict(unroll_steps=2, td_steps=2, discount=0.5, two_player=False, rng=rng)
    actions, values, rewards, policies, masks = unrolled_targets(trajectory, 1, **knobs)
    assert actions.tolist() == [1, 2]
    # z_1 = u_2 + 0.5 u_3 + 0.25 nu_3 = 2 + 1.5 + 10; z_2 = 3 + 0.5 * 4 (ends); z_3 = 4
    assert values.tolist() == [13.5, 5.0, 4.0]
    assert rewards.tolist() == [0.0, 2.0, 3.0]
    assert policies.tolist() == np.eye(4, 3)[1:4].tolist() and masks.tolist() == [1, 1, 1]
    # from the last position: beyond the end, an absorbing state and a random action
    actions, values, rewards, policies, masks = unrolled_targets(trajectory, 3, **knobs)
    assert actions[0] == 1 and 0 <= actions[1] < 3
    assert values.tolist() == [4.0, 0.0, 0.0] and rewards.tolist() == [0.0, 4.0, 0.0]
    assert masks.tolist() == [1, 0, 0] and policies[1:].sum() == 0
    # cut by a time limit: the last root value bootstraps, z_2 = u_3 + 0.5 nu_4 = 3 + 20
    cut = _trajectory([1, 2, 3, 4], terminated=False)
    assert unrolled_targets(cut, 2, **knobs)[1].tolist() == [23.0, 40.0, 0.0]


def test_board_game_targets_are_the_result_for_the_player_to_move():
    # four moves, the last mover (player 1) wins: u = 0, 0, 0, +1
    trajectory = _trajectory([0, 0, 0, 1])
    values = unrolled_targets(trajectory, 0, unroll_steps=3, td_steps=None, discount=1.0,
                              two_player=True, rng=np.random.default_rng(0))[1]  # fmt: skip
    assert values.tolist() == [-1.0, 1.0, -1.0, 1.0]


def test_replay_rebuilds_episodes_across_the_ring():
    replay = TrajectoryReplay(6, (2,), np.float32, 3)
    replay.add(_trajectory([1, 2, 3, 4]), 0)
    replay.add(_trajectory([5, 6, 7]), 1)  # overwrites the first episode's first position
    assert replay.size == 6 and replay.position == 1
    assert replay.trajectory_from(1).rewards.tolist() == [2, 3, 4]
    assert replay.trajectory_from(5).rewards.tolist() == [6, 7]  # wraps around the ring
    assert replay.trajectory_from(0).rewards.tolist() == [7]
    # a window of K + n + 1 positions gives the same targets as the whole rest of the episode
    replay.add(_trajectory([1, 2, 3, 4], terminated=False), 2)
    for slot in range(6):
        knobs = dict(unroll_steps=1, td_steps=1, discount=0.5, two_player=False)
        whole = unrolled_targets(replay.trajectory_from(slot), 0, **knobs, rng=None)
        window = unrolled_targets(replay.trajectory_from(slot, 3), 0, **knobs, rng=None)
        for a, b in zip(whole, window, strict=True):
            np.testing.assert_array_equal(a, b)


def test_symmetric_copies_keep_boards_and_actions_consistent():
    game = muzero.make_game("tictactoe")
    state, observations, actions = game.initial_state(), [], []
    for action in [0, 4, 5, 8, 1]:  # X top left, O centre, ...
        observations.append(game.observation(state))
        actions.append(action)
        state = game.apply(state, action)
    policies = np.eye(9, dtype=np.float32)[[1, 2, 3, 4, 5]]
    trajectory = Trajectory(np.stack(observations), np.array(actions), np.zeros(5, np.float32),
                            policies, np.zeros(5, np.float32), True, 0.0)  # fmt: skip
    copies = symmetric_trajectories(game, trajectory)
    assert len(copies) == 8 and copies[0].actions.tolist() == actions
    assert len({tuple(c.actions.tolist()) for c in copies}) == 8  # eight different games
    for copy in copies:
        for t in range(4):  # o_{t+1} is o_t with the mover's stone at a_t, seen by the opponent
            planes = copy.observations[t].reshape(2, 9)
            after = copy.observations[t + 1].reshape(2, 9)
            placed = planes[0].copy()
            placed[copy.actions[t]] = 1
            assert after[1].tolist() == placed.tolist() and after[0].tolist() == planes[1].tolist()
        # the policies moved with the board: the cells 1, 4 and 5 of the policies at t = 0, 3
        # and 4 went where the actions of the moves that played them went
        cell = dict(zip(actions, copy.actions.tolist(), strict=True))
        assert copy.policies.argmax(1)[[0, 3, 4]].tolist() == [cell[1], cell[4], cell[5]]


# ---- the networks ---------------------------------------------------------------------------
def test_network_shapes_and_hidden_states_in_unit_range():
    board = BoardMuZeroNetwork((2, 3, 3), 9, blocks=1, channels=8, value_hidden=8).eval()
    hidden, reward, logits, value = board.initial_inference(torch.rand(4, 2, 3, 3))
    assert hidden.shape == (4, 8, 3, 3) and logits.shape == (4, 9) and value.shape == (4,)
    flat = hidden.flatten(1)
    assert torch.allclose(flat.min(1).values, torch.zeros(4))
    assert torch.allclose(flat.max(1).values, torch.ones(4))
    hidden, reward, logits, value = board.recurrent_inference(hidden, torch.tensor([0, 4, 8, 1]))
    assert hidden.shape == (4, 8, 3, 3) and reward.shape == (4,) and value.abs().max() < 1
    vector = VectorMuZeroNetwork(4, 2, hidden_size=16, layers=(32,), support=10)
    hidden, reward, logits, value = vector.recurrent_inference(
        vector.initial_inference(torch.rand(3, 4))[0], torch.tensor([0, 1, 1])
    )
    assert (
        hidden.shape == (3, 16) and reward.shape == (3, 21) and vector.scalar(value).shape == (3,)
    )
    atari = AtariMuZeroNetwork((4, 84, 84), 6, channels=8, blocks=1, support=5)
    frames = torch.zeros(2, 4, 84, 84, dtype=torch.uint8)
    hidden, _, logits, value = atari.initial_inference(frames)
    assert hidden.shape == (2, 8, 6, 6) and logits.shape == (2, 6) and value.shape == (2, 11)
    assert atari.recurrent_inference(hidden, torch.tensor([5, 0]))[0].shape == (2, 8, 6, 6)


# ---- runs -----------------------------------------------------------------------------------
def test_prioritized_sampling_exact_numbers():
    config = muzero.MuZeroConfig(env="tictactoe", batch_size=4000, priority_alpha=1.0,
                                 replay_window=4000, blocks=0, channels=2)  # fmt: skip
    learner = muzero.MuZeroLearner(config, muzero.make_train_env(config))
    learner.replay.size = 4
    learner.replay.priorities[:4] = [1, 1, 1, 9]
    slots, weights = learner._prioritized_slots()
    assert abs((slots == 3).mean() - 0.75) < 0.03  # P = 9 / 12
    # (N P)^-1: 3 for P = 1/12, 1/3 for P = 3/4; divided by the largest
    np.testing.assert_allclose(weights, np.where(slots == 3, 1 / 9, 1.0), rtol=1e-6)


def test_checkpoint_round_trip_and_exact_resume(tmp_path: Path):
    # with prioritized replay: the priorities travel in the checkpoint too; a replay that holds
    # every stored position (no slot overwritten: the first games stay in the first slots)
    tiny = [*TINY, "priority_alpha=1", "replay_window=2000"]
    one_go = api.train("muzero", "tictactoe", overrides=tiny, run_dir=tmp_path / "a", quiet=True)
    arrays, meta = checkpoint.load(one_go.dir / "checkpoints")
    assert {"net/representation.0.weight", "replay/observations", "torch_rng"} <= set(arrays)
    stored = arrays["replay/priorities"][: meta["state"]["replay_size"]]
    assert len(set(stored.tolist())) > 10  # |nu - z| and |v^0 - z|, not the default 1
    short = [*tiny, "steps=40"]
    api.train("muzero", "tictactoe", overrides=short, run_dir=tmp_path / "b", quiet=True)
    resumed = api.resume(tmp_path / "b", steps=100, quiet=True)
    final, final_meta = checkpoint.load(resumed.dir / "checkpoints")
    assert final_meta["step"] == meta["step"] and set(final) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(final[key], value, err_msg=key)
    # the learning rate decaying to a tenth over the 100 moves: the same first games, then
    # other weights
    decayed = api.train("muzero", "tictactoe", overrides=[*tiny, "lr_final_fraction=0.1"],
                        run_dir=tmp_path / "c", quiet=True)  # fmt: skip
    other, _ = checkpoint.load(decayed.dir / "checkpoints")
    assert np.array_equal(other["replay/actions"][:64], arrays["replay/actions"][:64])
    assert not np.allclose(
        other["net/representation.0.weight"], arrays["net/representation.0.weight"], atol=1e-4
    )
    rows_a = (one_go.dir / "metrics.csv").read_text().splitlines()
    rows_b = (resumed.dir / "metrics.csv").read_text().splitlines()
    header = rows_a[0].split(",")
    timed = [i for i, name in enumerate(header) if name in TIMING_COLUMNS or "seconds" in name]
    for a, b in zip(rows_a[1:], rows_b[1:], strict=True):
        a, b = a.split(","), b.split(",")
        assert [v for i, v in enumerate(a) if i not in timed] == [
            v for i, v in enumerate(b) if i not in timed
        ]


def test_replay_ratio_sets_each_iterations_gradient_steps(tmp_path: Path):
    # ceil(2 * new positions / 16) with tic-tac-toe's 8 symmetric copies: one gradient step per
    # real move, so the updates column equals the moves column, however long the games were
    run = api.train("muzero", "tictactoe", overrides=[*TINY, "replay_ratio=2", "steps=60"],
                    run_dir=tmp_path / "r", quiet=True)  # fmt: skip
    with open(run.dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 2
    assert [int(row["updates"]) for row in rows] == [int(row["step"]) for row in rows]


def test_two_self_play_workers_give_the_same_run_as_one(tmp_path: Path):
    # 8 episodes an iteration in groups of 4 (cut by episode number): both workers act; the
    # stored trajectories are the same, the weights the same up to float rounding
    settings = [*TINY, "concurrent_games=4"]  # (2 iterations of 8 episodes)
    runs = [api.train("muzero", "tictactoe", overrides=[*settings, f"workers={w}"],
                      run_dir=tmp_path / str(w), quiet=True) for w in (1, 2)]  # fmt: skip
    (one, meta_one), (two, meta_two) = [checkpoint.load(r.dir / "checkpoints") for r in runs]
    assert meta_one["state"]["games"] == meta_two["state"]["games"] == 16
    for key in ("replay/observations", "replay/actions", "replay/policies", "replay/rewards"):
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    np.testing.assert_allclose(one["net/representation.0.weight"],
                               two["net/representation.0.weight"], atol=1e-6)  # fmt: skip


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A run of a few games (one checkpoint)."""
    run_dir = tmp_path_factory.mktemp("muzero") / "r"
    return api.train("muzero", "tictactoe", overrides=[*TINY, "steps=20"], run_dir=run_dir,
                     quiet=True)  # fmt: skip


def test_play_and_move_load_a_muzero_agent(short_run):
    agent = load_agent(short_run.dir, "tictactoe", simulations=12)
    game = agent.game
    state = play_moves(game, [4, 0])
    action = agent.act(state)
    assert game.legal_mask(state)[action] and agent.last.visit_counts.sum() == 12
    assert agent.last.visit_counts[[0, 4]].sum() == 0  # never an occupied cell
    with pytest.raises(CheckpointError, match="trained on 'tictactoe'"):
        load_agent(short_run.dir, "connect4")


def test_a_crafted_replay_is_refused(short_run):
    run = short_run
    arrays, meta = checkpoint.load(run.dir / "checkpoints")
    _, config = api.load_run_config(run.dir)
    game = muzero.make_train_env(config)
    learner = muzero.MuZeroLearner(config, game)
    size, position = meta["state"]["replay_size"], meta["state"]["replay_position"]
    for key, change in [("replay/indices", 100), ("replay/actions", 9), ("replay/lengths", -50)]:
        bad = {**arrays, key: arrays[key] + change}
        with pytest.raises(CheckpointError, match="outside their episodes"):
            learner.replay.load(bad, size, position)
    bad = {**arrays, "replay/priorities": arrays["replay/priorities"] * np.float32("nan")}
    with pytest.raises(CheckpointError, match="priorities"):
        learner.replay.load(bad, size, position)
    with pytest.raises(CheckpointError, match="replay"):
        learner.replay.load(arrays, size + 1000, position)
    with pytest.raises(CheckpointError, match="replay/policies"):
        muzero.check_checkpoint(
            {**arrays, "replay/policies": arrays["replay/policies"][:, :4]}, game, config
        )
    with pytest.raises(CheckpointError, match="net/"):
        muzero.check_checkpoint(
            {k: v for k, v in arrays.items() if not k.startswith("net/value_head")}, game, config
        )


def test_cartpole_with_a_gumbel_root_runs_and_evaluates(tmp_path: Path):
    settings = ["steps=300", "games_per_iteration=4", "simulations=4", "batch_size=16",
                "train_steps=2", "support=10", "layers=16", "hidden_size=8",
                "gumbel=true", "max_episode_steps=40"]  # fmt: skip
    run = api.train("muzero", "CartPole-v1", overrides=settings, run_dir=tmp_path / "c",
                    quiet=True)  # fmt: skip
    arrays, meta = checkpoint.load(run.dir / "checkpoints")
    assert meta["step"] >= 300 and meta["state"]["updates"] > 0
    # the policy targets are Gumbel's improved policies: softmax, never a visit count's 0
    stored = arrays["replay/policies"][: meta["state"]["replay_size"]]
    assert (stored > 0).all() and np.allclose(stored.sum(1), 1.0, atol=1e-5)
    # episodes cut at 40 steps are stored as truncated (their value targets bootstrap)
    lengths = arrays["replay/lengths"][: meta["state"]["replay_size"]]
    terminated = arrays["replay/terminated"][: meta["state"]["replay_size"]]
    assert lengths.max() == 40 and not terminated[lengths == 40].any()
    report = api.evaluate_run(run.dir, episodes=2, seed=0)
    assert report["episodes"] == 2 and len(report["returns"]) == 2
    assert all(1 <= r <= 500 and r == int(r) for r in report["returns"])  # CartPole's returns
    assert math.isfinite(report["mean"])


def test_bad_input_is_one_error_line(tmp_path: Path):
    result = run_process(["train", "muzero", "--env", "Pendulum-v1", "--run-dir", tmp_path / "r"],
                         tmp_path, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "discrete actions" in lines[0] and "Box" in lines[0]
    assert not (tmp_path / "r").exists()


def test_a_misspelt_game_is_named():
    with pytest.raises(ConfigError, match="did you mean 'tictactoe'"):
        muzero.make_train_env(muzero.MuZeroConfig(env="tictac"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["layers=0"], "layers"),
        (["layers=64,x"], "layers"),
        (["solve=true"], "learned model"),
        (["batch_size=10", "replay_window=5"], "replay_window"),
        (["unroll_steps=0"], "unroll_steps"),
        (["discount=1.5"], "discount"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path: Path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        api.train("muzero", "tictactoe", overrides=overrides, run_dir=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_config_errors_in_the_library():
    with pytest.raises(ConfigError, match="replay_window"):
        muzero.MuZeroConfig(env="tictactoe", batch_size=10, replay_window=5).validate()
    with pytest.raises(ConfigError, match="sibling_weight > 0 needs a board game.*connect4"):
        muzero.MuZeroConfig(env="CartPole-v1", sibling_weight=1.0).validate()
    with pytest.raises(ConfigError, match="reward_classes = true is for a board game.*connect4"):
        muzero.MuZeroConfig(env="CartPole-v1", reward_classes=True).validate()


def test_the_dynamics_predicts_at_search_time_what_it_was_trained_to():
    # training unrolls g one batch per step k, search calls it one state at a time in eval
    # mode: g's outputs must not depend on the batch nor on train/eval mode (no BatchNorm)
    torch.manual_seed(0)
    board = BoardMuZeroNetwork((2, 3, 3), 9, blocks=1, channels=8, value_hidden=8)
    hidden = board.initial_inference(torch.rand(6, 2, 3, 3))[0].detach()
    actions = torch.tensor([0, 4, 8, 1, 2, 3])
    trained = board.train().recurrent_inference(hidden, actions)
    alone = board.eval().recurrent_inference(hidden[2:3], actions[2:3])
    for a, b in zip(trained, alone, strict=True):
        torch.testing.assert_close(a[2:3], b, rtol=1e-5, atol=1e-6)


# ---- Reanalyse ------------------------------------------------------------------------------
def _learner(env: str, **overrides) -> muzero.MuZeroLearner:
    knobs = dict(blocks=0, channels=4, value_hidden=4, hidden_size=8, layers="8", support=5,
                 simulations=6, unroll_steps=2, batch_size=8, replay_window=40, seed=0)  # fmt: skip
    config = muzero.MuZeroConfig(env=env, **{**knobs, **overrides})
    return muzero.MuZeroLearner(config, muzero.make_train_env(config))


def _store_games(learner: muzero.MuZeroLearner, episodes) -> None:
    """Store tic-tac-toe games given as move lists (uniform policies, rewards and root values
    0), episode numbers 0, 1, ..."""
    game = learner.world
    for number, moves in enumerate(episodes):
        states = [play_moves(game, moves[:t]) for t in range(len(moves))]
        observations = np.stack([game.observation(s) for s in states])
        trajectory = Trajectory(observations, np.array(moves), np.zeros(len(moves), np.float32),
                                np.full((len(moves), 9), 1 / 9, np.float32),
                                np.zeros(len(moves), np.float32), True, 0.0)  # fmt: skip
        learner.replay.add(trajectory, number)


def test_the_temperature_decays_over_the_run(monkeypatch):
    # the paper's Atari schedule in real moves: x1 to half the run, x0.5 to 3/4, x0.25 after
    config = muzero.MuZeroConfig(env="CartPole-v1", steps=1000, temperature_decay=True)
    scales = [muzero.temperature_scale(config, step) for step in (0, 499, 500, 749, 750, 5000)]
    assert scales == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert muzero.temperature_scale(muzero.MuZeroConfig(env="CartPole-v1"), 10**6) == 1.0
    # acting at 80% of the run draws every move at tau = final_temperature (2) x 0.25
    taus = []
    monkeypatch.setattr(muzero_selfplay, "select_action",
                        lambda counts, tau, rng: taus.append(tau) or 0)  # fmt: skip
    learner = _learner("CartPole-v1", steps=100, temperature_decay=True, games_per_iteration=1,
                       temperature_moves=0, final_temperature=2.0)  # fmt: skip
    learner.step = 80
    muzero._acting(learner, learner.config)
    assert len(taus) > 5 and set(taus) == {0.5}


def test_reanalysed_policy_targets_are_a_fresh_searchs():
    learner = _learner("tictactoe", reanalyse_fraction=1.0, tree_legal_moves=True)
    game, config = learner.world, learner.config
    moves = [4, 0, 8, 2, 1, 7, 3]  # X wins on the last move
    states = [play_moves(game, moves[:t]) for t in range(len(moves))]
    stored = np.full((7, 9), 1 / 9, np.float32)  # targets a fresh search cannot give
    rewards = np.zeros(7, np.float32)
    rewards[-1] = 1.0
    trajectory = Trajectory(np.stack([game.observation(s) for s in states]), np.array(moves),
                            rewards, stored, np.zeros(7, np.float32), True, 1.0)  # fmt: skip
    learner.replay.add(trajectory, 0)
    batch = learner.sample_batch()
    model = muzero.model_for(learner.network, game)
    for row, slot in enumerate(batch["slots"].tolist()):
        for k in range(3):  # the policy targets of t..t+K: visits of a fresh search at each
            if slot + k < 7:
                mcts = muzero.search_for(config, game, model, simulations=6, seed=0)
                counts = mcts.search(states[slot + k]).visit_counts
                assert batch["policies"][row, k].tolist() == pytest.approx(counts / 6)
                assert counts[[m for m in moves[: slot + k]]].sum() == 0  # legal moves only
            else:
                assert batch["policies"][row, k].sum() == 0
        # the value targets stay the game's result for the player to move
        assert batch["values"][row, 0] == (1.0 if slot % 2 == 0 else -1.0)


def test_reanalysed_value_targets_bootstrap_from_a_fresh_search():
    learner = _learner("CartPole-v1", reanalyse_fraction=1.0, td_steps=2, discount=0.5,
                       batch_size=4)  # fmt: skip
    observations = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    trajectory = Trajectory(observations, np.array([0, 1, 1, 0, 1, 0]), np.ones(6, np.float32),
                            np.full((6, 2), 0.5, np.float32), np.full(6, 99, np.float32), True,
                            6.0)  # fmt: skip
    learner.replay.add(trajectory, 0)
    batch = learner.sample_batch()
    model = muzero.model_for(learner.network, learner.world)

    def fresh(index: int):
        search = muzero.search_for(learner.config, learner.world, model, simulations=6, seed=0)
        return search.search(observations[index])

    for row, slot in enumerate(batch["slots"].tolist()):
        for k in range(3):
            t = slot + k
            if t + 2 < 6:  # z = u + 0.5 u' + 0.25 nu^fresh_{t+2}: not the stored 99
                expected = 1.5 + 0.25 * fresh(t + 2).value
            else:  # the episode ends first: no bootstrap
                expected = sum(0.5**i for i in range(max(0, 6 - t)))
            assert batch["values"][row, k].item() == pytest.approx(expected, abs=1e-5)
            if t < 6:
                counts = fresh(t).visit_counts
                assert batch["policies"][row, k].tolist() == pytest.approx(counts / 6)


@pytest.mark.parametrize("terminated", [True, False])
def test_fresh_bootstrap_values_are_the_latest_networks_values(terminated):
    learner = _learner("CartPole-v1", reanalyse_values=True, td_steps=2, discount=0.5,
                       batch_size=6)  # fmt: skip
    observations = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    trajectory = Trajectory(observations, np.array([0, 1, 1, 0, 1, 0]), np.ones(6, np.float32),
                            np.full((6, 2), 0.5, np.float32), np.full(6, 99, np.float32),
                            terminated, 6.0)  # fmt: skip
    learner.replay.add(trajectory, 0)
    learner.network.train()
    batch = learner.sample_batch()
    assert learner.network.training  # left as it was
    network = learner.network.eval()
    with torch.no_grad():
        values = network.scalar(network.initial_inference(torch.from_numpy(observations))[3])
    for row, slot in enumerate(batch["slots"].tolist()):
        for k in range(3):
            t = slot + k
            if t + 2 < 6:  # z = u + 0.5 u' + 0.25 v(o_{t+2}): not the stored 99
                expected = 1.5 + 0.25 * values[t + 2].item()
            elif t < 6 and not terminated:  # cut by a time limit: bootstrap from the last
                expected = sum(0.5**i for i in range(5 - t)) + 0.5 ** (5 - t) * values[5].item()
            else:  # the episode ends first: no bootstrap
                expected = sum(0.5**i for i in range(max(0, 6 - t)))
            assert batch["values"][row, k].item() == pytest.approx(expected, abs=1e-5)
        assert batch["policies"][row, 0].tolist() == [0.5, 0.5]  # the stored policy targets
    np.testing.assert_array_equal(learner.replay.root_values[:6], 99)  # the replay keeps its own


@pytest.mark.parametrize(("env", "overrides", "message"), [
    ("tictactoe", [], "needs an env's bootstrapped value targets"),
    ("CartPole-v1", ["reanalyse_fraction=0.5"], "choose one"),
])  # fmt: skip
def test_fresh_bootstrap_values_refuse_board_games_and_searched_reanalyse(
    tmp_path: Path, env, overrides, message
):
    with pytest.raises(ConfigError, match=message):
        api.train("muzero", env, overrides=["reanalyse_values=true", *overrides],
                  run_dir=tmp_path / "r", quiet=True)  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_reanalyse_off_samples_the_stored_targets_with_the_same_draws():
    learner = _learner("tictactoe", batch_size=5, games_per_iteration=3)
    episodes = muzero._acting(learner, learner.config)
    for number, trajectory in enumerate(episodes):
        learner.replay.add(trajectory, number)
    rng = np.random.default_rng(7)
    learner.rng = np.random.default_rng(7)
    batch = learner.sample_batch()
    slots = rng.integers(0, learner.replay.size, 5)
    assert batch["slots"].tolist() == slots.tolist()
    for row, slot in enumerate(slots.tolist()):
        knobs = dict(unroll_steps=2, td_steps=None, discount=1.0, two_player=True, rng=rng)
        targets = unrolled_targets(learner.replay.trajectory_from(slot), 0, **knobs)
        for name, target in zip(("actions", "values", "rewards", "policies", "masks"), targets,
                                strict=True):  # fmt: skip
            np.testing.assert_array_equal(batch[name][row].numpy(), target, err_msg=name)
    assert learner.rng.random() == rng.random()  # no extra draw


def test_consistency_targets_are_the_following_observations_of_the_same_episode():
    learner = _learner("tictactoe", consistency_weight=2.0, batch_size=16)
    _store_games(learner, ([4, 0, 8], [0, 1, 2, 3]))  # two episodes side by side
    batch = learner.sample_batch()
    replay = learner.replay
    for row, slot in enumerate(batch["slots"].tolist()):
        start, length = slot - replay.indices[slot], replay.lengths[slot]
        for k in (1, 2):  # K = 2: o_{t+1}, o_{t+2} where the episode has them, else masked 0
            following = batch["next_observations"][row, k - 1].numpy()
            if replay.indices[slot] + k < length:
                assert batch["next_masks"][row, k - 1] == 1
                np.testing.assert_array_equal(following, replay.observations[slot + k])
                assert replay.episodes[slot + k] == replay.episodes[slot]
                assert slot + k < start + length
            else:
                assert batch["next_masks"][row, k - 1] == 0 and not following.any()


def test_consistency_and_reward_weights_scale_their_losses_and_consistency_trains_only_g():
    learner = _learner("tictactoe", consistency_weight=2.0, blocks=1, unroll_steps=1)
    network = learner.network.train()
    rng = np.random.default_rng(0)
    batch = {
        "observations": torch.from_numpy(rng.random((4, 2, 3, 3), np.float32)),
        "next_observations": torch.from_numpy(rng.random((4, 1, 2, 3, 3), np.float32)),
        "next_masks": torch.tensor([[1.0], [1.0], [0.0], [1.0]]),
        "actions": torch.tensor([[0], [1], [2], [3]]), "values": torch.zeros(4, 2),
        "rewards": torch.zeros(4, 2), "masks": torch.zeros(4, 2),
        "policies": torch.zeros(4, 2, 9), "weights": torch.ones(4),
    }  # fmt: skip
    base, plain = muzero.muzero_loss(network, batch, 1)
    # lambda_r scales the reward part only: l(3) = l(1) + 2 l^r, the parts logged unweighted
    weighted, parts = muzero.muzero_loss(network, batch, 1, reward_weight=3.0)
    assert parts["reward_loss"] == plain["reward_loss"] > 0
    assert float(weighted.detach()) == pytest.approx(
        float(base.detach()) + 2.0 * plain["reward_loss"], abs=1e-5
    )
    state = {k: v.clone() for k, v in network.state_dict().items()}
    loss, parts = muzero.muzero_loss(network, batch, 1, consistency_weight=2.0)
    # by hand, with the same BatchNorm statistics: s^1 = g(h(o_t), a), target h(o_{t+1})
    network.load_state_dict(state)
    with torch.no_grad():
        observed = scale_hidden(network.represent(batch["next_observations"][:, 0]))
    unrolled = network.recurrent_inference(network.initial_inference(batch["observations"])[0],
                                           batch["actions"][:, 0])[0]  # fmt: skip
    heads = network.consistency
    online = heads.prediction(heads.projection(unrolled.flatten(1)))
    target = heads.projection(observed.flatten(1))
    cosine = torch.nn.functional.cosine_similarity(online, target, dim=1)
    expected = -(cosine * batch["next_masks"][:, 0]).mean()
    assert parts["consistency_loss"] == pytest.approx(float(expected.detach()), abs=1e-6)
    with_consistency = float(base.detach()) + 2.0 * float(expected.detach())
    assert float(loss.detach()) == pytest.approx(with_consistency, abs=1e-5)
    # the target branch is a constant: h gets no gradient from o_{t+1}
    network.zero_grad()
    observations = batch["next_observations"].requires_grad_()
    muzero.muzero_loss(network, batch, 1, consistency_weight=2.0)[0].backward()
    assert observations.grad is None
    assert network.consistency.prediction[0].weight.grad.abs().sum() > 0


def test_consistency_runs_log_it_and_resume_and_plain_runs_have_no_heads(tmp_path):
    run_dir = tmp_path / "run"
    api.train("muzero", "tictactoe", overrides=[*TINY, "consistency_weight=2",
              "projection_size=16"], run_dir=run_dir, quiet=True)  # fmt: skip
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(math.isfinite(float(r["consistency_loss"])) for r in rows if r["updates"] != "0")
    arrays, _ = checkpoint.load(run_dir / "checkpoints")
    assert any(key.startswith("net/consistency.") for key in arrays)
    plain = muzero.build_network(muzero.MuZeroConfig(env="tictactoe"), make_game("tictactoe"))
    assert not hasattr(plain, "consistency")


# ---- sibling moves ---------------------------------------------------------------------------
def test_sibling_targets_are_what_the_rules_say_of_the_moves_not_played():
    game = make_game("tictactoe")
    state = play_moves(game, [0, 3, 1, 4])  # X: 0 1, O: 3 4; X to move, 2 wins
    masks, rewards, ended, observations = muzero_selfplay.sibling_targets(game, state, 5)
    assert masks.tolist() == [0, 0, 1, 0, 0, 0, 1, 1, 1]  # legal, and not the move played (5)
    assert rewards.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]  # 2 wins for its mover
    assert ended.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    for action in (6, 7, 8):  # the real next position, from its mover's (O's) side
        expected = game.observation(game.apply(state, action))
        np.testing.assert_array_equal(observations[action], expected)
    assert not observations[[0, 1, 2, 3, 4, 5]].any()
    # a move that fills the board without a line: the game ends in a draw, reward 0
    state = play_moves(game, [0, 1, 2, 4, 3, 5, 7, 6])  # X to move; 8 is the last cell
    masks, rewards, ended, _ = muzero_selfplay.sibling_targets(game, state, 0)
    assert masks.tolist() == [0] * 8 + [1] and ended[8] == 1 and rewards[8] == 0


def test_sampled_positions_get_the_sibling_targets_of_their_real_states():
    learner = _learner("tictactoe", sibling_weight=1.0, batch_size=16)
    game = learner.world
    episodes = ([4, 0, 8, 2, 1, 7, 3], [0, 3, 1, 4, 5, 2, 6, 7, 8])
    _store_games(learner, episodes)
    batch = learner.sample_batch()
    replay = learner.replay
    for row, slot in enumerate(batch["slots"].tolist()):
        moves = episodes[replay.episodes[slot]]
        index = int(replay.indices[slot])
        expected = muzero_selfplay.sibling_targets(game, play_moves(game, moves[:index]),
                                                   moves[index])  # fmt: skip
        names = ("sibling_masks", "sibling_rewards", "sibling_ended", "sibling_observations")
        for name, value in zip(names, expected, strict=True):
            np.testing.assert_array_equal(batch[name][row].numpy(), value)
    # at most max_siblings of them, drawn among the same moves
    learner = _learner("tictactoe", sibling_weight=1.0, batch_size=16, max_siblings=2)
    learner.replay = replay
    capped = learner.sample_batch()
    assert capped["slots"].tolist() == batch["slots"].tolist()  # the same draws first
    masks = capped["sibling_masks"]
    assert (masks.sum(1) == torch.clamp(batch["sibling_masks"].sum(1), max=2)).all()
    for row, slot in enumerate(capped["slots"].tolist()):
        moves = episodes[replay.episodes[slot]]
        index = int(replay.indices[slot])
        legal = muzero_selfplay.sibling_targets(game, play_moves(game, moves[:index]),
                                                moves[index])[0]  # fmt: skip
        assert (masks[row].numpy() <= legal).all()


def test_the_sibling_loss_by_hand():
    learner = _learner("tictactoe", blocks=1, unroll_steps=1)
    network = learner.network.train()
    rng = np.random.default_rng(0)
    siblings = np.zeros((3, 9), np.float32)
    siblings[0, [1, 2, 5]] = 1  # three siblings, one of them (2) a win that ends the game
    siblings[1, 7] = 1  # one sibling; the third position has none
    ended = np.zeros((3, 9), np.float32)
    ended[0, 2] = 1
    batch = {
        "observations": torch.from_numpy(rng.random((3, 2, 3, 3), np.float32)),
        "actions": torch.tensor([[0], [1], [2]]), "values": torch.zeros(3, 2),
        "rewards": torch.zeros(3, 2), "masks": torch.zeros(3, 2),
        "policies": torch.zeros(3, 2, 9), "weights": torch.ones(3),
        "sibling_masks": torch.from_numpy(siblings), "sibling_ended": torch.from_numpy(ended),
        "sibling_rewards": torch.from_numpy(ended.copy()),
        "sibling_observations": torch.from_numpy(rng.random((3, 9, 2, 3, 3), np.float32)),
    }  # fmt: skip
    state = {k: v.clone() for k, v in network.state_dict().items()}
    base = float(muzero.muzero_loss(network, batch, 1)[0].detach())
    network.load_state_dict(state)
    loss, parts = muzero.muzero_loss(network, batch, 1, reward_weight=3.0, sibling_weight=0.5)
    # by hand, with the same BatchNorm statistics
    network.load_state_dict(state)
    root = network.initial_inference(batch["observations"])[0]
    with torch.no_grad():
        real = network.initial_inference(batch["sibling_observations"][[0, 0, 0, 1], [1, 2, 5, 7]])
    by_position = [[], [], []]
    for i, (row, action) in enumerate(((0, 1), (0, 2), (0, 5), (1, 7))):
        with torch.no_grad():
            _, reward, logits, value = network.recurrent_inference(
                root[row : row + 1], torch.tensor([action])
            )
        over = ended[row, action] == 1
        target_value = 0.0 if over else float(real[3][i])
        target_policy = torch.softmax(real[2][i], dim=0)
        term = 3.0 * (float(reward[0]) - float(over)) ** 2 + (float(value[0]) - target_value) ** 2
        if not over:
            term -= float((target_policy * torch.log_softmax(logits[0], dim=0)).sum())
        by_position[row].append(term)
    expected = (np.mean(by_position[0]) + np.mean(by_position[1]) + 0.0) / 3
    assert parts["sibling_loss"] == pytest.approx(expected, abs=1e-5)
    rewarded = base + 2.0 * parts["reward_loss"]  # lambda_r = 3 on the unrolled reward too
    assert float(loss.detach()) == pytest.approx(rewarded + 0.5 * expected, abs=1e-5)
    # the targets are constants: h gets no gradient from the siblings' real positions
    observations = batch["sibling_observations"].requires_grad_()
    muzero.muzero_loss(network, batch, 1, sibling_weight=0.5)[0].backward()
    assert observations.grad is None


def test_the_reward_classes_loss_is_the_cross_entropy_of_the_result():
    learner = _learner("tictactoe", reward_classes=True, blocks=1, unroll_steps=1)
    network = learner.network.train()
    state = {k: v.clone() for k, v in network.state_dict().items()}
    rng = np.random.default_rng(0)
    batch = {
        "observations": torch.from_numpy(rng.random((4, 2, 3, 3), np.float32)),
        "actions": torch.tensor([[0], [1], [2], [3]]), "values": torch.zeros(4, 2),
        "rewards": torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, -1.0], [0.0, 1.0]]),
        "masks": torch.zeros(4, 2), "policies": torch.zeros(4, 2, 9), "weights": torch.ones(4),
    }  # fmt: skip
    _, parts = muzero.muzero_loss(network, batch, 1)
    network.load_state_dict(state)  # by hand, with the same BatchNorm statistics
    hidden = network.initial_inference(batch["observations"])[0]
    logits = network.recurrent_inference(hidden, batch["actions"][:, 0])[1]
    assert logits.shape == (4, 3)
    classes = torch.tensor([2, 1, 0, 2])  # +1, 0, -1, +1
    expected = -torch.log_softmax(logits, dim=1)[torch.arange(4), classes].mean()
    assert parts["reward_loss"] == pytest.approx(float(expected.detach()), abs=1e-6)


@pytest.mark.parametrize("classes", [False, True])
def test_g_learns_the_reward_of_a_win_that_was_never_played(classes):
    # every stored game leaves X's win at 2 on the board (X: 0 1, O: 3 4) and plays 5; with
    # sibling moves g learns from the rules that 2 wins there, without them it cannot; with
    # the reward a scalar or a distribution over the results
    game = make_game("tictactoe")
    observation = game.observation(play_moves(game, [0, 3, 1, 4]))
    rewards = {}
    for weight in (0.0, 1.0):
        learner = _learner("tictactoe", sibling_weight=weight, blocks=1, channels=8,
                           value_hidden=8, batch_size=16, learning_rate=0.02,
                           reward_classes=classes)  # fmt: skip
        _store_games(learner, ([0, 3, 1, 4, 5, 2, 6, 7, 8],))  # then a draw
        for _ in range(200):
            learner.train_step()
        network = learner.network.eval()
        with torch.no_grad():
            hidden = network.initial_inference(torch.from_numpy(observation[None]))[0]
            reward = network.recurrent_inference(hidden, torch.tensor([2]))[1]
            rewards[weight] = float(network.reward_scalar(reward)[0])
    assert rewards[1.0] > 0.7 and abs(rewards[0.0]) < 0.3, rewards


def test_an_agent_with_reward_classes_trains_resumes_and_moves(tmp_path):
    overrides = [*TINY, "reward_classes=true"]
    one_go = api.train("muzero", "tictactoe", overrides=overrides, run_dir=tmp_path / "a",
                       quiet=True)  # fmt: skip
    arrays, _ = checkpoint.load(one_go.dir / "checkpoints")
    assert arrays["net/reward_head.6.weight"].shape == (3, 8)  # logits of -1, 0, +1
    api.train("muzero", "tictactoe", overrides=[*overrides, "steps=40"], run_dir=tmp_path / "b",
              quiet=True)  # fmt: skip
    resumed = api.resume(tmp_path / "b", steps=100, quiet=True)
    again, _ = checkpoint.load(resumed.dir / "checkpoints")
    for name in ("net/reward_head.6.weight", "net/representation.0.weight"):
        np.testing.assert_array_equal(again[name], arrays[name])
    agent = load_agent(one_go.dir, "tictactoe", simulations=12)
    state = play_moves(agent.game, [0, 3, 1, 4])
    assert agent.game.legal_mask(state)[agent.act(state)] and agent.last.visit_counts.sum() == 12


def test_sibling_runs_log_the_sibling_loss(tmp_path):
    run_dir = tmp_path / "run"
    api.train("muzero", "tictactoe", overrides=[*TINY, "sibling_weight=1"], run_dir=run_dir,
              quiet=True)  # fmt: skip
    with open(run_dir / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["updates"] != "0"]
    assert rows and all(float(r["sibling_loss"]) > 0 for r in rows)


# ---- search over a model that knows the rules -------------------------------------------------
class RulesModel:
    """Tic-tac-toe's real rules as a MuZero model: the latent state is the real state, the
    reward the move's result for its mover, every value 0 and every prior uniform; after the
    game's end an absorbing state (reward 0)."""

    def __init__(self, game):
        self.game = game

    def initial_inference(self, states):
        return np.full((len(states), 9), 1 / 9), np.zeros(len(states)), list(states)

    def recurrent_inference(self, latents, actions):
        game, following, rewards = self.game, [], []
        for state, action in zip(latents, actions, strict=True):
            over = state is None or game.is_terminal(state) or not game.legal_mask(state)[action]
            after = None if over else game.apply(state, action)
            following.append(after)
            rewards.append(-game.outcome(after) if after and game.is_terminal(after) else 0.0)
        size = len(latents)
        return np.full((size, 9), 1 / 9), np.zeros(size), following, np.array(rewards)


@pytest.mark.parametrize(("moves", "expected"), [
    ([0, 1, 4, 2], 8),  # X to move wins on the diagonal (a reward on the first edge)
    ([8, 4, 7], 6),  # O must block the bottom row (X's reward two plies down counts for O)
])  # fmt: skip
def test_search_over_a_model_of_the_rules_wins_and_blocks(moves, expected):
    game = muzero.make_game("tictactoe")
    config = muzero.MuZeroConfig(env="tictactoe", tree_legal_moves=True)
    mcts = muzero.search_for(config, game, RulesModel(game), simulations=200, seed=0)
    result = mcts.search(play_moves(game, moves))
    assert best_move(result) == expected
    assert result.q_values[expected] == max(result.q_values)


# ---- the arena --------------------------------------------------------------------------------
def test_the_arena_rates_the_agent_and_resumes_exactly(tmp_path: Path):
    arena = [*TINY, "steps=60", "arena_games=2", "arena_every=2", "baselines=random,alphabeta",
             "eval_simulations=4"]  # fmt: skip
    one_go = api.train("muzero", "tictactoe", overrides=arena, run_dir=tmp_path / "a", quiet=True)
    arrays, meta = checkpoint.load(one_go.dir / "checkpoints")
    ratings = meta["state"]["elo"]
    assert set(ratings) == {"random", "alphabeta", "net-1", "net-2"} and ratings["random"] == 0
    assert meta["state"]["best_generation"] == 2 and "best/value_head.6.weight" in arrays
    rows = (one_go.dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    elo = [row.split(",")[header.index("elo")] for row in rows[1:]]
    assert elo[1] != "" and float(elo[1]) == pytest.approx(ratings["net-2"])
    assert {"score_vs_best", "win_vs_random", "score_vs_alphabeta"} <= set(header)
    api.train("muzero", "tictactoe", overrides=[*arena, "steps=20"], run_dir=tmp_path / "b",
              quiet=True)  # fmt: skip
    resumed = api.resume(tmp_path / "b", steps=60, quiet=True)
    final, final_meta = checkpoint.load(resumed.dir / "checkpoints")
    assert final_meta["state"]["elo"] == ratings and set(final) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(final[key], value, err_msg=key)
