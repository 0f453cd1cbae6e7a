"""`make demo`: a tour of the lectures, each stop a few real `bellman` commands and their output.

Stops so far:
    1. Exact planning: the Recycling robot's Q* beside the lecture's table.
    2. The exploration trap: a greedy learner settles on 1, an epsilon-greedy one finds 1000.
    3. Q-learning on Taxi-v4 to the optimal return, with its learning curve.
    4. DQN on CartPole-v1 until solved, with its learning curve and a GIF of the agent.
    5. Policy gradients on CartPole-v1: REINFORCE, A2C and PPO until solved, one plot, a GIF.
    6. PPO on Pendulum-v1 (continuous actions): the swing-up, its curve and a GIF.
    7. AlphaZero on tic-tac-toe: a minute of self-play, then games against a perfect player.
    8. The ChatGPT recipe in miniature: pretrain a small GPT on Debian's fortunes, SFT, a reward
       model from a judge's rankings, PPO against it, DPO; VADER sentiment is the true score.
       With `--task NAME` (hallucination, safety, detoxification, quality) the same recipe runs
       on that use case's own data (`bellman lm task`), its judge the true score.
Later issues add their stops at the end. Run directories go to runs/ (printed at the end).
`python demo/tour.py 3 8` runs only stops 3 and 8; `python demo/tour.py 8 --task safety` runs
stop 8 on the safety task.
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
TASK: str | None = None  # stop 8's use case (`--task NAME`); None: sentiment on fortunes


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


#: Stop 8's sizes: a 2x64 GPT with a 1,024-token vocabulary and 64 positions, each step on one
#: torch thread and seeded (seed 0), so the numbers repeat; about 2.5 minutes on 2 idle cores.
LM_PRETRAIN = dict(
    vocab_size=1024, context=64, layers=2, width=64, heads=4, dropout=0, batch_size=32,
    steps=400, learning_rate=3e-3, warmup_steps=30, log_every=100, eval_tokens=4096,
)  # fmt: skip
LM_SFT = dict(steps=100, batch_size=16, learning_rate=1e-3, warmup_steps=10, log_every=25)
LM_LABEL = ("--prompts", "800", "--k", "8", "--max-new-tokens", "16")
LM_REWARD = dict(steps=120, batch_prompts=16, learning_rate=1e-3, warmup_steps=10, log_every=20)
LM_PPO = dict(
    steps=60, batch_prompts=16, max_new_tokens=16, minibatch_size=8, learning_rate=3e-4,
    kl_coef=0.5, adaptive_kl="false", eval_every=10, eval_fraction=0.05, eval_tokens=2048,
)  # fmt: skip
LM_DPO = dict(steps=100, batch_prompts=8, learning_rate=1e-3, warmup_steps=10, log_every=25)


def sets(values: dict) -> list[str]:
    """--set key=value for each entry of `values`."""
    return [item for key, value in values.items() for item in ("--set", f"{key}={value}")]


def true_scores(run_dir: Path, prompts: list[str], seed: int, chunk: int, judge: str):
    """Responses of a run's model to `prompts` and the judge's scores, drawn as `lm ppo` draws
    its held-out evaluation (a generator seeded with seed + 1, `chunk` prompts at a time)."""
    import torch

    from bellman.lm.rewards import reward_function
    from bellman.lm.runs import load_lm

    torch.set_num_threads(1)
    lm = load_lm(run_dir)
    lm.model.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    texts = []
    for start in range(0, len(prompts), chunk):
        texts += lm.generate(prompts[start : start + chunk], LM_PPO["max_new_tokens"],
                             generator=generator)  # fmt: skip
    judge = reward_function(judge)
    return texts, [judge(p, t) for p, t in zip(prompts, texts, strict=True)]


def stop_rlhf() -> None:
    task = TASK
    heading("8. The ChatGPT recipe in miniature: pretrain, SFT, reward model, PPO, DPO"
            + (f", on the {task} use case" if task else ""))  # fmt: skip
    names = ("pretrain", "sft", "reward", "ppo", "dpo")
    dirs = {name: RUNS / f"demo-{STAMP}-lm-{name}" for name in names}
    rel = {name: str(path.relative_to(ROOT)) for name, path in dirs.items()}
    recipe = task_recipe(task, rel) if task else sentiment_recipe(rel)
    bellman("lm", "pretrain", "--corpus", recipe["corpus"], *sets(LM_PRETRAIN), "--run-dir",
            rel["pretrain"], "--quiet")  # fmt: skip
    if task is None:
        bellman("lm", "demos", rel["pretrain"], "--response-words", "8")
    bellman("lm", "sft", rel["pretrain"], "--data", recipe["demos"], *sets(LM_SFT), "--run-dir",
            rel["sft"], "--quiet")  # fmt: skip
    bellman("lm", "label", rel["sft"], "--judge", recipe["judge"], *recipe["label"], *LM_LABEL)
    ranked = f"{rel['sft']}/ranked.jsonl"
    bellman("lm", "reward", rel["sft"], "--data", ranked, *sets(LM_REWARD), "--run-dir",
            rel["reward"], "--quiet")  # fmt: skip
    bellman("lm", "ppo", rel["sft"], "--reward-model", rel["reward"], *sets(recipe["ppo"]),
            "--run-dir", rel["ppo"], "--quiet")  # fmt: skip
    bellman("lm", "dpo", rel["sft"], "--data", ranked, *sets(LM_DPO), "--run-dir", rel["dpo"],
            "--quiet")  # fmt: skip
    run_dirs.extend(dirs.values())

    prompts, chunk = recipe["held_out"](), LM_PPO["batch_prompts"]
    texts, scores = {}, {}
    for name in ("sft", "ppo", "dpo"):
        texts[name], scores[name] = true_scores(dirs[name], prompts, 0, chunk, recipe["judge"])
    mean = {name: float(np.mean(values)) for name, values in scores.items()}
    print(f"-> mean true score ({recipe['judge']}) on the {len(prompts)} held-out prompts: SFT "
          f"{mean['sft']:+.3f} -> PPO {mean['ppo']:+.3f}, DPO {mean['dpo']:+.3f}")  # fmt: skip
    print("The first three of those prompts, each model's response and its true score:")
    for i in range(3):
        print(f"  {shown(prompts[i])} ...")
        for name in ("sft", "ppo", "dpo"):
            print(f"    {name.upper():<4}{scores[name][i]:+.2f}  ... {shown(texts[name][i])}")
    print(f"-> curves: runs/demo-{STAMP}-lm-{{{','.join(names)}}}/plot.png")


def sentiment_recipe(rel: dict) -> dict:
    """Stop 8's sentiment case: fortunes (or pydoc), `lm demos`, VADER as the judge."""
    from bellman.lm.data import FORTUNES_DIR, holdout_indices
    from bellman.lm.reward_model import held_out_prompts

    corpus = "fortunes"
    if not FORTUNES_DIR.is_dir():
        corpus = "pydoc"
        print(
            f"note: Debian's fortunes package is missing ({FORTUNES_DIR}), so this stop "
            "uses CPython's pydoc topics; `sudo apt-get install fortunes` adds the quotes"
        )
    print(
        "The true judge is VADER sentiment in [-1, 1]: it ranks sampled responses for the "
        "reward model and DPO and scores the models; PPO sees only the learned reward."
    )

    def held_out() -> list[str]:
        # the held-out prompts of `lm ppo` (openings of 4 words of the documents that
        # pretraining held out, 10% by default), each model's responses drawn as PPO's are
        prompts = held_out_prompts(corpus, 0.1, 4)
        return [prompts[i] for i in holdout_indices(prompts, LM_PPO["eval_fraction"])[1]]

    return {"corpus": corpus, "demos": f"{rel['pretrain']}/demos.jsonl", "judge": "sentiment",
            "label": (), "ppo": LM_PPO, "held_out": held_out}  # fmt: skip


