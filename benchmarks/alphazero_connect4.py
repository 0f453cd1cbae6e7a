"""AlphaZero (or MuZero, `--algo muzero`, or AlphaGo, `--algo alphago`) on Connect Four for a
fixed wall-clock budget, then measured against fixed players, against exact scores and, with
`--versus RUN`, head to head against another run's agent.

    1. Train `bellman train alphazero --env connect4` (the shipped tuned config,
       bellman/configs/alphazero-connect4.toml) with `--workers` self-play processes; after
       `--minutes` the run is stopped the way Ctrl-C stops it (SIGINT: it finishes its iteration
       and saves a checkpoint), so the budget is the whole pipeline's wall-clock time.
    2. The trained agent (its network with `--simulations` PUCT simulations per move, no noise,
       the most visited move) plays `--games` games against each opponent, half as first player:
           classic MCTS   bellman.search.MCTS with uniform priors and one random rollout per
                          leaf, 1000 simulations per move (`--mcts-simulations`)
           alpha-beta     bellman.search.AlphaBetaPlayer, depth 2, Connect4.heuristic
       Opponents break ties / draw rollouts with seeds that differ per game, so the games differ.
       Games and positions are spread over `--workers` processes; each is seeded by its own
       index and the agent searches afresh on every move, so the split does not change a result.
    3. On Pascal Pons' labelled test positions `Test_L2_R2.labels` (read in place from
       `--labels`, default ../shared/data/connect4/, never copied; its README gives the
       format), the agent's move on each position is
           result-preserving  sign(s_move) == sign(max_c s_c)   (keeps the win / draw / loss)
           exactly optimal    s_move == max_c s_c
       Reference, result-preserving: random 58.0%, plain UCT with 1000 rollouts 91.2%.
    4. MuZero only: its learned model against the real rules one move ahead on the same
       positions (`model_check`): how far a search over the model can be trusted.

Targets (issue 5), within a 2-hour, 2-core budget: >= 90% wins against both opponents and >= 95%
result-preserving moves. `--algo muzero` trains `bellman train muzero --env connect4` instead
(bellman/configs/muzero-connect4.toml, `--workers` self-play processes) and
evaluates its agent (search over its learned model) the same way; issue 19's target for it is
>= 90% result-preserving. `--algo alphago` runs AlphaGo's pipeline (`bellman train alphago --env
connect4`: expert games of depth-3 alpha-beta, the SL, rollout, RL and value networks; `--set
steps=4` by default, the search ablation being an evaluation) to its end or `--minutes`; its
agent is the lambda-mixed search of its networks, its rollouts seeded per game or slice of
positions. Issue 20's "AlphaGo Zero beats AlphaGo", measured at equal compute:

    python benchmarks/alphazero_connect4.py --algo alphago --minutes 120 --simulations 800
    python benchmarks/alphazero_connect4.py --minutes <AlphaGo's training minutes> \
        --simulations 800 --versus runs/bench-alphago-connect4

`--versus RUN` plays `--games` more games against RUN's agent (any of the three algorithms, at
`--simulations`), colours alternating.

    python benchmarks/alphazero_connect4.py [--algo alphazero|muzero] [--minutes 120]
        [--workers 2] [--games 50]
        [--simulations 3200] [--positions 1000] [--run-dir DIR] [--skip-training] [--solve]
        [--set KEY=VALUE ...] [--results NAME] [--versus RUN]

Writes benchmarks/results/alphazero_connect4.json (muzero_connect4.json with --algo muzero,
NAME.json with --results).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from common import header, print_table, write_results

from bellman import api, checkpoint
from bellman.games import make_game
from bellman.games.base import play_moves
from bellman.run import read_run_config
from bellman.search import MCTS, AlphaBetaPlayer, RandomRolloutEvaluator
from bellman.zero import muzero
from bellman.zero.arena import play_match
from bellman.zero.go_players import alphago_player
from bellman.zero.play import load_agent as load_trained_agent

NAMES = {"alphazero": "AlphaZero", "muzero": "MuZero", "alphago": "AlphaGo"}
DEFAULT_LABELS = Path(__file__).resolve().parents[2] / "shared/data/connect4/Test_L2_R2.labels"


def train(args, env: str = "connect4") -> float:
    """Step 1: train `args.algo` on `env` into `args.run_dir` until the run ends or `args.minutes`
    are spent (then a SIGINT stops it as Ctrl-C would: it saves and returns); the seconds spent.
    AlphaGo trains its stages 1-4 (`steps=4`: the search is measured afterwards); AlphaZero and
    MuZero play self-play in `args.workers` processes. Also go_vs_gnugo.py's `--train`."""
    stopper = threading.Timer(args.minutes * 60, lambda: os.kill(os.getpid(), signal.SIGINT))
    stopper.daemon = True
    started = time.perf_counter()
    stopper.start()
    try:
        extra = {"alphazero": [f"workers={args.workers}"], "muzero": [f"workers={args.workers}"],
                 "alphago": ["steps=4"]}  # fmt: skip
        api.train(
            args.algo, env,
            overrides=[*extra.get(args.algo, []), f"seed={args.seed}", *args.set],
            run_dir=args.run_dir, quiet=True,
        )  # fmt: skip
    finally:
        stopper.cancel()
    return time.perf_counter() - started


