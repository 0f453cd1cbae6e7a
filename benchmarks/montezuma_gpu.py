"""The one-command GPU check of issue 22: PPO with RND curiosity finds Montezuma's first key.

    1. PPO + RND on ALE/MontezumaRevenge-v5 with the shipped config
       (src/bellman/configs/ppo-ALE-MontezumaRevenge-v5.toml: 64 envs on ale-py's vector env,
       `intrinsic = rnd`) through `bellman train`, for `--minutes` (10). Every `--every`
       seconds it reads the run's episodes.csv (raw game scores): the best score so far, and the
       minutes from launch to the first game scoring above 0 (the first key is worth 100).
    2. The rooms visited: ale-py's vector env hands out frames, not the console's RAM, so the
       rooms are read after training, from the run's last checkpoint: the evaluation policy
       (`bellman.api.load_policy`, the gymnasium wrapper env) plays `--room-episodes` episodes
       and the room number, byte 3 of the Atari 2600's RAM (as Go-Explore reads it), is
       recorded at every step. The start room is room 1; the first key lies in it.

Target (issue 22) on one GPU: a game score above 0 within 10 minutes, with the rooms visited
reported. The script ends within 9 minutes with `--minutes 8`; runs are stopped with SIGKILL
when the time is up (the checkpoint of the last `--flush-every` steps is what step 2 reads).
Reuses benchmarks/atari_gpu.py's launch, CSV and stop helpers.

    python benchmarks/montezuma_gpu.py [--minutes 8] [--room-episodes 8] [--set KEY=VALUE ...]

A check of the script itself on a CPU (tiny budgets; the numbers mean nothing):

    BELLMAN_BENCH_RESULTS=/tmp/out python benchmarks/montezuma_gpu.py --device cpu --minutes 1 \\
        --flush-every 256 --room-episodes 1 --max-frames 300 --set n_envs=4 --set n_steps=32 \\
        --set minibatch_size=64 --set log_every=128 --set rnd_embedding=64

Writes benchmarks/results/montezuma_gpu.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from atari_gpu import device_name, launch, read_csv, steps_per_second, stop, watch
from common import header, print_table, today, write_results

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "src" / "bellman" / "configs" / "ppo-ALE-MontezumaRevenge-v5.toml"
ENV_ID = "ALE/MontezumaRevenge-v5"
ROOM_BYTE = 3  # the room the player is in, in the console's 128 bytes of RAM


def train_until_time(args, run_dir: Path) -> dict:
    """Step 1: the run, its best raw score and the minutes to the first score above 0."""
    sets = [f"device={args.device}", f"checkpoint_every={args.flush_every}", *args.set]
    train = ["ppo", "--env", ENV_ID, "--config", str(CONFIG), "--quiet",
             *(a for s in sets for a in ("--set", s))]  # fmt: skip
    process = launch(train, run_dir)
    curve, first_score_minutes = [], None
    for minutes in watch(process, args.every, args.minutes):
        games = read_csv(run_dir / "episodes.csv")
        best = max((float(g["return"]) for g in games), default=float("nan"))
        step = steps_per_second(run_dir)[1]
        curve.append({"minutes": minutes, "step": step, "games": len(games), "best": best})
        print(f"  {minutes:5.2f} min  step {step:>9,}  games {len(games):>5}  best score "
              f"{best:6.0f}", flush=True)  # fmt: skip
        if first_score_minutes is None and best > 0:
            first_score_minutes = minutes
    stderr = stop(process)
    speed, last_step = steps_per_second(run_dir)
    games = read_csv(run_dir / "episodes.csv")
    return {"env_steps_per_second": speed, "last_step": last_step, "games": len(games),
            "best_score": max((float(g["return"]) for g in games), default=float("nan")),
            "minutes_to_first_score": first_score_minutes, "curve": curve,
            "stderr_tail": stderr[-2000:]}  # fmt: skip


def rooms_visited(run_dir: Path, episodes: int, max_frames: int) -> dict:
    """Step 2: the rooms the run's evaluation policy enters in `episodes` seeded episodes."""
    from bellman.api import load_policy

    policy, _, env = load_policy(run_dir, seed=0)
    ale = env.unwrapped.ale
    rooms, scores = set(), []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=episode)
            rooms.add(int(ale.getRAM()[ROOM_BYTE]))
            score, done, frames = 0.0, False, 0
            while not done and frames < max_frames:
                obs, reward, terminated, truncated, info = env.step(policy(obs))
                score += float(info.get("raw_reward", reward))
                rooms.add(int(ale.getRAM()[ROOM_BYTE]))
                done, frames = terminated or truncated, frames + 1
            scores.append(score)
    finally:
        env.close()
    return {"rooms": sorted(rooms), "episodes": episodes, "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=8.0, help="training's time limit")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between curve points")
    parser.add_argument(
        "--flush-every",
        type=int,
        default=262_144,
        help="checkpoint_every: the CSV logs and the policy of step 2",
    )
    parser.add_argument("--room-episodes", type=int, default=8)
    parser.add_argument("--max-frames", type=int, default=4500, help="agent steps per episode")
    parser.add_argument("--set", action="append", default=[], help="PPO config overrides")
    args = parser.parse_args()
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "ppo-rnd"
        print(f"PPO + RND on {ENV_ID}, {CONFIG.name}, for {args.minutes} min", flush=True)
        training = train_until_time(args, run_dir)
        has_checkpoint = (run_dir / "checkpoints" / "latest").exists()
        rooms = (rooms_visited(run_dir, args.room_episodes, args.max_frames) if has_checkpoint
                 else {"rooms": [], "episodes": 0, "scores": []})  # fmt: skip
    record = {**header(None, "torch", "ale_py", "bellman"), "args": vars(args),
              "training": training, "rooms": rooms}  # fmt: skip
    record["device_name"] = device_name(args.device)
    first = training["minutes_to_first_score"]
    print(f"\n{today()}, {record['device_name']}, {record['machine']['cpu_count']} CPUs")
    print_table(["run", "env steps/s", "best score", "first score > 0", "rooms visited"], [[
        f"PPO + RND, {training['last_step']:,} env steps",
        f"{training['env_steps_per_second']:.0f}", f"{training['best_score']:.0f}",
        f"{first:.1f} min" if first is not None else f"not in {args.minutes} min",
        f"{len(rooms['rooms'])}: {rooms['rooms']} ({rooms['episodes']} episodes)",
    ]])  # fmt: skip
    if training["stderr_tail"].strip():
        print(f"stderr: {training['stderr_tail'].strip()[-500:]}")
    write_results("montezuma_gpu", record)


if __name__ == "__main__":
    main()
