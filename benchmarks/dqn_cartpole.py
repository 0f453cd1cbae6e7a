"""DQN on CartPole-v1: bellman against Stable-Baselines3, same settings, same machine, one run.

Both libraries train with RL Baselines3 Zoo's tuned CartPole settings (bellman ships them as
`src/bellman/configs/dqn-CartPole-v1.toml`) for several seeds. Every `--eval-every` env steps the
greedy policy (epsilon = --eval-epsilon) plays `--eval-episodes` seeded episodes with the same
evaluation code and seeds for both libraries; evaluation time is excluded from the clocks.

Reported per library: env steps and wall-clock seconds until the first evaluation with a mean
>= 475 (median over seeds; a seed that never gets there counts as infinite), and env steps per
second of training. Targets (issue 3): bellman needs no more steps than SB3 (median) and at most
half of SB3's wall-clock time.

    python benchmarks/dqn_cartpole.py --seeds 0 1 2           # needs `pip install -e .[bench]`
    python benchmarks/dqn_cartpole.py --seeds 0 1 2 3 4 5 6 --stop-at-bar

With --stop-at-bar a run ends at its first evaluation >= 475 (bellman: `stop_when_solved`, SB3: a
callback that ends `learn`), which halves the benchmark's time; steps per second are then over the
steps each run made (dqn_cartpole_stop_at_bar.json).

Run it as a script from the repository root (it imports benchmarks/common.py as `common`).
Writes benchmarks/results/dqn_cartpole.json.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from common import header, median, print_table, processor, ratio, today, write_results

import bellman
from bellman.envs import make_env
from bellman.evaluation import evaluate

THRESHOLD = 475.0


def zoo_settings() -> dict:
    text = resources.files("bellman.configs").joinpath("dqn-CartPole-v1.toml").read_text()
    return tomllib.loads(text)


def run_bellman(seed: int, args, extra: tuple[str, ...] = ()) -> dict:
    """One seed of bellman's DQN (`extra`: more --set overrides, e.g. Ape-X's backend=ray)."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        bellman.train(
            "dqn",
            "CartPole-v1",
            overrides=[
                f"seed={seed}",
                f"steps={args.steps}",
                f"eval_every={args.eval_every}",
                f"eval_episodes={args.eval_episodes}",
                f"eval_epsilon={args.eval_epsilon}",
                f"checkpoint_every={args.steps}",
                *(["stop_when_solved=true"] if args.stop_at_bar else []),
                *extra,
            ],
            run_dir=Path(tmp) / "run",
            quiet=True,
        )
        with open(Path(tmp) / "run" / "metrics.csv") as handle:
            rows = list(csv.DictReader(handle))
    evals = [
        (int(row["step"]), float(row["eval_return_mean"]),
         float(row["wall_time"]) - started - float(row["eval_seconds"]))
        for row in rows
        if row["eval_return_mean"]
    ]  # fmt: skip
    train_seconds = float(rows[-1]["wall_time"]) - started - float(rows[-1]["eval_seconds"])
    return _summary(evals, int(rows[-1]["step"]), train_seconds)


def run_sb3(seed: int, args) -> dict:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    zoo = zoo_settings()
    eval_env = make_env("CartPole-v1")
    evals: list[tuple[int, float, float]] = []

    class Evaluate(BaseCallback):
        def __init__(self):
            super().__init__()
            self.eval_seconds = 0.0
            self.started = time.time()

        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every == 0:
                clock = time.perf_counter()
                mean = _evaluate_q_net(self.model.q_net, eval_env, seed, args)
                self.eval_seconds += time.perf_counter() - clock
                elapsed = time.time() - self.started - self.eval_seconds
                evals.append((self.num_timesteps, mean, elapsed))
                return not (args.stop_at_bar and mean >= THRESHOLD)  # False ends learn
            return True

    callback = Evaluate()
    model = DQN(
        "MlpPolicy",
        make_env("CartPole-v1"),
        learning_rate=zoo["learning_rate"],
        batch_size=zoo["batch_size"],
        buffer_size=zoo["buffer_size"],
        learning_starts=zoo["learning_starts"],
        gamma=zoo["gamma"],
        target_update_interval=zoo["target_update_interval"],
        train_freq=zoo["train_frequency"],
        gradient_steps=zoo["gradient_steps"],
        exploration_fraction=zoo["epsilon_fraction"],
        exploration_final_eps=zoo["epsilon_end"],
        policy_kwargs={"net_arch": [zoo["hidden_size"]] * zoo["hidden_layers"]},
        seed=seed,
        device="cpu",
    )
    callback.started = time.time()
    model.learn(total_timesteps=args.steps, callback=callback)
    train_seconds = time.time() - callback.started - callback.eval_seconds
    return _summary(evals, model.num_timesteps, train_seconds)


