"""Data or model? MuZero's network and AlphaZero's, each trained offline on the same games of the
shipped AlphaZero Connect Four agent, then measured on Pons' labelled positions.

MuZero's 2-hour Connect Four run keeps the result on 70% of Test_L2_R2's positions where
AlphaZero's keeps it on 95%. Either MuZero's own games hold it back (its first games are played
over a random model, so their moves and results say little), or its network (h, g and f trained
through K unrolled steps) learns less than AlphaZero's from the same games. This benchmark
gives both networks the same games:

    1. Teacher games: the AlphaZero agent of `--teacher` (default: the shipped agent,
       bellman/agents/connect4) plays `--games` games against itself as AlphaZero's self-play
       does (`selfplay.self_play_games`: `--teacher-simulations` PUCT simulations a move,
       Dirichlet noise at the root, the first `--teacher-temperature-moves` (16) moves drawn
       from the visit counts, every move's visit distribution recorded), in `--workers`
       processes.
    2. Each learner, built from its shipped Connect Four config (MuZero's changed by each
       `--muzero` variant's KEY=VALUE list), stores the games with their symmetric copies as
       its loop does and takes `--updates` gradient steps of its own loss on them (constant
       learning rate, one thread per learner, the learners in `--workers` processes):
         AlphaZero   (s_t, pi_t, z_t), z_t the result for the player to move
                     (`AlphaZeroLearner.train_step`)
         MuZero      trajectories (o_t, a_t, u_{t+1}, pi_t), u the result on the last move for
                     its mover, 0 before, and K = `unroll_steps` steps unrolled from each
                     sampled position (`MuZeroLearner.train_step`)
    3. Each network on the first `--positions` positions of Test_L2_R2, as
       benchmarks/alphazero_connect4.py measures its agents: result-preserving and exactly
       optimal moves of the raw policy (the most probable legal move) and of the search with
       `--simulations` (AlphaZero: PUCT over the real rules; MuZero: over its learned model).
       For MuZero also its h and f searched over the real rules (AlphaZero's search with f(h(s))
       evaluating the real positions, `RealStatePrediction`: MuZero without its g) and that
       benchmark's model check (`learned_model_check`: g one move ahead against the rules).
       `--search KEY=VALUE...` changes only MuZero's search over its model (`gumbel=true`,
       `c_puct=4`, ...), not the network it searches.

If MuZero's network reaches AlphaZero's numbers here, the gap of the self-play runs is their
data; if not, it is the network and its training, and the search over the rules with h and f
tells whether h and f or g fall short.

    python benchmarks/muzero_offline_connect4.py [--games 2000] [--teacher-simulations 64]
        [--teacher-temperature-moves 16]
        [--updates 4000] [--positions 1000] [--simulations 100] [--workers 2]
        [--muzero "" --muzero "unroll_steps=1" ...] [--no-alphazero] [--keep DIR | --load DIR]
        [--search "gumbel=true"] [--save-games FILE | --games-from FILE] [--results NAME]

`--save-games FILE` saves the teacher's games (each game's moves and search policies, one
safetensors file; refused if FILE exists); `--games-from FILE` trains on them instead of
playing new ones (the `--games` and `--teacher-*` options then come from the file), after
checking every move legal, every game over at its last move and every policy a distribution
over its position's legal moves (positions and results are rebuilt by playing the moves).
`--keep DIR` saves each trained network as DIR/<network>.safetensors (`alphazero`,
`muzero-KEY=VALUE...`); `--load DIR` measures those again without games or training.

Writes benchmarks/results/muzero_offline_connect4.json (NAME.json with --results; set
BELLMAN_BENCH_RESULTS=DIR for scratch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from alphazero_connect4 import DEFAULT_LABELS, learned_model_check, score_positions
from common import header, print_table, write_results
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as save_arrays

from bellman import api, checkpoint
from bellman import config as configs
from bellman.errors import ConfigError
from bellman.games import make_game
from bellman.games.base import IllegalMoveError, play_moves
from bellman.zero import alphazero, muzero
from bellman.zero.muzero_selfplay import Trajectory, symmetric_trajectories
from bellman.zero.network import build_network as network_of
from bellman.zero.network import load_network, load_weights, weights_bytes
from bellman.zero.play import Agent
from bellman.zero.selfplay import (
    GameRecord,
    SelfPlaySettings,
    augment,
    final_outcomes,
    play_groups,
    start_workers,
)

SHIPPED_AGENT = Path(__file__).resolve().parents[1] / "src/bellman/agents/connect4"


def teacher_games(args) -> list:
    """Step 1: the teacher's self-play `GameRecord`s (z_t unmixed: `value_target_mix = 0`)."""
    _, config = api.load_run_config(args.teacher)
    arrays, _ = checkpoint.load(args.teacher / "checkpoints", algo="alphazero")
    game = make_game("connect4")
    blob = weights_bytes(load_network(arrays, config, game))
    settings = SelfPlaySettings.of(dataclasses.replace(
        config, simulations=args.teacher_simulations, fast_simulations=0, value_target_mix=0.0,
        torch_threads=1, temperature_moves=args.teacher_temperature_moves,
    ))  # fmt: skip
    numbers = list(range(args.games))
    size = 32
    tasks = [(blob, settings, args.seed, numbers[i : i + size]) for i in range(0, args.games, size)]
    pool = start_workers(args.workers)
    try:
        played = play_groups(tasks, pool, lambda: False)
    finally:
        pool.terminate()
        pool.join()
    return [record for _, record in played]


