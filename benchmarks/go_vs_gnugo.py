"""A bellman Go agent against GNU Go: win rate with its 95% interval and the Elo difference.

    python benchmarks/go_vs_gnugo.py --checkpoint RUN [--games 50] [--levels 1,5,10]
        [--simulations N] [--seed 0] [--results NAME] [--scoring gnugo|tromp-taylor] [--jobs 1]
        [--train alphago|alphazero|muzero --minutes 180 [--env go9] [--workers 2] [--set K=V]]

With `--train ALGO` the script first trains a new run into RUN (`bellman train ALGO --env go9`,
the shipped config and `--set` overrides; AlphaGo's pipeline generates its GnuGo expert games
itself, so the budget covers data and every stage) until it ends or `--minutes` of wall-clock
time are spent, when it is stopped as Ctrl-C stops it (it saves its last state), and then
measures that run: issue 20's 3-hour budget, AlphaGo and AlphaZero side by side:

    python benchmarks/go_vs_gnugo.py --train alphago --minutes 180 --checkpoint runs/go9-alphago \
        --games 50 --levels 1 --results go9_alphago_3h
    python benchmarks/go_vs_gnugo.py --train alphazero --minutes 180 \
        --checkpoint runs/go9-alphazero --games 50 --levels 1 --results go9_alphazero_3h

For each GnuGo level L, `--games` games on the run's board (komi 7.5, Tromp-Taylor for
bellman's legality). Scoring: by default GnuGo's `final_score` (GnuGo plays Japanese rules and
passes leaving stones it judges dead, which its score removes); `--scoring tromp-taylor`
plays computer Go servers' way, GnuGo with `--chinese-rules --capture-all-dead` (it captures
every dead stone before it passes) and the final board scored as it stands, the rules bellman's
agents learn and search by (under GnuGo's scoring an agent that passes in a position its rules
score as won can lose it). bellman plays black in the even games and white in the odd ones,
against `gnugo --mode gtp --level L --seed SEED+g` (its own random choices differ per game). The
agent is any Go run GTP plays (`bellman gtp`: AlphaZero, AlphaGo), searched afresh each move
with the run's arena simulations or `--simulations`, and loaded afresh for each game (its
generators from their seeds), so a game is the same whether `--jobs N` plays N at a time, each
in a process of its own, or one at a time.

Printed per level: wins / games, the wins as black and as white, the win rate with its 95%
Wilson interval, and the Elo difference -400 log10(1 / p - 1) of bellman over GnuGo at that
level (with the interval's ends put through the same formula; +-inf at 0% or 100%). Every game
is saved as SGF under results/go_vs_gnugo-sgf/ (BELLMAN_BENCH_RESULTS=DIR moves results and
games to DIR), and the record, each game's colour and result included, goes to
results/go_vs_gnugo.json (NAME.json with --results).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from alphazero_connect4 import tally, train, wins_text
from common import header, print_table, results_path, write_results

from bellman import __version__, checkpoint
from bellman.checkpoint import atomic_write_text
from bellman.games.sgf import to_sgf
from bellman.zero.go_players import load_go_player
from bellman.zero.gtp import GtpEngine, LocalClient, gnugo_command, play_against_gnugo


def elo_difference(p: float) -> float:
    """The Elo difference that makes the expected score p (+-inf at 1 and 0)."""
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return -400 * math.log10(1 / p - 1)


def exit_with_parent(parent: int) -> None:
    """A pool worker's initializer: a daemon thread that ends this worker (and, by closing its
    pipe, its GnuGo) once `parent` is gone, so that a SIGTERM to the script stops every game."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def play_game(args, level: int, g: int, sgf_dir: Path) -> tuple[float, int, dict]:
    """Game `g` against GnuGo at `level` (bellman black when g is even), with a fresh agent
    loaded for it, so that each game is the same whatever the --jobs; its SGF written. Returns
    (+1 / 0 / -1 for bellman, moves, the record)."""
    player, game, _ = load_go_player(args.checkpoint, args.simulations)
    torch.set_num_threads(1)  # the record's torch_threads: one core a game (--jobs: a process)
    ours = LocalClient(GtpEngine(player, game, version=__version__))
    bellman_black = g % 2 == 0
    played, won = play_against_gnugo(ours, game, level, args.seed + g, bellman_black,
                                     area_rules=args.scoring == "tromp-taylor")  # fmt: skip
    names = ("bellman", f"GNU Go level {level}")
    atomic_write_text(sgf_dir / f"L{level}-{g:03d}.sgf", to_sgf(
        game, played.moves, black=names[0 if bellman_black else 1],
        white=names[1 if bellman_black else 0], result=played.result,
    ))  # fmt: skip
    print(f"  level {level} game {g + 1}/{args.games}: bellman "
          f"{'black' if bellman_black else 'white'}, {played.result}", flush=True)  # fmt: skip
    record = {"bellman": "black" if bellman_black else "white", "result": played.result}
    return 0.0 if won is None else 1.0 if won else -1.0, len(played.moves), record


