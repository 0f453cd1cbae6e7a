"""How long a person waits for the arena's agent: one move at the arena's default simulations,
over HTTP, from a `bellman serve` process, for tic-tac-toe, Connect Four and Go 9x9 (target:
under 1 s on 2 cores).

    python benchmarks/serve_latency.py [--positions N] [--seed S]

Each game's agent is a shipped AlphaZero agent of that game when the package has one, else a
run made here with the game's tuned config (configs/alphazero-GAME.toml: its network and its
`arena_simulations`), trained for one short iteration (latency depends on the network's size
and the simulations, not on how well it learned). The server is `bellman serve` in its own
process (torch on the run's `torch_threads`, 1); this script is the browser: it POSTs
`/api/arena/NAME/move` for N positions reached by seeded random play (0-12 random moves from
the empty board, never a finished game) and times each answer from request to parsed JSON.
The first request (which loads the agent) is timed apart. Prints a Markdown table; writes
benchmarks/results/serve_latency.json (or under $BELLMAN_BENCH_RESULTS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import header, print_table, write_results

from bellman import agents, api
from bellman.games import make_game
from bellman.run import read_run_config

GAMES = ("tictactoe", "connect4", "go9")
#: A fresh run's settings: the tuned config's network and arena simulations, one quick
#: iteration of self-play (few games, few simulations) so that a checkpoint exists.
QUICK = ["steps=30", "simulations=4", "fast_simulations=4", "games_per_iteration=2",
         "concurrent_games=2", "arena_games=0", "train_steps=1", "train_threads=1"]  # fmt: skip
TARGET_SECONDS = 1.0


def shipped_agent(game: str) -> str | None:
    """The name of a shipped AlphaZero agent of `game`, or None."""
    for name in agents.names():
        config = read_run_config(agents.resolve(name))
        if config.get("algo") == "alphazero" and config.get("env") == game:
            return name
    return None


def fresh_run(game: str, root: Path) -> Path:
    """A run of the game's tuned config trained for one quick iteration (see QUICK)."""
    run_dir = root / f"alphazero-{game}"
    config = Path(api.__file__).parent / "configs" / f"alphazero-{game}.toml"
    api.train("alphazero", game, config_file=config, overrides=QUICK, run_dir=run_dir,
              quiet=True)  # fmt: skip
    return run_dir


def positions(game_name: str, count: int, seed: int) -> list[list[int]]:
    """`count` move lists of 0-12 seeded random moves that leave the game unfinished."""
    game, rng = make_game(game_name), np.random.default_rng(seed)
    found = []
    while len(found) < count:
        state, moves = game.initial_state(), []
        for _ in range(int(rng.integers(0, 13))):
            action = int(rng.choice(game.legal_actions(state)))
            after = game.apply(state, action)
            if game.is_terminal(after):
                break
            state, moves = after, [*moves, action]
        found.append(moves)
    return found


def post(url: str, body: dict) -> tuple[float, dict]:
    """(seconds from request to parsed answer, the answer)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    return time.perf_counter() - start, answer


def start_server(sources: list[str]) -> tuple[subprocess.Popen, str]:
    """`bellman serve SOURCES --port 0` and its base URL (from its first line)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bellman", "serve", *sources, "--port", "0"],
                               stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    line = process.stdout.readline()
    if not line.startswith("bellman serve: http://"):
        process.kill()
        raise SystemExit(f"bellman serve did not start: {line!r}")
    return process, line.split()[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=30, help="timed moves per game")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random positions")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="serve-latency-"))
    agents_used, sources = {}, []
    for game in GAMES:
        name = shipped_agent(game)
        if name is not None:
            agents_used[game] = {"name": name, "source": f"shipped agent '{name}'"}
            sources += ["--agent", name]
        else:
            run_dir = fresh_run(game, scratch)
            source = f"fresh run of configs/alphazero-{game}.toml"
            agents_used[game] = {"name": run_dir.name, "source": source}
            sources.append(str(run_dir))
    process, url = start_server(sources)
    rows, record = [], {**header(1, "torch", "starlette", "uvicorn"), "games": {}}
    try:
        for game in GAMES:
            name = agents_used[game]["name"]
            endpoint = f"{url}api/arena/{name}/move"
            load_seconds, first = post(endpoint, {"moves": []})
            simulations = first["search"]["simulations"]
            times, search_times = [], []
            for moves in positions(game, args.positions, args.seed):
                seconds, answer = post(endpoint, {"moves": moves})
                times.append(seconds)
                search_times.append(answer["search"]["seconds"])
            median = statistics.median(times)
            p95 = float(np.percentile(times, 95))
            record["games"][game] = {
                **agents_used[game], "simulations": simulations, "positions": len(times),
                "first_request_seconds": load_seconds, "median_seconds": median,
                "p95_seconds": p95, "max_seconds": max(times),
                "median_search_seconds": statistics.median(search_times), "seconds": times,
                "target_met": p95 < TARGET_SECONDS,
            }  # fmt: skip
            rows.append((game, agents_used[game]["source"], simulations, len(times),
                         f"{median:.3f}", f"{p95:.3f}", f"{max(times):.3f}",
                         f"{statistics.median(search_times):.3f}", f"{load_seconds:.2f}",
                         "yes" if p95 < TARGET_SECONDS else "no"))  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"\nArena move latency over HTTP (bellman serve, torch on 1 thread, {os.cpu_count()} "
          f"CPUs shown; seed {args.seed})\n")  # fmt: skip
    print_table(["game", "agent", "simulations", "moves", "median s", "p95 s", "max s",
                 "median search s", "first request s (load)", "p95 < 1 s"], rows)  # fmt: skip
    write_results("serve_latency", record)


if __name__ == "__main__":
    main()
