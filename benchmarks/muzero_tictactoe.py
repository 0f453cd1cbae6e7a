"""MuZero on tic-tac-toe against perfect play: the strength test AlphaZero passes
(tests/zero/test_strength.py), for MuZero, with the training time it takes.

Each seed trains `bellman train muzero --env tictactoe` with the shipped config
(src/bellman/configs/muzero-tictactoe.toml), then the agent (its search over the learned model,
`--simulations` per move, no noise) plays the perfect player (`bellman.search.PerfectPlayer`,
exact minimax with random tie-breaks) from the empty board and from all 72 two-move positions,
as X and as O (146 games). A game is failed when the agent gets less than the position's
game-theoretic result for its side. Target (issue 19): no failed game.

    python benchmarks/muzero_tictactoe.py [--seeds 0 1 2] [--simulations 25 50]
        [--set KEY=VALUE ...] [--stages 2000 4000 ...]

`--stages` gives a learning curve: each seed's run is measured at each of these move counts
(trained to the first, then resumed to the next, which is the same run bit for bit).

Writes benchmarks/results/muzero_tictactoe.json (set BELLMAN_BENCH_RESULTS=DIR for scratch).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common
import torch

from bellman import api, checkpoint
from bellman.games import make_game
from bellman.search import PerfectPlayer
from bellman.zero import muzero


def openings(game) -> list:
    """The empty board and every position two moves into the game (1 + 72)."""
    start = game.initial_state()
    positions = [start]
    for first in game.legal_actions(start):
        after = game.apply(start, first)
        positions += [game.apply(after, second) for second in game.legal_actions(after)]
    return positions


def play(game, state, agent, perfect, side: int) -> float:
    """The result for `side` (0: X) of the agent against perfect play from `state`."""
    while not game.is_terminal(state):
        mover = game.to_play(state)
        state = game.apply(state, agent(state) if mover == side else perfect.act(state))
    result = game.outcome(state)
    return result if game.to_play(state) == side else -result


def failures(run_dir: Path, simulations: int) -> list[str]:
    """The games (of 146) where the agent got less than its side's game-theoretic result."""
    _, config = api.load_run_config(run_dir)
    arrays, _ = checkpoint.load(run_dir / "checkpoints")
    game = make_game("tictactoe")
    agent = muzero.agent_act(config, game, muzero.load_network(arrays, config, game), simulations)
    failed = []
    for seed, start in enumerate(openings(game)):
        perfect = PerfectPlayer(game, seed=seed)
        value = perfect.value(start)  # for the player to move at `start`
        for side in (0, 1):
            deserved = value if side == game.to_play(start) else -value
            if play(game, start, agent, perfect, side) < deserved:
                failed.append(f"{game.render(start)!r} as {'XO'[side]}")
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--simulations", type=int, nargs="+", default=[25, 50])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--stages",
        type=int,
        nargs="+",
        default=[],
        help="measure at these self-play move counts (default: the config's steps)",
    )
    parser.add_argument("--name", default="muzero_tictactoe")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            run_dir = Path(root) / f"seed{seed}"
            seconds = 0.0
            for stage, moves in enumerate(args.stages or [None]):
                started = time.perf_counter()
                if stage == 0:
                    steps = [] if moves is None else [f"steps={moves}"]
                    api.train("muzero", "tictactoe", run_dir=run_dir, quiet=True,
                              overrides=[f"seed={seed}", *args.overrides, *steps])  # fmt: skip
                else:
                    api.resume(run_dir, steps=moves, quiet=True)
                seconds += time.perf_counter() - started
                _, meta = checkpoint.load(run_dir / "checkpoints")
                failed = {s: failures(run_dir, s) for s in args.simulations}
                counts = {s: len(games) for s, games in failed.items()}
                runs.append({"seed": seed, "moves": meta["step"], "seconds": round(seconds, 1),
                             "failed_games_of_146": counts, "failed_games": failed})  # fmt: skip
                rows.append([seed, meta["step"], f"{seconds:.0f}",
                             *(counts[s] for s in args.simulations)])  # fmt: skip
                print(*rows[-1], flush=True)
    common.print_table(
        ["seed", "self-play moves", "training seconds",
         *(f"failed of 146 ({s} simulations)" for s in args.simulations)], rows,
    )  # fmt: skip
    common.write_results(args.name, {
        **common.header(1, "torch"), "overrides": args.overrides, "runs": runs,
        "note": "measured on 2 shared, busy CPU cores",
    })  # fmt: skip


if __name__ == "__main__":
    main()