def play_level(args, level: int, sgf_dir: Path) -> dict:
    """`args.games` games against GnuGo at `level`, colours alternating, `args.jobs` at a time
    (each in its own process: the agents' searches are Python, one core each)."""
    started = time.perf_counter()
    if args.jobs == 1:
        played = [play_game(args, level, g, sgf_dir) for g in range(args.games)]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            args.jobs, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)
        ) as pool:
            games = range(args.games)
            played = list(pool.map(play_game, [args] * len(games), [level] * len(games), games,
                                   [sgf_dir] * len(games)))  # fmt: skip
    results = [result for result, _, _ in played]
    lengths = [length for _, length, _ in played]
    records = [record for _, _, record in played]
    tallied = tally(results)
    low, high = tallied["win_rate_95"]
    score = (tallied["wins"] + 0.5 * tallied["draws"]) / tallied["games"]
    return {
        "level": level, **tallied, "elo": elo_difference(score),
        "elo_95": (elo_difference(low), elo_difference(high)),
        "mean_moves": sum(lengths) / len(lengths),
        "seconds": round(time.perf_counter() - started, 1),
        "wins_by_colour": {colour: [sum(r > 0 for r, g in zip(results, records, strict=True)
                                        if g["bellman"] == colour),
                                    sum(g["bellman"] == colour for g in records)]
                           for colour in ("black", "white")},
        "game_results": records,
    }  # fmt: skip


def latest_step(run_dir: Path) -> int:
    """The step of the run's latest checkpoint: self-play moves (AlphaZero, MuZero) or the last
    stage trained (AlphaGo: 4 = all four networks), which a time budget may cut short."""
    return int(checkpoint.load(run_dir / "checkpoints")[1]["step"])


def json_safe(row: dict) -> dict:
    """A level's row for the JSON record: an infinite Elo difference (a score of 0 or 1) becomes
    null, since JSON has no infinity."""
    finite = lambda x: x if math.isfinite(x) else None  # noqa: E731
    return row | {"elo": finite(row["elo"]), "elo_95": [finite(x) for x in row["elo_95"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a Go run directory")
    parser.add_argument("--games", type=int, default=50)
    parser.add_argument("--levels", default="1,5,10", help="GnuGo levels, comma-separated")
    parser.add_argument("--simulations", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="games played at once, each in its own process (one core each)",
    )
    parser.add_argument("--results", default="go_vs_gnugo")
    parser.add_argument(
        "--scoring",
        choices=("gnugo", "tromp-taylor"),
        default="gnugo",
        help="who scores a game: GnuGo's final_score (dead stones removed by "
        "its judgement) or Tromp-Taylor, GnuGo capturing dead stones first",
    )
    parser.add_argument(
        "--train",
        choices=("alphago", "alphazero", "muzero"),
        default=None,
        help="first train a new run of this algorithm into --checkpoint",
    )
    parser.add_argument("--minutes", type=float, default=180.0, help="--train's budget")
    parser.add_argument("--env", default="go9", help="--train's board (go9, go13, go19)")
    parser.add_argument("--workers", type=int, default=2, help="--train's self-play processes")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--train: override a value of the shipped config (repeatable)",
    )
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    levels = [int(level) for level in args.levels.split(",")]
    for level in levels:
        gnugo_command(level, 0)  # every level valid and gnugo installed, before any game
    seconds = None
    if args.train:
        if args.checkpoint.exists():
            parser.error(f"--train makes a new run, and {args.checkpoint} exists")
        args.algo, args.run_dir = args.train, args.checkpoint
        seconds = train(args, args.env)
        print(f"trained {args.train} on {args.env} for {seconds / 60:.1f} min, to step "
              f"{latest_step(args.checkpoint)}", flush=True)  # fmt: skip
    _, game, description = load_go_player(args.checkpoint, args.simulations)
    sgf_dir = results_path(args.results).with_name(f"{args.results}-sgf")
    sgf_dir.mkdir(parents=True, exist_ok=True)
    rows = [play_level(args, level, sgf_dir) for level in levels]
    print_table(
        ["GnuGo level", "bellman's wins", "as black / as white", "Elo difference (95% CI)",
         "mean moves", "seconds"],
        [[r["level"], wins_text(r), "{} of {} / {} of {}".format(
            *r["wins_by_colour"]["black"], *r["wins_by_colour"]["white"]),
          f"{r['elo']:+.0f} ({r['elo_95'][0]:+.0f} to {r['elo_95'][1]:+.0f})",
          f"{r['mean_moves']:.0f}", r["seconds"]] for r in rows],
    )  # fmt: skip
    record = header(1, "torch") | {
        "agent": description, "checkpoint": str(args.checkpoint), "board": game.size,
        "komi": game.komi, "simulations": args.simulations, "scoring": args.scoring,
        "jobs": args.jobs, "levels": [json_safe(r) for r in rows],
        "sgf_dir": str(sgf_dir), "checkpoint_step": latest_step(args.checkpoint),
        "trained": None if seconds is None else {
            "algo": args.train, "env": args.env, "minutes": args.minutes,
            "training_seconds": seconds, "workers": args.workers, "overrides": args.set},
    }  # fmt: skip
    write_results(args.results, record)


if __name__ == "__main__":
    main()
