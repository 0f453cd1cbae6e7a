"""Interrupted runs: a real SIGINT or SIGTERM at a random moment of training, then `--resume`,
must end bit for bit where the uninterrupted run ends, for every algorithm that trains on an env.

Each case starts `bellman train` as a process of its own and sends it the signal at a seeded
random moment after its k-th checkpoint (k drawn from the seed in the first half of the run,
plus a drawn delay); it must exit 130 (SIGINT) or 143 (SIGTERM), and is then resumed to the end.
The same command run in one go (it and the resume run in the test's process: `run_here`) is the
reference: the two final checkpoints must hold the same arrays bit for bit (weights, optimizer
state, RNG states, statistics, replay memory, Q-tables), and metrics.csv (timing columns aside)
and episodes.csv must be the same. Checkpoints come every few iterations, so a loop that stopped
where the signal found it (and reset its episodes on resume) would not meet the uninterrupted
run's episodes.
"""

from __future__ import annotations

import signal
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import forked
from tests.conftest import _final_state, assert_killed_run_resumes_exactly, run_here

#: algo -> (env, steps, checkpoint_every, the signal, settings): small runs, several iterations
#: between two checkpoints.
CASES = {
    "dqn": ("CartPole-v1", 4000, 400, signal.SIGTERM, [
        "buffer_size=4000", "learning_starts=400", "train_frequency=8", "gradient_steps=2",
        "batch_size=32", "hidden_size=32", "target_update_interval=200", "log_every=200",
        "eval_every=1000", "eval_episodes=2",
    ]),
    "reinforce": ("CartPole-v1", 4000, 500, signal.SIGINT, [
        "batch_episodes=2", "hidden_size=16", "log_every=250", "eval_every=2000",
        "eval_episodes=2",
    ]),
    "a2c": ("CartPole-v1", 4000, 400, signal.SIGTERM, [
        "n_envs=4", "n_steps=5", "hidden_size=16", "log_every=200", "eval_every=0",
    ]),
    "ppo": ("CartPole-v1", 6144, 768, signal.SIGINT, [
        "n_envs=2", "n_steps=64", "minibatch_size=64", "n_epochs=2", "hidden_size=16",
        "anneal=true", "normalize_observations=true", "normalize_rewards=true",
        "log_every=256", "eval_every=3072", "eval_episodes=2",
    ]),
    "q-learning": ("Taxi-v4", 60000, 3000, signal.SIGINT, ["log_every=1000"]),
    "sarsa": ("FrozenLake-v1", 60000, 3000, signal.SIGTERM, ["log_every=1000"]),
}  # fmt: skip


def _train_args(algo: str) -> list[str]:
    env_id, steps, every, _, settings = CASES[algo]
    args = ["train", algo, "--env", env_id, "--steps", str(steps), "--seed", "3", "--quiet",
            "--set", f"checkpoint_every={every}"]  # fmt: skip
    for setting in settings:
        args += ["--set", setting]
    return args


def _start(args: list[str], cwd: Path) -> forked.ForkedProcess:
    return forked.start(args, cwd)


def _latest_step(run_dir: Path) -> int:
    """The step of the run's newest checkpoint (0 before the first)."""
    try:
        name = (run_dir / "checkpoints" / "latest").read_text().strip()
    except FileNotFoundError:
        return 0
    return int(name.partition("-")[2] or 0)


def _interrupt(process: subprocess.Popen, run_dir: Path, after_step: int, delay: float, signum):
    """Send `signum` `delay` seconds after the run's checkpoint at `after_step` exists."""
    deadline = time.monotonic() + 120
    while _latest_step(run_dir) < after_step:
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the run ended before step {after_step}: {out}{err}")
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.002)
    time.sleep(delay)
    assert process.poll() is None, "the run ended before the signal"
    process.send_signal(signum)


@pytest.mark.parametrize("algo", list(CASES))
def test_a_signal_at_a_random_moment_then_resume_is_the_uninterrupted_run(tmp_path, algo):
    env_id, steps, every, signum, _ = CASES[algo]
    rng = np.random.default_rng(zlib.crc32(algo.encode()))
    after = every * int(rng.integers(1, steps // every // 2))  # in the first half of the run
    delay = float(rng.uniform(0.0, 0.05))
    args = _train_args(algo)
    stopped = _start([*args, "--run-dir", "stopped"], tmp_path)
    try:
        _interrupt(stopped, tmp_path / "stopped", after, delay, signum)
        out, err = stopped.communicate(timeout=120)
    finally:
        stopped.kill()
    expected_status = 143 if signum == signal.SIGTERM else 130
    assert stopped.returncode == expected_status, (stopped.returncode, out, err)
    assert "Traceback" not in err, err
    at = _latest_step(tmp_path / "stopped")
    assert after < at < steps, (after, at)  # it stopped part-way, after the signal

    # the run in one go and the resume: the same commands in this process
    one_go = run_here([*args, "--run-dir", "one-go"], tmp_path)
    assert one_go.returncode == 0, one_go
    resumed = run_here(["train", "--resume", "stopped", "--quiet"], tmp_path)
    assert resumed.returncode == 0, resumed
    arrays, metrics, episodes = _final_state(tmp_path / "stopped", steps)
    expected_arrays, expected_metrics, expected_episodes = _final_state(tmp_path / "one-go", steps)
    assert set(arrays) == set(expected_arrays)
    for key, value in expected_arrays.items():
        assert arrays[key].dtype == value.dtype, key
        np.testing.assert_array_equal(arrays[key], value, err_msg=f"{key} (stopped at {at})")
    assert metrics == expected_metrics, f"metrics.csv differs (stopped at {at})"
    assert episodes == expected_episodes, f"episodes.csv differs (stopped at {at})"


# ---- on CUDA, where a GPU is visible -----------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("suite", ["ppo", "dqn"])
def test_a_killed_cuda_run_resumes_bit_for_bit(tmp_path, suite):
    """The CUDA generator is captured and restored with the rest (seeding.capture_rngs): a run
    on the GPU killed after its first checkpoint and resumed ends bit for bit as one that never
    stopped. Not yet run: no GPU was lent to the session that wrote it."""
    from tests.algos import test_dqn, test_ppo

    args = {"ppo": test_ppo.RESUMABLE, "dqn": test_dqn.RESUMABLE}[suite]
    steps = {"ppo": 8192, "dqn": 8000}[suite]
    arrays = assert_killed_run_resumes_exactly(tmp_path, [*args, "--set", "device=cuda"], steps)
    assert "cuda_rng" in arrays