def _evaluate_q_net(q_net, env, seed: int, args) -> float:
    """The same evaluation bellman runs during training: epsilon-greedy on Q, seeded episodes."""
    rng = np.random.default_rng([seed, 0, 1])

    def policy(obs):
        if rng.random() < args.eval_epsilon:
            return int(rng.integers(env.action_space.n))
        with torch.no_grad():
            return int(q_net(torch.as_tensor(obs[None])).argmax(dim=1)[0])

    return evaluate(policy, env, episodes=args.eval_episodes, seed=1_000_000 + seed * 1000)["mean"]


def _summary(evals, steps: int, train_seconds: float) -> dict:
    reached = [(step, seconds) for step, mean, seconds in evals if mean >= THRESHOLD]
    return {
        "steps_to_475": reached[0][0] if reached else math.inf,
        "seconds_to_475": reached[0][1] if reached else math.inf,
        "steps_per_second": steps / train_seconds,
        "final_eval": evals[-1][1] if evals else math.nan,
        "evals": evals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=zoo_settings()["steps"])
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--eval-epsilon", type=float, default=0.0)
    parser.add_argument("--libraries", nargs="+", default=["bellman", "sb3"])
    parser.add_argument(
        "--stop-at-bar", action="store_true", help="end each run at its first evaluation >= 475"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    results: dict[str, list[dict]] = {}
    for seed in args.seeds:  # interleaved, so that machine load hits both libraries alike
        for library in args.libraries:
            runner = run_bellman if library == "bellman" else run_sb3
            result = runner(seed, args)
            results.setdefault(library, []).append({"seed": seed, **result})
            print(
                f"{library:8s} seed {seed}: steps to 475 {result['steps_to_475']}, "
                f"seconds {result['seconds_to_475']:.1f}, "
                f"{result['steps_per_second']:.0f} steps/s, final eval {result['final_eval']:.1f}",
                flush=True,
            )

    summary = {
        library: {
            "median_steps_to_475": median(r["steps_to_475"] for r in runs),
            "median_seconds_to_475": median(r["seconds_to_475"] for r in runs),
            "median_steps_per_second": median(r["steps_per_second"] for r in runs),
            "reached": sum(math.isfinite(r["steps_to_475"]) for r in runs),
        }
        for library, runs in results.items()
    }
    print()
    ending = "runs end at the bar" if args.stop_at_bar else f"{args.steps} steps"
    print(f"DQN CartPole-v1, {len(args.seeds)} seeds, {ending}, torch threads 1, "
          f"{processor()}, {today()}")  # fmt: skip
    print_table(
        ["library", "reached 475", "median env steps to 475", "median seconds to 475",
         "median steps/s"],
        [
            [library, f"{row['reached']}/{len(args.seeds)}", row["median_steps_to_475"],
             f"{row['median_seconds_to_475']:.1f}", f"{row['median_steps_per_second']:.0f}"]
            for library, row in summary.items()
        ],
    )  # fmt: skip
    if {"bellman", "sb3"} <= summary.keys():
        ours, theirs = summary["bellman"], summary["sb3"]
        ratios = {
            key: ratio(ours[f"median_{name}"], theirs[f"median_{name}"])
            for key, name in (
                ("steps_ratio", "steps_to_475"),
                ("seconds_ratio", "seconds_to_475"),
                ("speed_ratio", "steps_per_second"),
            )
        }
        print(
            f"bellman / SB3: steps to 475 x{ratios['steps_ratio']:.2f} (target <= 1), "
            f"seconds to 475 x{ratios['seconds_ratio']:.2f} (target <= 0.5), "
            f"steps/s x{ratios['speed_ratio']:.2f}"
        )
        summary["ratios"] = ratios
    record = {
        **header(1, "torch", "numpy", "gymnasium", "stable_baselines3", "bellman"),
        "args": vars(args),
        "summary": summary,
        "runs": results,
    }
    name = "dqn_cartpole_stop_at_bar" if args.stop_at_bar else "dqn_cartpole"
    write_results(name, record, default=str)


if __name__ == "__main__":
    main()
