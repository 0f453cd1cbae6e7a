"""The strength tests: AlphaZero trained on tic-tac-toe for about a minute on one core plays
perfectly with search, and its raw network has learned the game (not just the search); MuZero
trained for under a minute has learned the game's rules in its model: its dynamics predicts the
reward of a winning move, and its search over that model takes wins it could not see before."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman.games import make_game
from bellman.search import PerfectPlayer, solved_values
from bellman.zero import muzero
from bellman.zero.arena import search_player
from bellman.zero.network import NetworkEvaluator, build_network, load_network

torch.set_num_threads(1)

#: The shipped tuned config (bellman/configs/alphazero-tictactoe.toml) with a shorter run and
#: no arena, so the test trains in about a minute on one core. (Seeds 1-5 all pass; seed 0's
#: agent lost one of its 146 games, as O after X bottom middle, O top middle.)
OVERRIDES = ["steps=6000", "arena_games=0", "seed=1"]
SIMULATIONS = 100


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("alphazero") / "run"
    started = time.perf_counter()
    api.train("alphazero", "tictactoe", overrides=OVERRIDES, run_dir=run_dir, quiet=True)
    seconds = time.perf_counter() - started
    _, config = api.load_run_config(run_dir)
    arrays, _ = checkpoint.load(Path(run_dir) / "checkpoints")
    game = make_game("tictactoe")
    return game, config, load_network(arrays, config, game), seconds


def _play(game, state, agent, perfect, agent_side: int) -> float:
    while not game.is_terminal(state):
        mover = game.to_play(state)
        state = game.apply(state, agent(state) if mover == agent_side else perfect.act(state))
    result = game.outcome(state)
    return result if game.to_play(state) == agent_side else -result


def _openings(game):
    """The empty board and every position reachable in two moves (1 + 72)."""
    start = game.initial_state()
    positions = [start]
    for a in game.legal_actions(start):
        after = game.apply(start, a)
        positions += [game.apply(after, b) for b in game.legal_actions(after)]
    return positions


def test_never_loses_to_perfect_play(trained):
    game, config, network, seconds = trained
    print(f"tic-tac-toe trained in {seconds:.1f} s")
    agent = search_player(game, NetworkEvaluator(game, network), SIMULATIONS, config)
    failures = []
    for seed, start in enumerate(_openings(game)):
        perfect = PerfectPlayer(game, seed=seed)
        value = perfect.value(start)  # for the player to move (X) at `start`
        for side in (0, 1):
            # From a two-move opening one side may be lost already; the agent must get the
            # game-theoretic result of its side (from the empty board: a draw).
            deserved = value if side == game.to_play(start) else -value
            result = _play(game, start, agent, perfect, side)
            if result < deserved:
                failures.append((game.render(start), side, result, deserved))
    assert not failures, failures


def _positions(game):
    seen, stack = set(), [game.initial_state()]
    while stack:
        state = stack.pop()
        if state in seen or game.is_terminal(state):
            continue
        seen.add(state)
        stack.extend(game.apply(state, a) for a in game.legal_actions(state))
    return sorted(seen, key=lambda s: (s.x, s.o))


def _agreement(game, positions, priors, values) -> tuple[float, float]:
    """Share of positions where the raw policy's argmax is an optimal move, and where the raw
    value has the sign of the solved value (|v| < 0.3 counting as a draw)."""
    policy_ok = value_ok = 0
    for state, prior, value in zip(positions, priors, values, strict=True):
        solved = solved_values(game, state)
        best = np.nanmax(solved)
        policy_ok += solved[int(np.argmax(np.where(np.isnan(solved), -1.0, prior)))] == best
        sign = 0.0 if abs(value) < 0.3 else np.sign(value)
        value_ok += sign == best
    return policy_ok / len(positions), value_ok / len(positions)


def test_the_network_itself_learned(trained):
    game, config, network, _ = trained
    positions = _positions(game)  # the 4,520 non-terminal positions
    policy, value = _agreement(
        game, positions, *NetworkEvaluator(game, network).evaluate(positions)
    )
    torch.manual_seed(123)
    untrained = build_network(config, game).eval()
    random_policy, random_value = _agreement(
        game, positions, *NetworkEvaluator(game, untrained).evaluate(positions)
    )
    assert random_policy < 0.7 and random_value < 0.5, (random_policy, random_value)
    assert policy >= 0.85, policy
    assert value >= 0.65, value


# ---- MuZero ------------------------------------------------------------------------------
#: MuZero's shipped config (bellman/configs/muzero-tictactoe.toml) for 1,000 self-play moves,
#: about 40 s on one core. Perfect play took 12,000 moves or more (seed 4 of the shipped config:
#: 234 s of a core), beyond what CI's 10 minutes can hold (README, "Planning with a learned
#: model"); this run shows the learning itself, which a MuZero with wrong targets, signs or
#: unrolling does not reach. Measured 2026-12-07 with K = 3 (margins over the other moves / the
#: untrained net): at 1,000 moves seed 0 has reward at a winning move 0.35 against 0.20
#: elsewhere (untrained 0.36 and 0.36), value signs 0.48 right (untrained 0.23), wins in one
#: taken by the search 0.59 (untrained 0.39); seed 1 0.38 / 0.24, 0.53, 0.51; seed 2 0.38 / 0.21,
#: 0.56, 0.50 (with K = 5, seed 1 0.43 / 0.19, 0.56, 0.60).
MUZERO_OVERRIDES = ["steps=1000", "seed=0"]
MUZERO_SIMULATIONS = 25


def _wins_in_one(game, positions) -> list[tuple]:
    """(position, its winning moves) for every position where the mover can win at once."""
    found = []
    for state in positions:
        winning = [a for a in game.legal_actions(state) if _wins(game, state, a)]
        if winning:
            found.append((state, winning))
    return found


def _wins(game, state, action) -> bool:
    after = game.apply(state, action)
    return game.is_terminal(after) and game.outcome(after) != 0  # (only the mover can win)


def _predicted_rewards(game, network, wins) -> tuple[float, float]:
    """The mean reward g predicts, r^1 of g(h(o), a), for the winning moves of `wins` and for
    the other legal moves of the same positions."""
    model = muzero.model_for(network, game)
    _, _, latents = model.initial_inference([state for state, _ in wins])
    winning, other = [], []
    for action in range(game.action_size):
        rewards = model.recurrent_inference(latents, [action] * len(wins))[3]
        for (state, moves), reward in zip(wins, rewards, strict=True):
            if action in moves:
                winning.append(reward)
            elif action in game.legal_actions(state):
                other.append(reward)
    return float(np.mean(winning)), float(np.mean(other))


def test_muzero_learns_the_game_s_rewards_and_values_and_its_search_takes_wins(tmp_path):
    # (one test, so that parallel workers never train the run twice)
    run_dir = tmp_path / "run"
    api.train("muzero", "tictactoe", overrides=MUZERO_OVERRIDES, run_dir=run_dir, quiet=True)
    _, config = api.load_run_config(run_dir)
    arrays, _ = checkpoint.load(run_dir / "checkpoints")
    game = make_game("tictactoe")
    trained = muzero.load_network(arrays, config, game)
    torch.manual_seed(123)
    untrained = muzero.build_network(config, game)
    # g predicts the reward of a winning move (1 for its mover; 0 for any other move)
    positions = _positions(game)
    wins = _wins_in_one(game, positions)  # 2,358 positions
    win_reward, other_reward = _predicted_rewards(game, trained, wins)
    random_win, random_other = _predicted_rewards(game, untrained, wins)
    print(f"reward at a winning move {win_reward:.3f}, elsewhere {other_reward:.3f} "
          f"(untrained {random_win:.3f}, {random_other:.3f})")  # fmt: skip
    assert abs(random_win - random_other) < 0.05
    assert win_reward - other_reward > 0.1, (win_reward, other_reward)
    # f's value has the sign of the solved value more often than before training
    model = muzero.model_for(trained, game)
    policy, value = _agreement(game, positions, *model.initial_inference(positions)[:2])
    untrained_model = muzero.model_for(untrained, game)
    random_policy, random_value = _agreement(
        game, positions, *untrained_model.initial_inference(positions)[:2]
    )
    print(f"policy {policy:.3f} (untrained {random_policy:.3f}), value {value:.3f} "
          f"(untrained {random_value:.3f})")  # fmt: skip
    assert value > random_value + 0.1, (value, random_value)
    # the search over the learned model plays a win in one (148 positions, every 16th)
    taken = {}
    for name, network in (("trained", trained), ("untrained", untrained)):
        agent = muzero.agent_act(config, game, network, MUZERO_SIMULATIONS)
        taken[name] = np.mean([agent(state) in moves for state, moves in wins[::16]])
    print(taken)
    assert taken["trained"] > taken["untrained"] + 0.1, taken
