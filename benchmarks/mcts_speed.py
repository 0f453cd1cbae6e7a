"""MCTS simulations per second on Connect Four: batched network evaluation against one leaf per
network call, and against plain Python MCTS with random rollouts.

Every row searches the same positions (the empty board and a few middle-game positions from
`Test_L2_R2`'s move sequences, fixed below) with a fresh tree per search, on the CPU with one
torch thread, and reports simulations per second (the median over `--repeats`):

    network, one leaf per call   bellman.search.MCTS, batch_size = 1, with the AlphaZero network
                                 (`--blocks` residual blocks of `--channels` channels)
    network, batch B             the same search with batch_size = B (8, 16, 32) and virtual
                                 loss 1: B leaves per forward pass
    network, G games x batch B   `search_together`: G trees (the positions repeated), each
                                 with batch_size B, all their leaves evaluated in ONE forward
                                 pass per wave (up to G * B positions), as self-play plays
                                 `concurrent_games` games per process; "frozen" rows use the
                                 TorchScript-frozen network self-play uses
    MCTS + random rollouts       bellman.search.MCTS with RandomRolloutEvaluator (one playout
                                 per leaf), batch_size = 1: classic MCTS
    plain Python UCT             a minimal dict-based UCT with random playouts written out below
                                 (UCB1, c = sqrt(2)), as a textbook implementation would be

Target (issue 5): batched >= 5x the one-leaf-per-call search.

    python benchmarks/mcts_speed.py [--simulations 800] [--repeats 3] [--blocks 3] [--channels 32]
        [--games 64]

Writes benchmarks/results/mcts_speed.json.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import torch
from common import header, median, print_table, write_results

from bellman.games import make_game
from bellman.games.base import play_moves
from bellman.nets import AlphaZeroNetwork
from bellman.search import MCTS, RandomRolloutEvaluator
from bellman.search.mcts import search_together
from bellman.zero.network import NetworkEvaluator

POSITIONS = ("", "4453", "44444326", "3344455552")
"""Move sequences (columns 1-7) of the searched positions."""


def plain_uct(game, root_state, simulations: int, rng: random.Random) -> int:
    """Textbook UCT with random playouts; returns the most visited move."""
    stats: dict = {}  # state -> [visits, {action: [visits, value sum for the mover]}]
    for _ in range(simulations):
        state, path = root_state, []
        while state in stats and not game.is_terminal(state):
            visits, edges = stats[state]
            log_n = math.log(visits + 1)

            def ucb(action, edges=edges, log_n=log_n):
                n, w = edges[action]
                return math.inf if n == 0 else w / n + math.sqrt(2 * log_n / n)

            action = max(game.legal_actions(state), key=ucb)
            path.append((state, action))
            state = game.apply(state, action)
        if not game.is_terminal(state):
            stats[state] = [0, {a: [0, 0.0] for a in game.legal_actions(state)}]
        # playout from `state`: value for the player to move there
        value, sign, playout = 0.0, 1.0, state
        while not game.is_terminal(playout):
            playout = game.apply(playout, rng.choice(game.legal_actions(playout)))
            sign = -sign
        value = sign * game.outcome(playout)
        if state in stats:
            stats[state][0] += 1
        for node, action in reversed(path):
            value = -value
            stats[node][0] += 1
            edge = stats[node][1][action]
            edge[0] += 1
            edge[1] += value
    edges = stats[root_state][1]
    return max(edges, key=lambda a: edges[a][0])


def time_search(make_search, states, simulations: int) -> float:
    """Simulations per second of `make_search()(state)` over the positions."""
    search = make_search()
    search(states[0])  # warm-up (torch's first call, caches)
    started = time.perf_counter()
    for state in states:
        search(state)
    return simulations * len(states) / (time.perf_counter() - started)


def time_together(game, evaluator, states, simulations: int, games: int, batch: int) -> float:
    """Simulations per second of `games` trees searched together (`search_together`)."""
    roots = [states[i % len(states)] for i in range(games)]
    searches = [MCTS(game, evaluator, simulations=simulations, batch_size=batch)
                for _ in range(games)]  # fmt: skip
    search_together(searches[:2], roots[:2])  # warm-up
    for search in searches:
        search.reset()
    started = time.perf_counter()
    search_together(searches, roots)
    return simulations * games / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--games", type=int, default=64, help="trees searched together")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    game = make_game("connect4")
    states = [play_moves(game, game.parse_moves(moves)) for moves in POSITIONS]
    network = AlphaZeroNetwork(
        game.observation_shape, game.action_size, blocks=args.blocks, channels=args.channels,
        value_hidden=64,
    )  # fmt: skip
    evaluator = NetworkEvaluator(game, network)
    sims = args.simulations

    def network_search(batch: int):
        mcts = MCTS(game, evaluator, simulations=sims, batch_size=batch, virtual_loss=1.0)

        def search(state):
            mcts.reset()
            return mcts.search(state)

        return search

    frozen = NetworkEvaluator(game, network, frozen=True)

    def together(evaluator, batch: int):
        return lambda: time_together(game, evaluator, states, sims, args.games, batch)

    def rollout_search():
        mcts = MCTS(
            game, RandomRolloutEvaluator(game, seed=0), simulations=sims, batch_size=1,
            virtual_loss=0.0,
        )  # fmt: skip

        def search(state):
            mcts.reset()
            return mcts.search(state)

        return search

    def plain_search():
        rng = random.Random(0)
        return lambda state: plain_uct(game, state, sims, rng)

    rows = {
        "network, one leaf per call": lambda: network_search(1),
        "network, batch 8": lambda: network_search(8),
        "network, batch 16": lambda: network_search(16),
        "network, batch 32": lambda: network_search(32),
        f"network, {args.games} games x batch 1": lambda: together(evaluator, 1),
        f"network, {args.games} games x batch 4": lambda: together(evaluator, 4),
        f"network (frozen), {args.games} games x batch 1": lambda: together(frozen, 1),
        f"network (frozen), {args.games} games x batch 4": lambda: together(frozen, 4),
        "MCTS + random rollouts (bellman)": rollout_search,
        "plain Python UCT + random rollouts": plain_search,
    }
    results = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, make in rows.items():
            if "games x" in name:
                results[name].append(make()())
            else:
                results[name].append(time_search(make, states, sims))
    speeds = {name: median(values) for name, values in results.items()}
    one_leaf = speeds["network, one leaf per call"]
    table = [(name, f"{speed:,.0f}", f"{speed / one_leaf:.1f}x") for name, speed in speeds.items()]
    print(
        f"Connect Four, {sims} simulations per search, {len(states)} positions, net "
        f"{args.blocks}x{args.channels}, 1 torch thread (median of {args.repeats})"
    )
    print_table(("search", "simulations/s", "vs one leaf per call"), table)
    best = max(speeds[f"network, batch {b}"] for b in (8, 16, 32))
    across = max(speed for name, speed in speeds.items() if "games x" in name)
    print(f"batched / one-leaf: {best / one_leaf:.1f}x (target >= 5x); across games / "
          f"one-leaf: {across / one_leaf:.1f}x")  # fmt: skip
    write_results(
        "mcts_speed",
        {
            **header(1, "torch", "numpy"),
            "simulations": sims,
            "positions": list(POSITIONS),
            "network": {"blocks": args.blocks, "channels": args.channels},
            "simulations_per_second": speeds,
            "runs": results,
            "batched_over_one_leaf": best / one_leaf,
            "games_together": args.games,
            "across_games_over_one_leaf": across / one_leaf,
        },
    )


if __name__ == "__main__":
    main()
