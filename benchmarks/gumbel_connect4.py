"""Gumbel root against PUCT at a small and a large simulation budget, on Connect Four, with one
trained network.

Danihelka et al. (2022) show that Gumbel MuZero's root (Gumbel-top-k, sequential halving; no
noise at evaluation) keeps improving the policy with very few simulations, where PUCT's visit
counts do not. This benchmark measures it on a trained Connect Four agent (`--run-dir`: an
AlphaZero run, e.g. from benchmarks/alphazero_connect4.py, or a MuZero run): for each root
(`puct`, `gumbel`) and each budget (`--simulations`, default 16 and 800) the agent's move on the
first `--positions` of Pascal Pons' `Test_L2_R2` positions is scored as in
alphazero_connect4.py (result-preserving: keeps the win / draw / loss; exactly optimal). PUCT
plays the most visited move, Gumbel its chosen action A_{n+1}. Same network, same positions,
same run.

    python benchmarks/gumbel_connect4.py --run-dir runs/bench-alphazero-connect4
        [--simulations 16 800] [--positions 1000] [--labels PATH] [--results NAME]

Writes benchmarks/results/gumbel_connect4.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from alphazero_connect4 import DEFAULT_LABELS, score_positions
from common import header, print_table, write_results

from bellman import api, checkpoint
from bellman.games import make_game
from bellman.search import MCTS, best_move
from bellman.zero import muzero
from bellman.zero.network import NetworkEvaluator, load_network


def agent(run_dir: Path, simulations: int, gumbel: bool):
    """state -> move of the run's network with the chosen root and budget (no noise)."""
    spec, config = api.load_run_config(run_dir)
    arrays, _ = checkpoint.load(run_dir / "checkpoints")
    game = make_game("connect4")
    if spec.name == "muzero":
        config = dataclasses.replace(config, gumbel=gumbel)
        return muzero.agent_act(config, game, muzero.load_network(arrays, config, game),
                                simulations)  # fmt: skip
    evaluator = NetworkEvaluator(game, load_network(arrays, config, game), frozen=True)
    mcts = MCTS(game, evaluator, simulations=simulations, c_puct=config.c_puct, gumbel=gumbel,
                batch_size=config.search_batch_size, virtual_loss=config.virtual_loss)  # fmt: skip

    def act(state) -> int:
        mcts.reset()
        result = mcts.search(state)
        return result.selected if gumbel else best_move(result)

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--simulations", type=int, nargs="+", default=[16, 800])
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--results", default="gumbel_connect4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    game = make_game("connect4")
    rows, records = [], []
    for simulations in args.simulations:
        for root in ("puct", "gumbel"):
            started = time.perf_counter()
            act = agent(args.run_dir, simulations, root == "gumbel")
            scored = score_positions(game, act, args.labels, 0, args.positions)
            seconds = time.perf_counter() - started
            preserving = scored["preserving"] / scored["positions"]
            optimal = scored["optimal"] / scored["positions"]
            rows.append((simulations, root, f"{preserving:.1%}", f"{optimal:.1%}",
                         f"{seconds:.0f}"))  # fmt: skip
            records.append({"simulations": simulations, "root": root, **scored,
                            "seconds": round(seconds, 1)})  # fmt: skip
            print(*rows[-1], flush=True)
    print_table(("simulations", "root", "result-preserving", "exactly optimal", "seconds"), rows)
    write_results(args.results, {**header(1, "torch"), "run_dir": str(args.run_dir),
                                 "note": "measured on 2 shared, busy CPU cores",
                                 "results": records})  # fmt: skip


if __name__ == "__main__":
    main()
