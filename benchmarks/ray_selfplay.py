"""AlphaZero self-play games per minute: Ray actors against the process pool, on this machine.

Both play exactly the same games: each round is one iteration's self-play (`--games` games of
`bellman train alphazero`'s shipped settings for the game, in groups of `concurrent_games`) with
fresh weights bytes (a new version, as after every promotion), through the loop's own
`zero.selfplay.play_groups`, once on `--workers` spawned processes (`start_workers`) and once on
`--workers` Ray actors (`distributed.selfplay.SelfPlayActors`, weights put in the object store
once per round). The rounds alternate pool, Ray, Ray, pool, ... (ABBA) so that a change of the
machine's load touches both; each side's first round (processes starting, imports, TorchScript)
is a warm-up and is not counted (its time is reported; Ray's own start apart). Both sides use
one torch thread per worker.

Target (issue 21): Ray >= 0.9x the process pool's games per minute on CI's 2 cores.

    python benchmarks/ray_selfplay.py [--game tictactoe] [--games 64] [--rounds 4] [--workers 2]

Writes benchmarks/results/ray_selfplay.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from common import header, print_table, ratio, write_results

from bellman import config as configs
from bellman.distributed import cluster
from bellman.distributed.selfplay import SelfPlayActors
from bellman.games import make_game
from bellman.zero.alphazero import AlphaZeroConfig
from bellman.zero.network import build_network, weights_bytes
from bellman.zero.selfplay import SelfPlaySettings, play_groups, start_workers


def round_tasks(config: AlphaZeroConfig, network, games: int, first: int) -> list:
    """One round's groups (the loop's `_self_play_tasks`), with a fresh weights version."""
    blob, settings = weights_bytes(network), SelfPlaySettings.of(config)
    numbers = list(range(first, first + games))
    size = config.concurrent_games
    return [(blob, settings, config.seed, numbers[i : i + size]) for i in range(0, games, size)]


def timed_round(pool, tasks) -> tuple[float, int, list]:
    """(seconds, games, records) of one round on `pool`."""
    started = time.perf_counter()
    played = play_groups(tasks, pool, lambda: False)
    return time.perf_counter() - started, len(played), [record for _, record in played]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="tictactoe")
    parser.add_argument("--games", type=int, default=64, help="games per round")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per side")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    concurrent = max(1, args.games // (2 * args.workers))  # two groups per worker and round
    config, _ = configs.resolve(AlphaZeroConfig, "alphazero", args.game,
                                overrides=[f"concurrent_games={concurrent}"])  # fmt: skip
    network = build_network(config, make_game(args.game))
    pool = start_workers(args.workers)  # (its processes start in the warm-up round)
    started = time.perf_counter()
    cluster.connect("", args.workers)
    ray_start = time.perf_counter() - started
    actors = SelfPlayActors(args.workers)  # (started in the warm-up round too)
    sides = {"process pool": pool, "ray actors": actors}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    warm_up: dict[str, float] = {}
    games = 0
    order = ["process pool", "ray actors"]
    for number in range(args.rounds + 1):  # round 0: the warm-up of both
        tasks = round_tasks(config, network, args.games, number * args.games)
        records = {}
        for name in order if number % 2 == 0 else order[::-1]:
            elapsed, games, records[name] = timed_round(sides[name], tasks)
            if number:
                seconds[name].append(elapsed)
            else:
                warm_up[name] = elapsed
        same = all(a.actions == b.actions for a, b in zip(*records.values(), strict=True))
        assert same, "the two sides played different games"
        print(
            f"round {number}: "
            + ", ".join(f"{name} {s[-1] if number else 0:.2f} s" for name, s in seconds.items())
        )
    pool.terminate()
    pool.join()
    actors.terminate()
    rates = {name: 60 * games / statistics.median(s) for name, s in seconds.items()}
    rows = [
        (name, f"{rates[name]:.0f}", f"{warm_up[name]:.1f}",
         f"{ratio(rates[name], rates['process pool']):.2f}x")
        for name in sides
    ]  # fmt: skip
    print(f"\n{args.game}, {args.games} games a round in groups of {concurrent}, "
          f"{args.workers} workers, 1 torch thread each, {os.cpu_count()} CPUs, "
          f"median of {args.rounds} rounds (ABBA); Ray's own start "
          f"{ray_start:.1f} s\n")  # fmt: skip
    print_table(["self-play on", "games / minute", "warm-up round (s)", "vs pool"], rows)
    record = header(1, "torch", "ray")
    record.update(
        game=args.game, games_per_round=args.games, concurrent_games=concurrent,
        workers=args.workers, rounds=args.rounds, seconds=seconds, games_per_minute=rates,
        warm_up_seconds=warm_up, ray_start_seconds=ray_start,
        ratio=ratio(rates["ray actors"], rates["process pool"]),
        load_average=os.getloadavg(),
    )  # fmt: skip
    write_results("ray_selfplay", record)


if __name__ == "__main__":
    main()