def mcts_player(game, simulations: int, seed: int):
    mcts = MCTS(
        game, RandomRolloutEvaluator(game, seed=seed), simulations=simulations, batch_size=1,
        virtual_loss=0.0,
    )  # fmt: skip

    def act(state) -> int:
        mcts.reset()
        return int(np.argmax(mcts.search(state).visit_counts))

    return act


def load_agent(run_dir: Path, simulations: int, solve: bool = False):
    """The trained agent as `bellman move` runs it, as (game, seed -> act): AlphaZero and MuZero
    (`bellman.zero.play.load_agent`: the frozen network, `simulations` simulations, no noise,
    most visited; with `solve`, or when the run's config has it, MCTS-Solver and its
    `best_move`) search deterministically, whatever the seed; AlphaGo's lambda-mixed search
    (`go_players.alphago_player`) draws its rollouts from the seed."""
    if read_run_config(run_dir).get("algo") == "alphago":
        return make_game("connect4"), (
            lambda seed: alphago_player(run_dir, "connect4", simulations, seed)[0]
        )
    agent = load_trained_agent(run_dir, "connect4", simulations, solve=solve)
    return agent.game, lambda seed: agent.act


_worker: dict = {}
AGENT_SEEDS = {"positions": 3000, "mcts": 5000, "alphabeta": 6000, "versus": 7000}
"""The agent's seed in a job: this plus the job's game (or first position) index."""


def _start_worker(run_dir: Path, args: dict) -> None:
    torch.set_num_threads(1)
    _worker["game"], _worker["agent"] = load_agent(run_dir, args["simulations"], args["solve"])
    if args["versus"] is not None:
        _worker["versus"] = load_agent(args["versus"], args["simulations"])[1]
    _worker["args"] = args


def _job(job: tuple):
    """One evaluation job in a worker: a game against a fixed opponent or another run's agent,
    or a slice of positions.

    Every job is seeded by its own index and the agent searches afresh on every move, so the
    results do not depend on how jobs are spread over processes.
    """
    game, args = _worker["game"], _worker["args"]
    kind = job[0]
    agent = _worker["agent"](AGENT_SEEDS[kind] + job[1])  # (AlphaGo's rollouts; else unused)
    if kind == "positions":
        return score_positions(game, agent, args["labels"], job[1], job[2])
    g = job[1]
    if kind == "mcts":
        opponent = mcts_player(game, args["mcts_simulations"], 1000 + g)
    elif kind == "versus":
        opponent = _worker["versus"](4000 + g)
    else:
        opponent = AlphaBetaPlayer(game, 2, heuristic=game.heuristic, seed=2000 + g).act
    if g % 2 == 0:  # the agent moves first in even games
        return play_match(game, agent, opponent)
    return -play_match(game, opponent, agent)


