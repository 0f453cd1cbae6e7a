"""Learning Atari on the CPU: PPO on ALE/Breakout-v5 for 1M env steps on 2 cores (issue 18, item 5).

    bellman.train("ppo", "ALE/Breakout-v5") with the shipped ppo-ALE-Breakout-v5.toml (Schulman et
    al. 2017, Table 5: 8 envs on ale-py's AtariVectorEnv, T = 128, 3 epochs of minibatches of 256,
    lr 2.5e-4 and clip 0.1 annealed to 0 over the run), `--steps` env steps (1M), torch with
    `--torch-threads` (1) threads, the emulators with one thread per core.

Prints the mean raw score of the last 100 games (whole games, all five lives; target: at least 10,
where CleanRL's PPO is at about 10-20 after 1M steps), the number of games, the wall time and env
steps/s, and the curve (mean of the last 100 games at each tenth of the run). The 1M-step run takes
hours on 2 cores; check the script on a tiny budget first:

    BELLMAN_BENCH_RESULTS=/tmp/out python benchmarks/atari_learning.py --steps 4096

`--set KEY=VALUE` overrides the shipped config (e.g. `--set bf16_autocast=true`, the Nature CNN in
bfloat16). `--algo dqn` trains DQN with the shipped dqn-ALE-Breakout-v5.toml instead (Nature's
settings, one env): with `--set` for a shorter schedule it checks that a speed switch learns as
the float32 path does, two runs with the same seed side by side. Writes
benchmarks/results/atari_learning.json (`--results NAME`: NAME.json) and keeps the run directory
with --run-dir.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from common import header, print_table, today, write_results

import bellman

ENV_ID = "ALE/Breakout-v5"
WINDOW = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", choices=["ppo", "dqn"], default="ppo")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--run-dir", type=Path, help="keep the run here (default: a temp dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the shipped config (repeatable), e.g. "
                        "bf16_autocast=true")  # fmt: skip
    parser.add_argument("--results", default="atari_learning",
                        help="name of the JSON written to benchmarks/results/")  # fmt: skip
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "run"
        overrides = [f"seed={args.seed}", f"steps={args.steps}", "device=cpu",
                     f"torch_threads={args.torch_threads}", "eval_every=0", *args.set]  # fmt: skip
        bellman.train(args.algo, ENV_ID, overrides=overrides, run_dir=run_dir, quiet=True)
        with open(run_dir / "episodes.csv", encoding="utf-8") as handle:
            games = [(int(r["step"]), float(r["return"])) for r in csv.DictReader(handle)]
    wall = time.perf_counter() - started
    last = [score for _, score in games[-WINDOW:]]
    mean = sum(last) / len(last) if last else float("nan")
    curve = []
    for tenth in range(1, 11):
        upto = [score for step, score in games if step <= args.steps * tenth / 10][-WINDOW:]
        curve.append({"step": args.steps * tenth // 10,
                      "mean_100": sum(upto) / len(upto) if upto else float("nan")})  # fmt: skip
    record = {**header(args.torch_threads, "torch", "ale_py", "bellman"), "env": ENV_ID,
              "args": {k: str(v) for k, v in vars(args).items()}, "games": len(games),
              "mean_last_100": mean, "wall_seconds": wall,
              "env_steps_per_second": args.steps / wall, "curve": curve}  # fmt: skip
    machine = record["machine"]
    print(f"{args.algo.upper()} on {ENV_ID}, {args.steps:,} env steps, {today()}, "
          f"{machine['platform']}, "
          f"{machine['cpu_count']} CPUs, torch threads {args.torch_threads}"
          + (f", --set {' '.join(args.set)}" if args.set else ""))  # fmt: skip
    print_table(
        ["env steps", "games", f"mean of last {WINDOW}", "wall time", "env steps/s"],
        [[f"{args.steps:,}", len(games), f"{mean:.1f}", f"{wall / 60:.1f} min",
          f"{args.steps / wall:.0f}"]],
    )  # fmt: skip
    print_table(["env steps", f"mean of last {WINDOW}"],
                [[f"{c['step']:,}", f"{c['mean_100']:.1f}"] for c in curve])  # fmt: skip
    write_results(args.results, record)


if __name__ == "__main__":
    main()