GAMES_KEYS = ("actions", "lengths", "policies")


def save_games(path: Path, records: list, meta: dict) -> None:
    """The teacher's games as one safetensors file, atomically: every game's moves and search
    policies (`load_games` rebuilds the positions and results by playing the moves), with
    `meta` (how they were played) as JSON in the file's metadata."""
    arrays = {
        "actions": np.concatenate([np.asarray(r.actions, np.int64) for r in records]),
        "lengths": np.array([len(r.actions) for r in records], np.int64),
        "policies": np.concatenate([r.policies for r in records]).astype(np.float32),
    }
    checkpoint.atomic_write(path, save_arrays(arrays, metadata={"games": json.dumps(meta)}))


def load_games(path: Path, game) -> tuple[list, dict]:
    """`save_games`'s file, checked against `game` before use: every move legal, each game over
    at its last move and not before, each policy a distribution over the legal moves of its
    position. Returns the `GameRecord`s (positions and results rebuilt by the rules) and the
    metadata. Raises ValueError naming what is wrong."""
    try:
        with safe_open(str(path), framework="numpy") as file:
            meta = json.loads((file.metadata() or {}).get("games", "null"))
            arrays = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, json.JSONDecodeError) as e:
        raise ValueError(f"not a games file ({e})") from None
    if sorted(arrays) != sorted(GAMES_KEYS) or not isinstance(meta, dict):
        raise ValueError(f"holds {sorted(arrays)}, expected {list(GAMES_KEYS)} and metadata")
    actions, lengths, policies = (arrays[key] for key in GAMES_KEYS)
    if actions.dtype != np.int64 or lengths.dtype != np.int64 or policies.dtype != np.float32:
        raise ValueError("dtypes must be int64 actions and lengths, float32 policies")
    if (
        actions.ndim != 1
        or lengths.ndim != 1
        or lengths.min(initial=1) < 1
        or lengths.sum() != len(actions)
        or policies.shape != (len(actions), game.action_size)
    ):
        raise ValueError(f"shapes {actions.shape}, {lengths.shape}, {policies.shape} do not fit "
                         f"games of {game.action_size} moves")  # fmt: skip
    if (
        not np.isfinite(policies).all()
        or (policies < 0).any()
        or not np.allclose(policies.sum(1), 1.0, atol=1e-4)
    ):
        raise ValueError("a policy is not a probability distribution")
    records, offsets = [], np.concatenate([[0], np.cumsum(lengths)])
    for number, (start, end) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        moves = actions[start:end].tolist()
        try:  # the rules' own check of a move list (range, order, legality)
            state = play_moves(game, moves)
        except IllegalMoveError as e:
            raise ValueError(f"game {number}: {e}") from None
        if not game.is_terminal(state):
            raise ValueError(f"game {number} is not over after its {len(moves)} moves")
        state, planes, movers = game.initial_state(), [], []
        for t, action in enumerate(moves):
            if policies[start + t][~game.legal_mask(state)].any():
                raise ValueError(f"game {number}, move {t + 1}: the policy gives illegal moves "
                                 "probability")  # fmt: skip
            planes.append(game.observation(state))
            movers.append(game.to_play(state))
            state = game.apply(state, action)
        result = float(game.outcome(state))  # for the player to move at the end
        records.append(GameRecord(
            np.stack(planes), policies[start:end], final_outcomes(game, movers, state),
            result if game.to_play(state) == 0 else -result, end - start,
            actions[start:end].tolist(),
        ))  # fmt: skip
    return records, meta


def trajectory_of(record) -> Trajectory:
    """A teacher game as MuZero's trajectory: the reward of the last move is the result for its
    mover (z of the last position), 0 before; root values unused by board games' targets."""
    moves = len(record.outcomes)
    rewards = np.zeros(moves, np.float32)
    rewards[-1] = record.outcomes[-1]
    return Trajectory(
        record.planes, np.array(record.actions, np.int64), rewards, record.policies,
        np.zeros(moves, np.float32), True, record.first_player_result,
    )  # fmt: skip