def tally(results: list[float]) -> dict:
    """Wins, draws and losses of the agent, and the win rate with its 95% Wilson interval."""
    games = len(results)
    wins, draws = sum(r > 0 for r in results), sum(r == 0 for r in results)
    return {"games": games, "wins": wins, "draws": draws, "losses": games - wins - draws,
            "win_rate": wins / games, "win_rate_95": wilson_interval(wins, games)}  # fmt: skip


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (it stays inside [0, 1] near 0 or 1,
    where the normal approximation does not): 50 games at 90% give about 79%-96%."""
    p, n = successes / trials, trials
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def wins_text(tallied: dict) -> str:
    low, high = tallied["win_rate_95"]
    return (
        f"{tallied['win_rate']:.0%} ({tallied['wins']}/{tallied['games']}, {tallied['draws']} "
        f"draws, {tallied['losses']} losses; 95% CI {low:.0%}-{high:.0%})"
    )


def labelled_positions(game, labels: Path, start: int, stop: int) -> list:
    """Positions [start, stop) of a `.labels` file as (state, the exact score of each column;
    below -1000 for a full column)."""
    with open(labels, encoding="utf-8") as handle:
        rows = [line.split() for line in handle]
    return [(play_moves(game, game.parse_moves(fields[0])), np.array([int(s) for s in fields[2:]]))
            for fields in [row for row in rows if len(row) == 9][start:stop]]  # fmt: skip


def keeps_result(scores: np.ndarray, move: int) -> bool:
    """Whether `move` is result-preserving: sign(s_move) == sign(max_c s_c)."""
    return bool(np.sign(scores[move]) == np.sign(scores[scores > -1000].max()))


def score_positions(game, agent, labels: Path, start: int, stop: int) -> dict:
    """Step 3: result-preserving and exactly optimal move counts on positions [start, stop)."""
    preserving = optimal = total = 0
    for state, scores in labelled_positions(game, labels, start, stop):
        move = agent(state)
        preserving += int(keeps_result(scores, move))
        optimal += int(scores[move] == scores[scores > -1000].max())
        total += 1
    return {"positions": total, "preserving": preserving, "optimal": optimal}


def model_check(run_dir: Path, labels: Path, positions: int) -> dict:
    """Step 4 for a MuZero run's latest checkpoint (`learned_model_check`)."""
    _, config = api.load_run_config(run_dir)
    arrays, _ = checkpoint.load(run_dir / "checkpoints")
    game = make_game("connect4")
    return learned_model_check(muzero.load_network(arrays, config, game), labels, positions)


