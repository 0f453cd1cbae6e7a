"""What MuZero Reanalyze costs: the time to sample one tic-tac-toe minibatch with and without
fresh searches (`reanalyse_fraction`), on one thread.

The replay holds one iteration of self-play (40 games with the shipped config's search, 8
symmetric copies each); the learner then samples `--repeats` minibatches of `--batch-size`
positions with each fraction. With f = 1 every sampled position is searched again at t..t+K
(K = 5, `simulations` each), all of a minibatch's searches together.

    python benchmarks/muzero_reanalyse.py [--fractions 0 0.25 1] [--repeats 2]

Writes benchmarks/results/muzero_reanalyse.json (set BELLMAN_BENCH_RESULTS=DIR for scratch).
"""

from __future__ import annotations

import argparse
import time

import common
import torch

from bellman.config import tuned_defaults
from bellman.zero import muzero


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.25, 1.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tuned, _ = tuned_defaults("muzero", "tictactoe")
    rows, record = [], []
    base = None
    for fraction in args.fractions:
        config = muzero.MuZeroConfig(env="tictactoe", **{
            **tuned, "reanalyse_fraction": fraction, "batch_size": args.batch_size, "seed": 0,
        })  # fmt: skip
        learner = muzero.MuZeroLearner(config, muzero.make_train_env(config))
        for number, trajectory in enumerate(muzero._acting(learner, config)):
            for copy in muzero.symmetric_trajectories(learner.world, trajectory):
                learner.replay.add(copy, number)
        started = time.perf_counter()
        for _ in range(args.repeats):
            learner.sample_batch()
        seconds = (time.perf_counter() - started) / args.repeats
        base = seconds if base is None else base
        rows.append([fraction, config.simulations, f"{seconds:.3f}", f"x{seconds / base:.0f}"])
        record.append({"fraction": fraction, "simulations": config.simulations,
                       "seconds_per_minibatch": round(seconds, 4)})  # fmt: skip
        print(*rows[-1], flush=True)
    common.print_table(
        ["reanalyse_fraction", "simulations", "seconds per minibatch", "ratio to the first"], rows
    )
    common.write_results("muzero_reanalyse", {
        **common.header(1, "torch"), "batch_size": args.batch_size, "runs": record,
        "note": "measured on 2 shared, busy CPU cores",
    })  # fmt: skip


if __name__ == "__main__":
    main()
