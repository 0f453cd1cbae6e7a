"""Ape-X DQN on Ray actors against single-process DQN on CartPole-v1, same machine, one run.

Every variant trains with RL Baselines3 Zoo's tuned CartPole settings (bellman's
`dqn-CartPole-v1.toml`, the replay ratio of 128 gradient steps per 256 env steps included) and
evaluates with `benchmarks/dqn_cartpole.py`'s code: every `--eval-every` env steps, the greedy
policy's mean over `--eval-episodes` episodes, evaluation time excluded from the clock. Variants:

    dqn              the local backend: one process, one env (`n_envs = 1`)
    ape-x N actors   `--set backend=ray --set workers=N`: N actors with eps_i = 0.4^(1 + 7i/(N-1)),
                     one prioritized replay shard, the learner in this process

Reported per variant: env steps per second (over the whole run, Ray actors' start included) and
wall-clock seconds and env steps to the first evaluation >= 475 (median over seeds; a seed that
never gets there counts as infinite), and each as a ratio to single-process DQN. The seeds run
in turn, the variants' order alternating from seed to seed (ABBA). Ray starts once, before the
first run, with `max(actors)` logical CPUs (4 actors on a 2-core machine share its cores, which
is the point of measuring them there).

    python benchmarks/apex_cartpole.py [--seeds 0 1 2] [--actors 2 4] [--steps 50000]

Writes benchmarks/results/apex_cartpole.json.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import header, median, print_table, ratio, write_results
from dqn_cartpole import run_bellman


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--actors", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--eval-epsilon", type=float, default=0.0)
    args = parser.parse_args()
    args.stop_at_bar = True  # (dqn_cartpole.run_bellman's switch) a run ends at 475
    torch.set_num_threads(1)
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=max(args.actors), include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="ERROR")  # fmt: skip
    ray_start = time.perf_counter() - started
    variants = {"dqn": ()}
    for n in args.actors:
        variants[f"ape-x {n} actors"] = ("backend=ray", f"workers={n}")
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for index, seed in enumerate(args.seeds):
        order = list(variants) if index % 2 == 0 else list(variants)[::-1]  # ABBA
        for name in order:
            result = run_bellman(seed, args, variants[name])
            runs[name].append({"seed": seed, **result})
            print(f"[{time.perf_counter() - started:5.0f} s] {name:15s} seed {seed}: steps to "
                  f"475 {result['steps_to_475']}, seconds {result['seconds_to_475']:.1f}, "
                  f"{result['steps_per_second']:.0f} steps/s", flush=True)  # fmt: skip
    summary = {
        name: {
            "reached": sum(r["steps_to_475"] != float("inf") for r in results),
            "median_steps_to_475": median(r["steps_to_475"] for r in results),
            "median_seconds_to_475": median(r["seconds_to_475"] for r in results),
            "median_steps_per_second": median(r["steps_per_second"] for r in results),
        }
        for name, results in runs.items()
    }
    base = summary["dqn"]
    rows = []
    for name, row in summary.items():
        row["speed_ratio"] = ratio(row["median_steps_per_second"], base["median_steps_per_second"])
        row["seconds_ratio"] = ratio(row["median_seconds_to_475"], base["median_seconds_to_475"])
        rows.append([
            name, f"{row['reached']}/{len(args.seeds)}", f"{row['median_steps_per_second']:.0f}",
            f"x{row['speed_ratio']:.2f}", row["median_steps_to_475"],
            f"{row['median_seconds_to_475']:.1f}", f"x{row['seconds_ratio']:.2f}",
        ])  # fmt: skip
    load = os.getloadavg()
    print(f"\nCartPole-v1, {len(args.seeds)} seeds, runs end at 475, torch threads 1, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} at the end, Ray start "
          f"{ray_start:.1f} s (not counted)\n")  # fmt: skip
    print_table(["variant", "reached 475", "env steps/s", "vs dqn", "median steps to 475",
                 "median seconds to 475", "vs dqn"], rows)  # fmt: skip
    record = {
        **header(1, "torch", "ray", "gymnasium", "bellman"),
        "args": vars(args), "ray_start_seconds": ray_start, "load_average": load,
        "summary": summary, "runs": runs,
    }  # fmt: skip
    write_results("apex_cartpole", record, default=str)


if __name__ == "__main__":
    main()