def task_recipe(task: str, rel: dict) -> dict:
    """Stop 8 on a use case of `bellman lm task`: its corpus, demonstrations and prompts, its
    judge as the true score; `lm ppo` holds out the task's fifth of prompts without a
    demonstration (the task's eval fraction) and the tour scores each model on those."""
    from bellman.lm import tasks
    from bellman.lm.data import read_prompts

    out = str((RUNS / f"demo-{STAMP}-lm-task").relative_to(ROOT))
    bellman("lm", "task", task, "--out", out)
    judge = json.loads((ROOT / out / "task.json").read_text())["judge"]
    print(
        f"The true judge is the {task} task's ({judge}): it ranks sampled responses for the "
        "reward model and DPO and scores the models; PPO sees only the learned reward."
    )
    prompts = f"{out}/prompts.jsonl"
    ppo = {**LM_PPO, "prompts": prompts, "true_judge": judge,
           "eval_fraction": tasks.PPO_EVAL_FRACTION}  # fmt: skip
    return {
        "corpus": f"{out}/corpus.txt",
        "demos": f"{out}/demos.jsonl",
        "judge": judge,
        "label": ("--data", prompts),
        "ppo": ppo,
        "held_out": lambda: tasks.eval_prompts([p for p, _ in read_prompts(ROOT / prompts)]),
    }


def shown(text: str) -> str:
    """`text` on one line: whitespace collapsed, control bytes and broken UTF-8 as '?'."""
    return " ".join("".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text).split())


STOPS = (
    stop_recycling, stop_exploration_trap, stop_taxi, stop_dqn_cartpole, stop_policy_gradients,
    stop_ppo_pendulum, stop_alphazero, stop_rlhf,
)  # fmt: skip


def main() -> None:
    global TASK
    from bellman.lm.tasks import TASKS

    started = time.perf_counter()
    args, task = sys.argv[1:], None
    if "--task" in args:
        at = args.index("--task")
        task = args[at + 1] if at + 1 < len(args) else ""
        del args[at : at + 2]
    chosen = args or [str(number) for number in range(1, len(STOPS) + 1)]
    if task is not None and task not in TASKS:
        sys.exit(f"error: --task must be one of {', '.join(TASKS)}, got '{task}'")
    if not all(arg.isdigit() and 1 <= int(arg) <= len(STOPS) for arg in chosen):
        sys.exit(f"usage: python demo/tour.py [STOP ...] [--task NAME], stops 1 to {len(STOPS)}")
    TASK = task
    for number in map(int, chosen):
        STOPS[number - 1]()
    heading("Run directories")
    for run_dir in run_dirs:
        print(run_dir.relative_to(ROOT))
    print(f"\ntour finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