def learned_model_check(network, labels: Path, positions: int) -> dict:
    """Step 4, MuZero only: its learned model against the real rules one move ahead, on the
    positions of step 3. For every position s and legal column a (v is the value for the
    player to move, so the mover's is -v):

        learned   r, s^1 = g(h(s), a):   Q_model(s, a) = r - f_v(s^1)
        real      s' = s after a:         Q_rules(s, a) = the result if a ends the game,
                                                          else -f_v(h(s'))

    Returns the correlation of Q_model and Q_rules over all (s, a), the result-preserving rate
    of one move of lookahead (argmax_a Q) with each, and the mean reward g predicts from h(s')
    for the replies that win at once (target 1) and for the other replies (target 0), and the
    mean Q_model of the replies that win (r - f_v(s^1), target 1: what the tree backs up)."""
    game = make_game("connect4")
    labelled = labelled_positions(game, labels, 0, positions)
    q_model, q_rules = np.full((2, len(labelled), 7), -np.inf)
    follow_ups, replies = [], []  # (position, column, s') not over; (s', reply, wins)
    for i, (state, _) in enumerate(labelled):
        for a in game.legal_actions(state):
            after = game.apply(state, a)
            if game.is_terminal(after):
                q_rules[i, a] = -game.outcome(after)
                continue
            follow_ups.append((i, a, after))
            for b in game.legal_actions(after):
                end = game.apply(after, b)  # b wins at once: the player to move then has lost
                replies.append((len(follow_ups) - 1, b, game.is_terminal(end)
                                and game.outcome(end) == -1.0))  # fmt: skip
    with torch.inference_mode():
        hidden = network.initial_inference(torch.from_numpy(
            game.observations([state for state, _ in labelled])))[0]  # fmt: skip
        for a in range(7):
            moves = torch.full((len(labelled),), a)
            _, reward, _, value = network.recurrent_inference(hidden, moves)
            legal = [game.legal_mask(state)[a] for state, _ in labelled]
            q_model[legal, a] = (network.reward_scalar(reward) - value).numpy()[legal]
        after_hidden, _, _, after_value = network.initial_inference(
            torch.from_numpy(game.observations([after for _, _, after in follow_ups]))
        )
        rows, columns, _ = zip(*follow_ups, strict=True)
        q_rules[list(rows), list(columns)] = -after_value.numpy()
        which, reply, wins = (np.array(column) for column in zip(*replies, strict=True))
        _, reward, _, reply_value = network.recurrent_inference(
            after_hidden[torch.from_numpy(which)], torch.from_numpy(reply)
        )
        reward = network.reward_scalar(reward)
        reward, reply_q = reward.numpy(), (reward - reply_value).numpy()
    legal = np.isfinite(q_rules)

    def preserving(q: np.ndarray) -> float:
        moves = q.argmax(1)
        return float(
            np.mean(
                [keeps_result(scores, m) for (_, scores), m in zip(labelled, moves, strict=True)]
            )
        )

    return {
        "positions": len(labelled),
        "q_correlation": float(np.corrcoef(q_model[legal], q_rules[legal])[0, 1]),
        "lookahead_preserving_model": preserving(q_model),
        "lookahead_preserving_rules": preserving(q_rules),
        "winning_replies": int(wins.sum()),
        "reward_at_wins": float(reward[wins].mean()) if wins.any() else math.nan,
        "reward_elsewhere": float(reward[~wins].mean()),
        "q_at_wins": float(reply_q[wins].mean()) if wins.any() else math.nan,
    }


def print_model(model: dict) -> None:
    print_table(
        ("its learned model one move ahead (step 4)", "model", "real rules"),
        [
            ("corr(Q_model, Q_rules) over the legal moves", f"{model['q_correlation']:.2f}", ""),
            ("result-preserving, argmax of one move of lookahead",
             f"{model['lookahead_preserving_model']:.1%}",
             f"{model['lookahead_preserving_rules']:.1%}"),
            (f"reward g predicts at {model['winning_replies']} replies that win",
             f"{model['reward_at_wins']:.2f}", "1"),
            ("reward g predicts at the other replies", f"{model['reward_elsewhere']:.2f}", "0"),
            (f"Q_model (r - v) at the {model['winning_replies']} replies that win",
             f"{model['q_at_wins']:.2f}", "1"),
        ],
    )  # fmt: skip


