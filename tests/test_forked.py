"""The suite's forked `bellman` processes (tests/forked.py) against fresh interpreters: the same
standard output, standard error and exit status, a signal's death included, and a child's
files written where its working directory says."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests import forked

COMMANDS = [
    ["train", "nope"],  # bad input: one error line, status 2
    ["envs"],
    [
        "train",
        "q-learning",
        "--env",
        "bellman/Corridor-v0",
        "--steps",
        "300",
        "--quiet",
        "--run-dir",
        "run",
    ],  # fmt: skip
    [
        "train",
        "dqn",
        "--env",
        "CartPole-v1",
        "--steps",
        "64",
        "--quiet",
        "--run-dir",
        "run",
        "--set",
        "learning_starts=32",
        "--set",
        "hidden_size=8",
    ],  # fmt: skip
]


def _env() -> dict[str, str]:
    return {**forked.server_environment(), "COLUMNS": "200"}


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]))
def test_a_forked_command_prints_and_ends_as_a_fresh_interpreter(tmp_path, args):
    (tmp_path / "fresh").mkdir()
    (tmp_path / "forked").mkdir()
    fresh = subprocess.run([sys.executable, "-m", "bellman", *args], cwd=tmp_path / "fresh",
                           env=_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    process = forked.start(args, tmp_path / "forked", _env())
    assert isinstance(process, forked.ForkedProcess)
    stdout, stderr = process.communicate(timeout=120)
    assert (process.returncode, stdout, stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    made = sorted(p.name for p in (tmp_path / "forked").iterdir())
    assert made == sorted(p.name for p in (tmp_path / "fresh").iterdir())


def test_a_killed_child_reports_the_signal_and_a_sigint_saves_the_run(tmp_path):
    args = ["train", "q-learning", "--env", "bellman/Corridor-v0", "--steps", "10000000",
            "--quiet", "--run-dir", "run", "--set", "checkpoint_every=1000"]  # fmt: skip
    (tmp_path / "killed").mkdir()
    killed = forked.start(args, tmp_path / "killed", _env())
    interrupted = forked.start(args, tmp_path, _env())
    deadline = time.monotonic() + 60
    while (
        not (tmp_path / "run" / "checkpoints" / "latest").exists() and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    killed.kill()
    interrupted.send_signal(signal.SIGINT)
    assert killed.wait(60) == -signal.SIGKILL
    _, stderr = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130, stderr
    assert "checkpoint saved" in stderr and "--resume run" in stderr


def test_a_changed_start_up_variable_gets_a_fresh_interpreter(tmp_path):
    process = forked.start(["envs"], tmp_path, {**_env(), "PYTHONWARNINGS": "ignore"})
    assert isinstance(process, subprocess.Popen)
    process.communicate(timeout=120)
    assert process.returncode == 0
