"""`make demo`: a tour of the lectures, each stop a few real `bellman` commands and their output.

Stops so far:
    1. Exact planning: the Recycling robot's Q* beside the lecture's table.
    2. The exploration trap: a greedy learner settles on 1, an epsilon-greedy one finds 1000.
    3. Q-learning on Taxi-v4 to the optimal return, with its learning curve.
    4. DQN on CartPole-v1 until solved, with its learning curve and a GIF of the agent.
    5. Policy gradients on CartPole-v1: REINFORCE, A2C and PPO until solved, one plot, a GIF.
    6. PPO on Pendulum-v1 (continuous actions): the swing-up, its curve and a GIF.
    7. AlphaZero on tic-tac-toe: a minute of self-play, then games against a perfect player.
Later issues add their stops at the end. Run directories go to runs/ (printed at the end).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs"
STAMP = time.strftime("%Y%m%d-%H%M%S")
run_dirs: list[Path] = []


def bellman(*args: str, show: bool = True) -> str:
    """Run `bellman ARGS`, echo the command and (optionally) its output; stop the tour on error."""
    print(f"$ bellman {' '.join(args)}", flush=True)
    result = subprocess.run(  # stderr (progress bars, errors) goes straight to the terminal
        [sys.executable, "-m", "bellman", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        sys.exit(f"demo stopped: `bellman {' '.join(args)}` exited {result.returncode}")
    if show:
        print(result.stdout, end="", flush=True)
    return result.stdout


def heading(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def stop_recycling() -> None:
    heading("1. Exact planning: the recycling robot (value iteration, gamma = 0.9)")
    bellman("plan", "bellman/Recycling-v0", "--gamma", "0.9")
    table = json.loads(
        bellman("plan", "bellman/Recycling-v0", "--gamma", "0.9", "--format", "json", show=False)
    )
    lecture = {"S2": (2, 9), "S3": (8.1, 10), "S4": (9, 10)}
    print("state  lecture (left, right)  bellman (left, right)")
    for state, values in lecture.items():
        ours = tuple(table["q"][table["states"].index(state)])
        mark = "ok" if np.allclose(ours, values) else "DIFFERENT"
        print(f"{state:<6} {values!s:<22} {ours!s:<22} {mark}")


def stop_exploration_trap() -> None:
    heading("2. The exploration trap: greedy vs epsilon-greedy Q-learning")
    for label, epsilon in (("greedy", "0"), ("epsilon-greedy", "0.1")):
        run_dir = RUNS / f"demo-{STAMP}-trap-{label}"
        bellman(
            "train", "q-learning", "--env", "bellman/ExplorationTrap-v0", "--steps", "300",
            "--set", f"epsilon={epsilon}", "--set", "epsilon_schedule=constant",
            "--run-dir", str(run_dir.relative_to(ROOT)), "--quiet", show=False,
        )  # fmt: skip
        run_dirs.append(run_dir)
        bellman("eval", str(run_dir.relative_to(ROOT)), "--episodes", "10")
        mean = json.loads((run_dir / "eval.json").read_text())["mean"]
        print(f"-> {label} (epsilon = {epsilon}) learned a policy worth {mean:g}", flush=True)


def stop_taxi() -> None:
    heading("3. Q-learning on Taxi-v4, against the optimum from exact planning")
    run_dir = RUNS / f"demo-{STAMP}-taxi"
    relative = str(run_dir.relative_to(ROOT))
    bellman("train", "q-learning", "--env", "Taxi-v4", "--run-dir", relative)
    bellman("eval", relative, "--episodes", "1000")
    learned = json.loads((run_dir / "eval.json").read_text())["mean"]

    from bellman.envs import make_env
    from bellman.evaluation import evaluate
    from bellman.tabular.planning import greedy_policy, tabular_model, value_iteration

    env = make_env("Taxi-v4")
    policy = greedy_policy(value_iteration(tabular_model(env), gamma=0.99))
    optimal = evaluate(lambda s: int(policy[s]), env, episodes=1000, seed=0)["mean"]
    verdict = "optimal" if abs(learned - optimal) <= 0.05 else "not yet optimal"
    print(f"-> learned greedy policy {learned:.3f} vs planned optimum {optimal:.3f}: {verdict}")
    print(f"-> learning curve: {(run_dir / 'plot.png').relative_to(ROOT)}")
    run_dirs.append(run_dir)


def stop_dqn_cartpole() -> None:
    heading("4. DQN on CartPole-v1: replay memory, target network, until solved (eval >= 475)")
    run_dir = RUNS / f"demo-{STAMP}-dqn-cartpole"
    relative = str(run_dir.relative_to(ROOT))
    bellman(
        "train", "dqn", "--env", "CartPole-v1", "--set", "hidden_size=64",
        "--set", "eval_every=2000", "--set", "eval_epsilon=0", "--set", "stop_when_solved=true",
        "--run-dir", relative,
    )  # fmt: skip
    bellman("eval", relative, "--episodes", "20", "--record", f"{relative}/agent.gif")
    print(f"-> learning curve: {relative}/plot.png; the agent playing: {relative}/agent.gif")
    run_dirs.append(run_dir)


def stop_policy_gradients() -> None:
    heading("5. Policy gradients on CartPole-v1: REINFORCE, A2C and PPO, each until solved")
    relatives = []
    for algo in ("reinforce", "a2c", "ppo"):
        run_dir = RUNS / f"demo-{STAMP}-{algo}-cartpole"
        relative = str(run_dir.relative_to(ROOT))
        bellman("train", algo, "--env", "CartPole-v1", "--set", "stop_when_solved=true",
                "--run-dir", relative, "--quiet")  # fmt: skip
        run_dirs.append(run_dir)
        relatives.append(relative)
    out = str((RUNS / f"demo-{STAMP}-policy-gradients.png").relative_to(ROOT))
    bellman("plot", *relatives, "--out", out)
    bellman("eval", relatives[-1], "--episodes", "20", "--record", f"{relatives[-1]}/agent.gif")
    print(f"-> the three learning curves: {out}; PPO playing: {relatives[-1]}/agent.gif")


def stop_ppo_pendulum() -> None:
    heading("6. PPO on Pendulum-v1: a Gaussian policy swings the pendulum up (bar: -250)")
    run_dir = RUNS / f"demo-{STAMP}-ppo-pendulum"
    relative = str(run_dir.relative_to(ROOT))
    bellman("train", "ppo", "--env", "Pendulum-v1", "--seed", "1", "--run-dir", relative)
    bellman("eval", relative, "--episodes", "20", "--record", f"{relative}/agent.gif")
    print(f"-> learning curve: {relative}/plot.png; the agent playing: {relative}/agent.gif")
    run_dirs.append(run_dir)


def stop_alphazero() -> None:
    heading("7. AlphaZero on tic-tac-toe: self-play and search, then perfect play as the judge")
    run_dir = RUNS / f"demo-{STAMP}-alphazero-tictactoe"
    relative = str(run_dir.relative_to(ROOT))
    bellman("train", "alphazero", "--env", "tictactoe", "--steps", "6000", "--set",
            "arena_games=0", "--run-dir", relative, "--quiet")  # fmt: skip
    run_dirs.append(run_dir)
    print("The agent's move for three positions (cells 1-9 row by row): the empty board, a",
          "threat to block after 1 5 2, a win to take after 1 4 2 5:")  # fmt: skip
    print("$ printf '\\n152\\n1425\\n' | bellman move tictactoe --checkpoint " + relative)
    answers = subprocess.run(
        [sys.executable, "-m", "bellman", "move", "tictactoe", "--checkpoint", relative],
        cwd=ROOT, input="\n152\n1425\n", stdout=subprocess.PIPE, text=True, check=True,
    ).stdout  # fmt: skip
    print(answers, end="")

    from bellman.games import make_game
    from bellman.search import PerfectPlayer
    from bellman.zero.play import load_agent

    game = make_game("tictactoe")
    agent, perfect = load_agent(run_dir, "tictactoe", simulations=100), PerfectPlayer(game)
    for agent_side, label in ((0, "first (X)"), (1, "second (O)")):
        state, moves = game.initial_state(), []
        while not game.is_terminal(state):
            player = agent if game.to_play(state) == agent_side else perfect
            action = player.act(state)
            moves.append(game.format_action(action))
            state = game.apply(state, action)
        outcome = game.outcome(state) * (1 if game.to_play(state) == agent_side else -1)
        result = {1.0: "wins", 0.0: "draws", -1.0: "loses"}[outcome]
        print(f"-> agent plays {label} against the perfect player: moves {''.join(moves)}, "
              f"the agent {result}")  # fmt: skip
    print(game.render(state))


def main() -> None:
    started = time.perf_counter()
    stop_recycling()
    stop_exploration_trap()
    stop_taxi()
    stop_dqn_cartpole()
    stop_policy_gradients()
    stop_ppo_pendulum()
    stop_alphazero()
    heading("Run directories")
    for run_dir in run_dirs:
        print(run_dir.relative_to(ROOT))
    print(f"\ntour finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
