"""DQN training throughput on Atari Breakout: bellman against Stable-Baselines3, same settings.

Both libraries run their *full* DQN training loop on ALE/Breakout-v5 on the CPU with one torch
thread: DeepMind preprocessing (frame skip 4, max-pooling, 84x84 grey, 4 stacked frames, 30
no-ops, life loss as terminal, reward clipping), epsilon-greedy acting with the Nature CNN,
storing in and sampling from a replay memory, and a gradient step (batch 32, Adam 1e-4, Huber
loss, gradient norm 10) every 4 env steps once `--warmup` env steps are in the memory.

    bellman  bellman.train("dqn", "ALE/Breakout-v5", overrides=[...]) (its public API); the clock
             is the `wall_time` column of the run's metrics.csv, from the row at step W (the
             end of warm-up) to the row at step W + N.
    SB3      stable_baselines3.DQN("CnnPolicy") on make_atari_env(..., env_kwargs={"frameskip":
             1}) + VecFrameStack(n_stack=4) (AtariWrapper frame-skips itself: without frameskip=1
             the v5 env would skip 4 x 4 frames); the clock is read by a callback at the same
             env steps W and W + N.

Only the N env steps after warm-up are timed, for both: start-up, env creation, the warm-up and
the final checkpoint/plot are outside the clock. Same settings for both: replay capacity
`--buffer` (numpy allocates lazily, so only the W + N transitions written cost RAM), batch 32,
train frequency 4, one gradient step per update, target update every 10,000 env steps, gamma
0.99, Adam lr 1e-4 with epsilon 1.5e-4, max gradient norm 10, epsilon fixed at `--epsilon`
(0.1, what Nature's schedule holds for 90% of a run) during the timed phase, ALE v5's sticky
actions (0.25) in both. Runs alternate between libraries (ABBA order over `--repeats`), so load
on the machine hits both alike; the table shows the median over repeats.

    python benchmarks/atari_throughput.py [--steps 5000] [--warmup 1000] [--repeats 2]

Run it as a script from the repository root (it imports benchmarks/common.py as `common`).
Writes benchmarks/results/atari_throughput.json.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

import torch
from common import header, median, print_table, ratio, today, write_results

import bellman

ENV_ID = "ALE/Breakout-v5"
# The settings both libraries share (bellman's config field names).
SHARED = {
    "batch_size": 32,
    "train_frequency": 4,
    "gradient_steps": 1,
    "target_update_interval": 10_000,
    "gamma": 0.99,
    "learning_rate": 1e-4,
    "adam_epsilon": 1.5e-4,
    "max_grad_norm": 10.0,
}


def run_bellman(seed: int, args) -> dict:
    warmup, total = args.warmup, args.warmup + args.steps
    overrides = [f"{key}={value}" for key, value in SHARED.items()] + [
        f"seed={seed}",
        f"steps={total}",
        f"learning_starts={warmup}",
        f"buffer_size={args.buffer}",
        f"epsilon={args.epsilon}",
        f"epsilon_end={args.epsilon}",
        "loss=huber",
        "n_step=1",
        "double_dqn=false",
        "dueling=false",
        "prioritized=false",
        "network=cnn",
        "frame_stack=4",
        "eval_every=0",
        f"log_every={math.gcd(warmup, args.steps)}",  # rows at W and W + N
        f"checkpoint_every={total + 1}",  # only the final one, after the clock stops
        "save_replay=false",
        "device=cpu",
        "torch_threads=1",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        bellman.train("dqn", ENV_ID, overrides=overrides, run_dir=Path(tmp) / "run", quiet=True)
        with open(Path(tmp) / "run" / "metrics.csv", encoding="utf-8") as handle:
            rows = {int(row["step"]): row for row in csv.DictReader(handle)}
    start, end = rows[warmup], rows[total]
    seconds = float(end["wall_time"]) - float(start["wall_time"])
    return {
        "env_steps": total - warmup,
        "gradient_steps": int(end["updates"]) - int(start["updates"]),
        "seconds": seconds,
    }


def run_sb3(seed: int, args) -> dict:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    warmup, total = args.warmup, args.warmup + args.steps

    class Clock(BaseCallback):
        """perf_counter and the update count at env steps W and W + N."""

        def __init__(self):
            super().__init__()
            self.marks: dict[int, tuple[float, int]] = {}

        def _on_step(self) -> bool:
            if self.num_timesteps in (warmup, total):
                self.marks[self.num_timesteps] = (time.perf_counter(), self.model._n_updates)
            return True

    envs = make_atari_env(ENV_ID, n_envs=1, seed=seed, env_kwargs={"frameskip": 1})
    envs = VecFrameStack(envs, n_stack=4)
    model = DQN(
        "CnnPolicy",
        envs,
        learning_rate=SHARED["learning_rate"],
        buffer_size=args.buffer,
        learning_starts=warmup,
        batch_size=SHARED["batch_size"],
        gamma=SHARED["gamma"],
        train_freq=SHARED["train_frequency"],
        gradient_steps=SHARED["gradient_steps"],
        target_update_interval=SHARED["target_update_interval"],
        exploration_initial_eps=args.epsilon,
        exploration_final_eps=args.epsilon,
        max_grad_norm=SHARED["max_grad_norm"],
        policy_kwargs={"optimizer_kwargs": {"eps": SHARED["adam_epsilon"]}},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    clock = Clock()
    model.learn(total_timesteps=total, callback=clock)
    (t0, u0), (t1, u1) = clock.marks[warmup], clock.marks[total]
    envs.close()
    del model
    return {"env_steps": total - warmup, "gradient_steps": u1 - u0, "seconds": t1 - t0}


RUNNERS = {"bellman": run_bellman, "sb3": run_sb3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="timed env steps N")
    parser.add_argument("--warmup", type=int, default=1000, help="learning_starts W (untimed)")
    parser.add_argument("--buffer", type=int, default=100_000, help="replay capacity")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    runs: dict[str, list[dict]] = {name: [] for name in RUNNERS}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        order = list(RUNNERS) if repeat % 2 == 0 else list(RUNNERS)[::-1]  # ABBA
        for name in order:
            elapsed = time.perf_counter() - started
            print(
                f"[{elapsed:6.0f} s] repeat {repeat + 1}/{args.repeats}: {name}, "
                f"{args.warmup} warm-up + {args.steps} timed env steps ...",
                flush=True,
            )
            result = RUNNERS[name](args.seed + repeat, args)
            result["env_steps_per_second"] = result["env_steps"] / result["seconds"]
            result["gradient_steps_per_second"] = result["gradient_steps"] / result["seconds"]
            runs[name].append({"repeat": repeat, "seed": args.seed + repeat, **result})
            print(
                f"         {result['env_steps_per_second']:.1f} env steps/s, "
                f"{result['gradient_steps_per_second']:.1f} gradient steps/s",
                flush=True,
            )

    summary = {
        name: {
            "env_steps_per_second": median(r["env_steps_per_second"] for r in rows),
            "gradient_steps_per_second": median(r["gradient_steps_per_second"] for r in rows),
        }
        for name, rows in runs.items()
    }
    speed_ratio = ratio(
        summary["bellman"]["env_steps_per_second"], summary["sb3"]["env_steps_per_second"]
    )
    record = {
        **header(
            torch.get_num_threads(),
            "torch", "numpy", "gymnasium", "ale_py", "stable_baselines3", "bellman",
        ),
        "env": ENV_ID,
        "args": vars(args),
        "shared_settings": SHARED,
        "summary": summary,
        "ratio_env_steps_per_second": speed_ratio,
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }  # fmt: skip
    machine = record["machine"]
    print()
    print(
        f"DQN training loop on {ENV_ID}, CPU, torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread; {args.steps} env steps timed after {args.warmup} "
        f"warm-up, median of {args.repeats}; {today()}, {machine['platform']}, "
        f"{machine['cpu_count']} CPUs"
    )
    print_table(
        ["library", "env steps/s", "gradient steps/s"],
        [
            [name, f"{row['env_steps_per_second']:.1f}", f"{row['gradient_steps_per_second']:.1f}"]
            for name, row in summary.items()
        ],
    )
    print(f"bellman / SB3 (env steps/s): {speed_ratio:.2f}x")
    write_results("atari_throughput", record)


if __name__ == "__main__":
    main()