def config_of(algo: str, overrides: list[str], window: int | None = None):
    """The shipped Connect Four config of `algo` with `overrides`, one thread, seed 0, and a
    replay of `window` positions (default: the config's)."""
    cls = muzero.MuZeroConfig if algo == "muzero" else alphazero.AlphaZeroConfig
    window_override = [] if window is None else [f"replay_window={window}"]
    config, _ = configs.resolve(cls, algo, "connect4", overrides=[
        *window_override, "seed=0", "torch_threads=1", "train_threads=1", *overrides,
    ])  # fmt: skip
    return config


def learner_of(algo: str, overrides: list[str], records: list, positions: int):
    """Step 2's learner, its replay filled with every symmetric copy of the games."""
    config = config_of(algo, overrides, 2 * positions)
    game = make_game("connect4")
    if algo == "alphazero":
        learner = alphazero.AlphaZeroLearner(config, game)
        for record in records:
            learner.window.add(*augment(game, record, True))
        return learner
    learner = muzero.MuZeroLearner(config, game)
    for number, record in enumerate(records):
        for copy in symmetric_trajectories(game, trajectory_of(record)):
            learner.replay.add(copy, number)
    return learner


def trained(algo: str, overrides: list[str], records: list, args):
    """Step 2 for one learner: (its config, its network in eval mode, what the row reports);
    with `--load DIR` the network saved there by `--keep` instead."""
    path = Path(args.load or args.keep or ".") / f"{'-'.join([algo, *overrides])}.safetensors"
    if args.load is not None:
        config = config_of(algo, overrides)
        build = muzero.build_network if algo == "muzero" else network_of
        network = build(config, make_game("connect4"), scratch=True)
        load_weights(network, path.read_bytes())
        return config, network.eval(), {"loaded": str(path)}
    positions = sum(len(r.outcomes) for r in records)
    learner = learner_of(algo, overrides, records, positions)
    started = time.perf_counter()
    losses = []
    for update in range(1, args.updates + 1):
        losses.append(learner.train_step()[0])
        if update % 500 == 0:
            print(f"{algo} {' '.join(overrides)}: update {update}, loss "
                  f"{np.mean(losses[-500:]):.4f}", flush=True)  # fmt: skip
    info = {"updates": args.updates, "train_seconds": round(time.perf_counter() - started, 1),
            "final_loss": float(np.mean(losses[-500:]))}  # fmt: skip
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write(path, weights_bytes(learner.network))
    return learner.config, learner.network.eval(), info


class RealStatePrediction(torch.nn.Module):
    """MuZero's f(h(o)) as an AlphaZero network of a real position (policy logits, value): the
    leaf evaluation of AlphaZero's search over the real rules, so that MuZero's h and f can be
    searched without its g."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, planes: torch.Tensor):
        _, _, logits, value = self.network.initial_inference(planes)
        return logits, value


def raw_move(algo: str, network, game, state) -> int:
    """The most probable legal move of the network's policy."""
    planes = torch.from_numpy(game.observation(state)[None])
    with torch.inference_mode():
        if algo == "muzero":
            logits = network.initial_inference(planes)[2]
        else:
            logits = network(planes)[0]
    logits = logits[0].numpy().copy()
    logits[~game.legal_mask(state)] = -np.inf
    return int(np.argmax(logits))


def shares(game, agent, args) -> dict:
    """Result-preserving and exactly optimal shares of `agent`'s moves on the positions."""
    counted = score_positions(game, agent, args.labels, 0, args.positions)
    return {"result_preserving": counted["preserving"] / counted["positions"],
            "exactly_optimal": counted["optimal"] / counted["positions"]}  # fmt: skip


