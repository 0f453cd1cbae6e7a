"""The strength test: AlphaZero trained on tic-tac-toe for about a minute on one core plays
perfectly with search, and its raw network has learned the game (not just the search)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman.games import make_game
from bellman.search import PerfectPlayer, solved_values
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


def _agreement(game, network, positions) -> tuple[float, float]:
    """Share of positions where the raw policy's argmax is an optimal move, and where the raw
    value has the sign of the solved value (|v| < 0.3 counting as a draw)."""
    priors, values = NetworkEvaluator(game, network).evaluate(positions)
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
    policy, value = _agreement(game, network, positions)
    torch.manual_seed(123)
    untrained = build_network(config, game).eval()
    random_policy, random_value = _agreement(game, untrained, positions)
    assert random_policy < 0.7 and random_value < 0.5, (random_policy, random_value)
    assert policy >= 0.85, policy
    assert value >= 0.65, value
