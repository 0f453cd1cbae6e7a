"""The one-command GPU check of issue 19: MuZero's env steps/s on ALE/Pong-v5 on one GPU.

Trains `bellman train muzero --env ALE/Pong-v5` with the shipped GPU config
(src/bellman/configs/muzero-ALE-Pong-v5.toml: 16 games at once, 50 simulations a move over the
learned model, 200 unrolled gradient steps of 256 an iteration) for `--minutes`, then stops it
as Ctrl-C does (SIGINT: a stop during acting gives the iteration's episodes up and saves; the
run is killed if it has not ended `--grace` seconds later). From metrics.csv, over the
iterations that finished: env steps, self-play seconds and gradient-step seconds, so

    env steps/s         = env steps / (self-play + training seconds)   (end to end)
    self-play steps/s   = env steps / self-play seconds                 (acting and search)
    gradient steps/s    = updates / training seconds

The start of the process (imports, CUDA) is outside every iteration. Reference, not measured
here: LightZero reports about 36 env steps/s for MuZero on Pong with its asynchronous pipeline
(issue 19). With the defaults the script ends within 8 minutes.

    python benchmarks/muzero_pong_gpu.py [--minutes 5] [--grace 120] [--set KEY=VALUE ...]

A check of the script itself on a CPU (tiny budgets; the numbers mean nothing):

    BELLMAN_BENCH_RESULTS=/tmp/out python benchmarks/muzero_pong_gpu.py --device cpu \\
        --minutes 1.5 --set games_per_iteration=2 --set max_episode_steps=16 \\
        --set simulations=4 --set train_steps=2 --set batch_size=8 --set channels=8 \\
        --set support=10

Writes benchmarks/results/muzero_pong_gpu.json.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from atari_gpu import launch, read_csv
from common import header, print_table, write_results

ENV_ID = "ALE/Pong-v5"
LIGHTZERO_ENV_STEPS_PER_SECOND = 36  # (LightZero's report, quoted by issue 19)


def stop_as_ctrl_c(process: subprocess.Popen, grace: float) -> str:
    """SIGINT, then SIGKILL if the run has not ended within `grace` seconds; its stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr or ""


def device_name(device: str) -> str:
    """The GPU the run used (`device` auto or cuda with one visible), else "cpu"."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def iteration_rates(rows: list[dict[str, str]]) -> dict:
    """The rates above over the iterations of `rows` (metrics.csv, one row an iteration)."""
    steps = int(rows[-1]["step"]) if rows else 0
    selfplay = sum(float(row["selfplay_seconds"]) for row in rows)
    training = sum(float(row["train_seconds"]) for row in rows)
    updates = int(rows[-1]["updates"]) if rows else 0
    nan = float("nan")
    return {
        "iterations": len(rows), "env_steps": steps, "updates": updates,
        "selfplay_seconds": selfplay, "train_seconds": training,
        "env_steps_per_second": steps / (selfplay + training) if rows else nan,
        "selfplay_steps_per_second": steps / selfplay if selfplay else nan,
        "gradient_steps_per_second": updates / training if training else nan,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=120.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for the run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "muzero"
        sets = [f"device={args.device}", "checkpoint_every=10000000", *args.set]
        process = launch(["muzero", "--env", ENV_ID, "--quiet",
                          *(a for s in sets for a in ("--set", s))], run_dir)  # fmt: skip
        deadline = time.perf_counter() + args.minutes * 60
        while process.poll() is None and time.perf_counter() < deadline:
            time.sleep(1)
        stderr = stop_as_ctrl_c(process, args.grace)
        rates = iteration_rates(read_csv(run_dir / "metrics.csv"))
    print_table(
        ["iterations", "env steps", "updates", "env steps/s (end to end)",
         "self-play steps/s", "gradient steps/s", "LightZero (reported)"],
        [[rates["iterations"], rates["env_steps"], rates["updates"],
          f"{rates['env_steps_per_second']:.1f}", f"{rates['selfplay_steps_per_second']:.1f}",
          f"{rates['gradient_steps_per_second']:.2f}", LIGHTZERO_ENV_STEPS_PER_SECOND]],
    )  # fmt: skip
    write_results("muzero_pong_gpu", {
        **header(None, "torch", "ale_py"), "device": device_name(args.device), "env": ENV_ID,
        "minutes": args.minutes, "overrides": args.set, **rates,
        "lightzero_reported_env_steps_per_second": LIGHTZERO_ENV_STEPS_PER_SECOND,
        "stderr_tail": stderr[-2000:],
    })  # fmt: skip


if __name__ == "__main__":
    main()
