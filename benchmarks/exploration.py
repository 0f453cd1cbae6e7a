"""Hard exploration on the CPU: PPO with and without RND curiosity on Deep Sea of size 20.

Deep Sea (src/bellman/envs/deep_sea.py, after Osband et al. 2019 and bsuite): the treasure (+1)
lies in the bottom-right cell of a 20 x 20 grid, reached only by choosing "right" on all 19
steps of an episode, while each move right costs 0.01 / 20; which action means "right" is drawn
per cell. A uniformly random policy finds the treasure once in 2^19 = 524,288 episodes, so an
agent that explores by dithering (PPO's sampling from pi) never sees it in a CPU budget and
learns to go left; RND's intrinsic reward for novel cells (Burda et al. 2018, algos/rnd.py) should
lead it down the right-hand side.

Both agents are bellman's PPO with the same settings (src/bellman/configs/
ppo-bellman-DeepSea-v0.toml: 16 actors x 64 steps, minibatches of 256, 4 epochs, lr 1e-3, an
entropy bonus of 0.01), one with `intrinsic = rnd` (c_I = 1, gamma_I = 0.99) and one with
`intrinsic = none`, for `--steps` env steps (150,000 by default: 7,894 episodes) and `--seeds`
(0-4). Reported per agent: the seeds that found the treasure at least once, the env step of the
first find (median), the treasure episodes, and the mean return of the last 100 episodes; and a
PNG of the learning curves (the share of treasure-finding episodes in windows of 2,048 env
steps, every seed). Target (issue 22): plain PPO never finds the treasure, PPO with RND does on
at least 4 of 5 seeds.

    python benchmarks/exploration.py                 # 5 seeds x 2 agents, 2 worker processes
    python benchmarks/exploration.py --quick         # a smoke run

Run it as a script from the repository root. Writes benchmarks/results/exploration.json and
exploration.png (BELLMAN_BENCH_RESULTS=DIR writes them there instead).
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from common import header, median, print_table, processor, results_path, today, write_results

ENV_ID = "bellman/DeepSea-v0"
AGENTS = {"ppo": ["intrinsic=none"], "ppo+rnd": ["intrinsic=rnd"]}
WINDOW = 2048  # env steps per point of the learning curves


def run_one(agent: str, seed: int, steps: int) -> dict:
    """Train one agent with one seed; every episode's end step and return."""
    import torch

    import bellman
    import bellman.envs.deep_sea  # noqa: F401  (registers the env)

    torch.set_num_threads(1)
    overrides = [*AGENTS[agent], f"seed={seed}", f"steps={steps}", f"checkpoint_every={steps}",
                 "device=cpu", "torch_threads=1"]  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        bellman.train("ppo", ENV_ID, overrides=overrides, run_dir=Path(tmp) / "run", quiet=True)
        with open(Path(tmp) / "run" / "episodes.csv", encoding="utf-8") as handle:
            episodes = [(int(r["step"]), float(r["return"])) for r in csv.DictReader(handle)]
    found = [step for step, ret in episodes if ret > 0.5]
    return {
        "agent": agent,
        "seed": seed,
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "episodes": len(episodes),
        "treasure_episodes": len(found),
        "first_find_step": found[0] if found else None,
        "last_100_return": float(np.mean([ret for _, ret in episodes[-100:]])),
        "curve": curve(episodes, steps),
    }


def curve(episodes: list[tuple[int, float]], steps: int) -> list[float]:
    """The share of episodes that found the treasure, per window of WINDOW env steps."""
    shares = []
    for start in range(0, steps, WINDOW):
        inside = [ret for step, ret in episodes if start < step <= start + WINDOW]
        shares.append(float(np.mean([ret > 0.5 for ret in inside])) if inside else 0.0)
    return shares


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    colours = {"ppo": "tab:grey", "ppo+rnd": "tab:red"}
    for agent in AGENTS:
        for index, run in enumerate(r for r in runs if r["agent"] == agent):
            x = (np.arange(len(run["curve"])) + 1) * WINDOW
            axis.plot(x, run["curve"], color=colours[agent], alpha=0.8,
                      label=agent if index == 0 else None)  # fmt: skip
    axis.set_xlabel("env steps")
    axis.set_ylabel(f"treasure episodes (share, per {WINDOW:,} steps)")
    axis.set_title("Deep Sea 20: PPO vs PPO + RND, one line per seed")
    axis.set_ylim(-0.02, 1.02)
    axis.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"wrote {path}")


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for agent in AGENTS:
        rows = [r for r in runs if r["agent"] == agent]
        finds = [r["first_find_step"] for r in rows]
        summary[agent] = {
            "seeds_finding": sum(f is not None for f in finds),
            "seeds": len(rows),
            "median_first_find_step": median(f if f is not None else float("inf") for f in finds),
            "treasure_episodes": [r["treasure_episodes"] for r in rows],
            "median_last_100_return": median(r["last_100_return"] for r in rows),
        }
    return summary


def _step(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "never (median)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--quick", action="store_true", help="smoke run: seed 0, 4,096 steps")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps = [0], 4096
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    jobs = [(agent, seed, args.steps) for seed in args.seeds for agent in AGENTS]
    runs = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        for run in pool.map(run_one, *zip(*jobs, strict=True)):
            runs.append(run)
            print(
                f"[{time.perf_counter() - started:5.0f} s] {run['agent']:8s} seed {run['seed']}: "
                f"first treasure at step {run['first_find_step']}, {run['treasure_episodes']} "
                f"of {run['episodes']} episodes, last-100 return {run['last_100_return']:.3f} "
                f"({run['seconds']:.0f} s)",
                flush=True,
            )
    summary = summarise(runs)
    print(
        f"\nDeep Sea 20, {args.steps:,} env steps per run, {len(args.seeds)} seeds, bellman PPO "
        f"with and without RND, torch threads 1, {processor()}, {today()}"
    )
    rows = [
        [agent, f"{s['seeds_finding']}/{s['seeds']}", _step(s["median_first_find_step"]),
         ", ".join(map(str, s["treasure_episodes"])), f"{s['median_last_100_return']:.3f}"]
        for agent, s in summary.items()
    ]  # fmt: skip
    columns = ["agent", "seeds finding the treasure", "median step of the first find",
               "treasure episodes per seed", "median return, last 100 episodes"]  # fmt: skip
    print_table(columns, rows)
    plot(runs, results_path("exploration").with_suffix(".png"))
    record = {
        **header(1, "torch", "numpy", "gymnasium", "bellman"),
        "args": vars(args),
        "env": ENV_ID,
        "agents": AGENTS,
        "window": WINDOW,
        "summary": summary,
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }
    write_results("exploration", record)


if __name__ == "__main__":
    main()