def job(task: tuple) -> dict:
    """Steps 2 and 3 for one learner, in a worker process."""
    algo, overrides, records, args = task
    torch.set_num_threads(1)
    config, network, info = trained(algo, overrides, records, args)
    game = make_game("connect4")
    if algo == "muzero":
        searched = config_of("muzero", [*overrides, *args.search])
        search = muzero.agent_act(searched, game, network, args.simulations)
    else:
        search = Agent(game, network, config, args.simulations).act
    result = {
        "algo": algo, "overrides": overrides, **info,
        "raw": shares(game, lambda s: raw_move(algo, network, game, s), args),
        "search": shares(game, search, args),
    }  # fmt: skip
    if algo == "muzero":  # h and f over the rules (AlphaZero's search), and g one move ahead
        rules = Agent(game, RealStatePrediction(network), config_of("alphazero", []),
                      args.simulations)  # fmt: skip
        result["rules_search"] = shares(game, rules.act, args)
        result["model"] = learned_model_check(network, args.labels, args.positions)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=SHIPPED_AGENT)
    parser.add_argument("--games", type=int, default=2000)
    parser.add_argument("--teacher-simulations", type=int, default=64)
    parser.add_argument("--teacher-temperature-moves", type=int, default=16,
                        help="teacher moves drawn from the visit counts (42: all)")  # fmt: skip
    parser.add_argument("--updates", type=int, default=4000)
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--simulations", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--muzero", action="append", default=None,
                        help="a MuZero variant: KEY=VALUE overrides ('' = shipped)")  # fmt: skip
    parser.add_argument("--alphazero", action=argparse.BooleanOptionalAction, default=True,
                        help="train and measure AlphaZero's network too")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None,
                        help="save each trained network as DIR/<network>.safetensors")  # fmt: skip
    parser.add_argument("--load", type=Path, default=None,
                        help="measure the networks --keep saved in DIR")  # fmt: skip
    parser.add_argument("--search", type=str.split, default=[],
                        help="KEY=VALUE overrides of MuZero's search only")  # fmt: skip
    parser.add_argument("--save-games", type=Path, default=None,
                        help="save the teacher's games to FILE (a new .safetensors)")  # fmt: skip
    parser.add_argument("--games-from", type=Path, default=None,
                        help="train on the games --save-games saved in FILE instead")  # fmt: skip
    parser.add_argument("--results", default="muzero_offline_connect4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = [v.split() for v in (args.muzero or [""])]
    names = (["alphazero"] if args.alphazero else []) + ["-".join(["muzero", *v]) for v in variants]
    missing = [n for n in names if args.load and not (args.load / f"{n}.safetensors").is_file()]
    if missing:
        parser.error(f"--load {args.load}: no {missing[0]}.safetensors (saved by --keep)")
    if args.load and (args.save_games or args.games_from):
        parser.error("--load measures saved networks: it takes no --save-games or --games-from")
    if args.save_games and args.games_from:
        parser.error("--save-games and --games-from: choose one")
    if args.save_games and args.save_games.exists():
        parser.error(f"--save-games {args.save_games}: exists already (choose a new file)")
    if args.save_games and not args.save_games.parent.is_dir():
        parser.error(f"--save-games {args.save_games}: no folder {args.save_games.parent}")
    if args.teacher_temperature_moves < 0:
        parser.error(f"--teacher-temperature-moves {args.teacher_temperature_moves}: must be >= 0")
    try:  # every config before any game is played
        for v in variants:
            config_of("muzero", [*v, *args.search])
    except ConfigError as e:
        parser.error(str(e))
    started = time.perf_counter()
    teacher = {
        "teacher": str(args.teacher),
        "teacher_simulations": args.teacher_simulations,
        "teacher_temperature_moves": args.teacher_temperature_moves,
        "seed": args.seed,
    }
    if args.games_from:
        try:
            records, teacher = load_games(args.games_from, make_game("connect4"))
        except ValueError as e:
            parser.error(f"--games-from {args.games_from}: {e}")
        teacher["games_from"] = str(args.games_from)
    else:
        records = [] if args.load else teacher_games(args)
    if args.save_games:
        save_games(args.save_games, records, teacher)
    moves = sum(len(r.outcomes) for r in records)
    generated = time.perf_counter() - started
    print(f"{len(records)} teacher games, {moves} moves in {generated:.0f} s", flush=True)
    tasks = [("alphazero", [], records, args)] if args.alphazero else []
    tasks += [("muzero", v, records, args) for v in variants]
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(job, tasks))
    searched = f"; search {' '.join(args.search)}" if args.search else ""
    rows = [[r["algo"], (" ".join(r["overrides"]) or "shipped")
             + (searched if r["algo"] == "muzero" else ""),
             r.get("updates", "loaded"),
             r.get("train_seconds", ""), f"{r['raw']['result_preserving']:.1%}",
             f"{r['search']['result_preserving']:.1%}", f"{r['search']['exactly_optimal']:.1%}",
             f"{r['rules_search']['result_preserving']:.1%}" if "model" in r else "",
             f"{r['model']['q_correlation']:.2f}" if "model" in r else "",
             f"{r['model']['reward_at_wins']:.2f}" if "model" in r else ""]
            for r in results]  # fmt: skip
    print_table(("network", "config", "updates", "train s", "raw policy: result-preserving",
                 f"search {args.simulations}: result-preserving", "exactly optimal",
                 "h, f searched over the rules", "corr(Q_model, Q_rules)",
                 "g's reward at wins"), rows)  # fmt: skip
    write_results(args.results, {
        **header(1, "torch"), **teacher, "games": len(records), "moves": moves,
        "teacher_seconds": round(generated, 1), "positions": args.positions,
        "simulations": args.simulations, "search_overrides": args.search,
        "learners": results,
    })  # fmt: skip


if __name__ == "__main__":
    main()