def evaluate_agent(args) -> tuple[dict, dict, dict]:
    """Steps 2 and 3 in `--workers` processes: games vs MCTS, vs alpha-beta, the positions, and
    the games against `--versus` (None without it)."""
    chunk = 50
    jobs = [("mcts", g) for g in range(args.games)]
    jobs += [("alphabeta", g) for g in range(args.games)]
    jobs += [("positions", i, min(i + chunk, args.positions))
             for i in range(0, args.positions, chunk)]  # fmt: skip
    jobs += [("versus", g) for g in range(args.games if args.versus else 0)]
    shared = {"simulations": args.simulations, "mcts_simulations": args.mcts_simulations,
              "labels": args.labels, "solve": args.solve, "versus": args.versus}  # fmt: skip
    with ProcessPoolExecutor(
        max(1, args.workers), mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker, initargs=(args.run_dir, shared),
    ) as pool:  # fmt: skip
        results = list(pool.map(_job, jobs))
    games = args.games
    versus_mcts, versus_alphabeta = tally(results[:games]), tally(results[games : 2 * games])
    counted = [r for r in results[2 * games :] if isinstance(r, dict)]
    head_to_head = [r for r in results[2 * games :] if not isinstance(r, dict)]
    total = sum(c["positions"] for c in counted)
    positions = {
        "positions": total,
        "result_preserving": sum(c["preserving"] for c in counted) / total,
        "exactly_optimal": sum(c["optimal"] for c in counted) / total,
    }
    return versus_mcts, versus_alphabeta, positions, tally(head_to_head) if head_to_head else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("alphazero", "muzero", "alphago"), default="alphazero")
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--games", type=int, default=50)
    parser.add_argument("--simulations", type=int, default=3200)
    parser.add_argument("--mcts-simulations", type=int, default=1000)
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="default: runs/bench-ALGO-connect4")  # fmt: skip
    parser.add_argument("--skip-training", action="store_true", help="evaluate --run-dir as is")
    parser.add_argument(
        "--solve",
        action="store_true",
        help="the agent searches with MCTS-Solver (whatever the run's config)",
    )
    parser.add_argument("--results", default=None,
                        help="name of the JSON written to benchmarks/results/ "
                        "(default: ALGO_connect4)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the shipped config (repeatable)")  # fmt: skip
    parser.add_argument("--versus", type=Path, default=None, metavar="RUN",
                        help="also play --games games against RUN's agent")  # fmt: skip
    args = parser.parse_args()
    args.run_dir = args.run_dir or Path(f"runs/bench-{args.algo}-connect4")
    args.results = args.results or f"{args.algo}_connect4"
    torch.set_num_threads(1)
    seconds = None if args.skip_training else train(args)
    _, meta = checkpoint.load(args.run_dir / "checkpoints")
    started = time.perf_counter()
    algo = read_run_config(args.run_dir).get("algo")
    versus_mcts, versus_alphabeta, positions, head_to_head = evaluate_agent(args)
    state = meta["state"]
    print(
        f"{NAMES.get(algo, algo)} on Connect Four: "
        + (
            f"{meta['step']} self-play moves ({state['games']} games, {state['updates']} updates)"
            if algo != "alphago"
            else f"pipeline to stage {meta['step']}"
        )
        + (f" in {seconds / 60:.1f} min" if seconds is not None else "")
        + f"; agent {args.simulations} simulations per move"
        + (" with MCTS-Solver" if args.solve else "")
    )
    print_table(
        ("measure", "result", "target"),
        [
            (f"wins vs MCTS {args.mcts_simulations} rollouts", wins_text(versus_mcts), ">= 90%"),
            ("wins vs alpha-beta depth 2", wins_text(versus_alphabeta), ">= 90%"),
            (f"result-preserving moves ({positions['positions']} of Test_L2_R2)",
             f"{positions['result_preserving']:.1%}", ">= 95%"),
            ("exactly optimal moves", f"{positions['exactly_optimal']:.1%}", ""),
            *([(f"wins vs {args.versus}", wins_text(head_to_head), "")] if head_to_head else []),
        ],
    )  # fmt: skip
    model = model_check(args.run_dir, args.labels, args.positions) if algo == "muzero" else None
    if model:
        print_model(model)
    write_results(
        args.results,
        {
            **header(1, "torch", "numpy"),
            "algo": algo,
            "minutes": args.minutes,
            "training_seconds": seconds,
            "workers": args.workers,
            "overrides": args.set,
            "self_play_moves": meta["step"] if algo != "alphago" else None,
            "stage": meta["step"] if algo == "alphago" else None,
            "games": state.get("games"),
            "updates": state.get("updates"),
            "agent_simulations": args.simulations,
            "agent_solver": args.solve,
            "evaluation_seconds": time.perf_counter() - started,
            "vs_mcts": {**versus_mcts, "simulations": args.mcts_simulations},
            "vs_alphabeta_depth2": versus_alphabeta,
            "test_L2_R2": positions,
            "versus": {"run": str(args.versus), **head_to_head} if head_to_head else None,
            "model": model,
        },
    )


if __name__ == "__main__":
    main()
