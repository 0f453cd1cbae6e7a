"""The one-command GPU check of issue 18: PPO learns Pong on one GPU, and DQN's throughput.

    1. PPO on ALE/Pong-v5 with the shipped GPU config (src/bellman/configs/ppo-ALE-Pong-v5-gpu.toml:
       64 envs on ale-py's AtariVectorEnv, the rollout on the device) through `bellman train`,
       until the mean training return of the last 20 games is at least 18 or `--minutes` (8)
       have passed. Prints env steps/s (from metrics.csv: steps and wall_time between the first
       and the last row), the minutes from launch to 18 (or "not reached"), and the curve
       (minutes, env steps, mean of the last 20 games) every `--every` seconds.
    2. DQN on ALE/Pong-v5 (Nature settings, `--dqn-envs` envs on the backend, one gradient step
       of 32 every 4 env steps: the Nature replay ratio of 1/4 gradient steps per env step, kept
       for any number of envs) for `--dqn-seconds`: env steps/s after the warm-up and the
       replay ratio actually run (updates / env steps).

Targets (issue 18) on one H200 with 16 cores: PPO at least 12,000 env steps/s end to end and Pong
at 18 in under 8 minutes; DQN at least 3,000 env steps/s. The whole script ends within 9 minutes
with the defaults. The script reads the runs' metrics.csv and episodes.csv while they train;
bellman buffers those files and pushes them to disk at each checkpoint, so the runs checkpoint
often (PPO every `--flush-every` env steps, DQN every 10 log rows). Runs are stopped with SIGKILL
when the target or the time is reached: only the measurements matter here.

    python benchmarks/atari_gpu.py [--minutes 8] [--dqn-seconds 45] [--set KEY=VALUE ...]

A check of the script itself on a CPU (tiny budgets; the numbers mean nothing):

    BELLMAN_BENCH_RESULTS=/tmp/out python benchmarks/atari_gpu.py --device cpu --minutes 1.5 \\
        --dqn-seconds 90 --dqn-envs 4 --dqn-warmup 64 --dqn-log-every 16 --flush-every 128 \\
        --set n_envs=8 --set n_steps=16 --set minibatch_size=128 --set log_every=128

Writes benchmarks/results/atari_gpu.json.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import header, print_table, today, write_results

ROOT = Path(__file__).resolve().parent.parent
GPU_CONFIG = ROOT / "src" / "bellman" / "configs" / "ppo-ALE-Pong-v5-gpu.toml"
ENV_ID = "ALE/Pong-v5"
SOLVED = 18.0
WINDOW = 20


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows written so far (a file being appended to: a half-written last line is dropped)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if None not in row.values()]


def steps_per_second(run_dir: Path, after: int = 0) -> tuple[float, int]:
    """(env steps/s between the first metrics row at a step > `after` and the last row, the
    last row's step); NaN before two such rows."""
    rows = [r for r in read_csv(run_dir / "metrics.csv") if int(r["step"]) > after]
    if len(rows) < 2:
        return float("nan"), int(rows[-1]["step"]) if rows else 0
    first, last = rows[0], rows[-1]
    seconds = float(last["wall_time"]) - float(first["wall_time"])
    return (int(last["step"]) - int(first["step"])) / seconds, int(last["step"])


def launch(args: list[str], run_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "bellman", "train", *args, "--run-dir", str(run_dir)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen) -> str:
    """Kill the run (if it still runs) and return what it wrote on stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    return stderr or ""


def watch(process: subprocess.Popen, every: float, limit_minutes: float):
    """While the launched run lives, every `every` seconds: the minutes since now (the caller
    reads the run's CSVs then, and may stop early); the last one at `limit_minutes`."""
    started = time.perf_counter()
    while process.poll() is None:
        time.sleep(every)
        minutes = (time.perf_counter() - started) / 60
        yield minutes
        if minutes >= limit_minutes:
            return


def ppo_until_solved(args, tmp: Path) -> dict:
    run_dir = tmp / "ppo"
    # a checkpoint every `--flush-every` steps pushes metrics.csv and episodes.csv to disk
    sets = [f"device={args.device}", f"checkpoint_every={args.flush_every}", *args.set]
    train = ["ppo", "--env", ENV_ID, "--config", str(GPU_CONFIG), "--quiet", "--steps",
             str(args.ppo_steps), *(a for s in sets for a in ("--set", s))]  # fmt: skip
    process = launch(train, run_dir)
    curve, solved_minutes = [], None
    for minutes in watch(process, args.every, args.minutes):
        games = read_csv(run_dir / "episodes.csv")
        recent = [float(g["return"]) for g in games[-WINDOW:]]
        mean = sum(recent) / len(recent) if recent else float("nan")
        step = steps_per_second(run_dir)[1]  # the last metrics row on disk
        curve.append({"minutes": minutes, "step": step, "games": len(games), "mean_20": mean})
        print(f"  {minutes:5.2f} min  step {step:>9,}  games {len(games):>5}  "
              f"mean of last {WINDOW}: {mean:6.2f}", flush=True)  # fmt: skip
        if len(recent) == WINDOW and mean >= SOLVED:
            solved_minutes = minutes
            break
    stderr = stop(process)
    speed, last_step = steps_per_second(run_dir)
    return {"env_steps_per_second": speed, "last_step": last_step, "minutes_to_18": solved_minutes,
            "curve": curve, "stderr_tail": stderr[-2000:]}  # fmt: skip


def dqn_throughput(args, tmp: Path) -> dict:
    run_dir = tmp / "dqn"
    warmup = args.dqn_warmup
    sets = [f"device={args.device}", f"n_envs={args.dqn_envs}", f"learning_starts={warmup}",
            "buffer_size=200000", "train_frequency=4", "gradient_steps=1", "eval_every=0",
            f"log_every={args.dqn_log_every}", f"checkpoint_every={10 * args.dqn_log_every}",
            "save_replay=false"]  # fmt: skip
    train = ["dqn", "--env", ENV_ID, "--quiet", *(a for s in sets for a in ("--set", s))]
    process = launch(train, run_dir)
    deadline = time.perf_counter() + args.dqn_seconds
    while process.poll() is None and time.perf_counter() < deadline:
        time.sleep(1)
    stderr = stop(process)
    speed, last_step = steps_per_second(run_dir, after=warmup)
    rows = read_csv(run_dir / "metrics.csv")
    updates = int(rows[-1]["updates"]) if rows else 0
    ratio = updates / (last_step - warmup) if last_step > warmup else float("nan")
    return {"env_steps_per_second": speed, "last_step": last_step, "updates": updates,
            "replay_ratio": ratio, "stderr_tail": stderr[-2000:]}  # fmt: skip


def device_name(device: str) -> str:
    """The GPU's name for the record ("cpu" on the CPU); never an exception: the record must be
    written whatever the device says."""
    try:
        import torch

        return torch.cuda.get_device_name() if device == "cuda" else "cpu"
    except Exception as error:
        return f"unknown ({error})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=8.0, help="PPO's time limit")
    parser.add_argument("--ppo-steps", type=int, default=50_000_000, help="PPO's --steps")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between curve points")
    parser.add_argument("--dqn-seconds", type=float, default=45.0)
    parser.add_argument("--dqn-envs", type=int, default=16)
    parser.add_argument("--dqn-warmup", type=int, default=10_000, help="DQN's learning_starts")
    parser.add_argument("--dqn-log-every", type=int, default=2000)
    parser.add_argument(
        "--flush-every",
        type=int,
        default=163_840,
        help="PPO's checkpoint_every: the CSV logs reach the disk at checkpoints",
    )
    parser.add_argument("--set", action="append", default=[], help="PPO config overrides")
    args = parser.parse_args()
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"PPO on {ENV_ID}, {GPU_CONFIG.name}, until the mean of the last {WINDOW} games "
              f">= {SOLVED} or {args.minutes} min", flush=True)  # fmt: skip
        ppo = ppo_until_solved(args, Path(tmp))
        print(f"DQN on {ENV_ID}, {args.dqn_envs} envs, {args.dqn_seconds} s", flush=True)
        dqn = dqn_throughput(args, Path(tmp))
    record = {**header(None, "torch", "ale_py", "bellman"), "args": vars(args), "ppo": ppo,
              "dqn": dqn}  # fmt: skip
    record["device_name"] = device_name(args.device)
    solved = ppo["minutes_to_18"]
    print(f"\n{today()}, {record['device_name']}, {record['machine']['cpu_count']} CPUs")
    print_table(["run", "env steps/s", "result"], [
        ["PPO Pong (GPU config)", f"{ppo['env_steps_per_second']:.0f}",
         f"18 in {solved:.1f} min" if solved is not None else f"not 18 in {args.minutes} min"],
        [f"DQN Pong ({args.dqn_envs} envs)", f"{dqn['env_steps_per_second']:.0f}",
         f"{dqn['replay_ratio']:.3f} gradient steps per env step"],
    ])  # fmt: skip
    for name, part in (("PPO", ppo), ("DQN", dqn)):
        if part["stderr_tail"].strip():
            print(f"{name} stderr: {part['stderr_tail'].strip()[-500:]}")
    write_results("atari_gpu", record)


if __name__ == "__main__":
    main()
