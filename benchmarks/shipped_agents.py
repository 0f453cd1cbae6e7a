"""The trained agents that ship in the package (src/bellman/agents/): pack a trained run as a
shipped agent with its model card, and measure every shipped agent with bellman's own evaluation.

    python benchmarks/shipped_agents.py pack NAME RUN_DIR --command "bellman train ..."
        [--machine TEXT] [--results FILE.json] [--models ROLE=RUN_DIR ...] [--set KEY=VALUE]
    python benchmarks/shipped_agents.py [NAME ...]      measure again; print the table

`pack` copies the run without its training state (`bellman.agents.pack`), measures the copy and
writes its card.json. `--set KEY=VALUE` changes a line of the shipped config.toml that only
acting reads (tic-tac-toe: `arena_simulations`, the agent's default search in `bellman play`);
the card records it under `packed_with`. The measures, one per kind of agent:
    gymnasium envs  `bellman eval --agent NAME`: the greedy policy's return over EPISODES seeded
                    episodes (seeds 0..N-1), `api.evaluate_run`
    tic-tac-toe     the check of tests/zero/test_strength.py (with muzero_tictactoe.py's
                    `openings` and `play`): against the perfect player from the empty board and
                    every two-move opening (73 positions), as either side, the agent gets at
                    least the game-theoretic result (146 games)
    Connect Four    the numbers of `python benchmarks/alphazero_connect4.py --skip-training
                    --run-dir RUN_DIR` (its JSON, `--results`): wins against classic MCTS and
                    depth-2 alpha-beta, result-preserving moves on Pascal Pons' positions
    RLHF recipe     the numbers of `python benchmarks/rlhf_sentiment.py --out DIR` (its JSON):
                    the held-out true score, KL to SFT and perplexity of each model; the recipe's
                    models ship side by side (`--models ROLE=RUN_DIR`: sft, reward, dpo; the
                    packed RUN_DIR is the PPO policy)

Without `pack` it measures the shipped agents again (the gymnasium and tic-tac-toe measures;
Connect Four and the recipe are measured by their own benchmarks) and prints the table; writes
benchmarks/results/shipped_agents.json. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from common import header, machine, print_table, write_results
from muzero_tictactoe import openings, play

from bellman import agents, api
from bellman.run import read_run_config

#: Seeded evaluation episodes per env (Taxi's episodes are short; the others' up to 500 steps).
EPISODES = {"Taxi-v4": 100, "CartPole-v1": 20, "Pendulum-v1": 20}
PERFECT_PLAY = "tictactoe"


def measure_episodes(name: str, env: str) -> dict:
    """`bellman eval --agent NAME --episodes N` (writes nothing)."""
    episodes = EPISODES.get(env, 20)
    result = api.evaluate_run(agents.resolve(name), episodes, seed=0, write=False)
    result["command"] = f"bellman eval --agent {name} --episodes {episodes}"
    result["headline"] = (
        f"mean return {result['mean']:.4g} +/- {result['std']:.3g} over {episodes} episodes "
        f"(seeds 0..{episodes - 1})"
    )
    return result


def measure_perfect_play(name: str) -> dict:
    """The agent (its default simulations) against PerfectPlayer from 73 openings, both sides:
    games where it got less than the game-theoretic result of its side are losses."""
    from bellman.search import PerfectPlayer
    from bellman.zero.play import load_agent

    agent = load_agent(agents.resolve(name), PERFECT_PLAY)
    game = agent.game
    games = short = 0
    for seed, start in enumerate(openings(game)):
        perfect = PerfectPlayer(game, seed=seed)
        value = perfect.value(start)
        for side in (0, 1):
            deserved = value if side == game.to_play(start) else -value
            games += 1
            short += int(play(game, start, agent.act, perfect, side) < deserved)
    return {
        "games": games, "openings": games // 2, "below_game_value": short,
        "simulations": agent.mcts.simulations,
        "command": "python benchmarks/shipped_agents.py tictactoe",
        "headline": (f"{'never loses' if short == 0 else f'{short} games lost'} to perfect "
                     f"play ({games} games from the empty board and every two-move opening, "
                     f"both sides; {agent.mcts.simulations} simulations)"),
    }  # fmt: skip


def from_connect4(results: Path) -> dict:
    record = json.loads(results.read_text(encoding="utf-8"))
    mcts, alphabeta = record["vs_mcts"], record["vs_alphabeta_depth2"]
    positions = record["test_L2_R2"]
    return {
        **{key: record[key] for key in ("self_play_moves", "games", "updates", "training_seconds",
                                        "agent_simulations", "workers")},
        "vs_mcts": mcts, "vs_alphabeta_depth2": alphabeta, "test_L2_R2": positions,
        "command": "python benchmarks/alphazero_connect4.py --skip-training --run-dir RUN_DIR "
                   f"--simulations {record['agent_simulations']} --games {mcts['games']} "
                   f"--positions {positions['positions']}",
        "headline": (f"{mcts['win_rate']:.0%} wins vs MCTS {mcts['simulations']} rollouts, "
                     f"{alphabeta['win_rate']:.0%} vs depth-2 alpha-beta ({mcts['games']} games "
                     f"each), {positions['result_preserving']:.1%} result-preserving moves "
                     f"({positions['positions']} positions; {record['agent_simulations']} "
                     "simulations)"),
    }  # fmt: skip


def from_rlhf(results: Path) -> dict:
    record = json.loads(results.read_text(encoding="utf-8"))
    models = record["results"]
    sft, ppo, dpo = models["sft"], models["ppo"], models["dpo"]
    return {
        "models": models, "reward_model_accuracy": record["reward_model_accuracy"],
        "pretrain_perplexity": record["pretrain_perplexity"], "sizes": record["sizes"],
        "command": "python benchmarks/rlhf_sentiment.py --out DIR",
        "headline": (f"true sentiment score (VADER) {sft['eval_reward_true']:+.2f} SFT -> "
                     f"{ppo['eval_reward_true']:+.2f} PPO (KL {ppo['eval_kl']:.1f}), "
                     f"{dpo['eval_reward_true']:+.2f} DPO; reward model accuracy "
                     f"{record['reward_model_accuracy']:.2f}"),
    }  # fmt: skip


def measure(name: str, env: str, results: Path | None) -> dict:
    if env == PERFECT_PLAY:
        return measure_perfect_play(name)
    if env == "connect4":
        return from_connect4(results)
    if results is not None:
        return from_rlhf(results)
    return measure_episodes(name, env)


def pack(args) -> None:
    """Copy the run (and the recipe's other models) into the package; measure; write the card."""
    destination = agents.AGENTS_DIR / args.name
    agents.pack(args.run_dir, destination)
    models = {"policy": "."}
    for item in args.models:
        role, _, run_dir = item.partition("=")
        agents.pack(Path(run_dir), destination / role)
        models[role] = role
    config_path = destination / "config.toml"
    for item in args.set:
        key, _, value = item.partition("=")
        text, count = re.subn(rf"(?m)^{re.escape(key)} = .*$", f"{key} = {value}",
                              config_path.read_text(encoding="utf-8"))  # fmt: skip
        if count != 1:
            raise SystemExit(f"error: --set {item}: no '{key} = ' line in {config_path}")
        config_path.write_text(text, encoding="utf-8")
    config = read_run_config(destination)
    card = {
        "name": args.name, "algorithm": config["algo"], "env": config["env"],
        "headline": "", "command": args.command, "evaluation": {}, "config": config,
        "date": time.strftime("%Y-%m-%d"), "machine": args.machine,
        "platform": machine(), "models": models, "packed_with": args.set,
    }  # fmt: skip
    agents.write_card(args.name, card)  # the agent exists: measure it where it ships
    evaluation = measure(args.name, config["env"], args.results)
    card.update(headline=evaluation.pop("headline"), evaluation=evaluation)
    print(f"wrote {agents.write_card(args.name, card)}: {card['headline']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="agents to measure (default: every one), or "
                        "`pack NAME RUN_DIR`")  # fmt: skip
    parser.add_argument("--command", help="pack: the command that trained the run")
    parser.add_argument("--machine", default="2 shared CPU cores", help="pack: where it trained")
    parser.add_argument("--results", type=Path, help="pack: the JSON of the agent's benchmark")
    parser.add_argument("--models", action="append", default=[], metavar="ROLE=RUN_DIR")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="pack: change a config.toml line that only acting reads")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.names[:1] == ["pack"]:
        if len(args.names) != 3 or not args.command:
            parser.error("pack NAME RUN_DIR --command COMMAND")
        args.name, args.run_dir = args.names[1], Path(args.names[2])
        pack(args)
        return
    rows, measured = [], {}
    for name in args.names or agents.names():
        card = agents.card(name)
        if card["env"] in ("connect4",) or "models" in card and len(card["models"]) > 1:
            headline = card["headline"] + " (its card: measured by its own benchmark)"
        else:
            started = time.perf_counter()
            measured[name] = measure(name, card["env"], None)
            measured[name]["seconds"] = time.perf_counter() - started
            headline = measured[name]["headline"]
        rows.append((name, card["algorithm"], card["env"], headline, card["command"]))
    print_table(("agent", "algorithm", "env", "measured", "trained by"), rows)
    write_results("shipped_agents", {**header(1, "torch"), "agents": measured})


if __name__ == "__main__":
    main()
