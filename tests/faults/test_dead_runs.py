"""Runs that die before their first checkpoint leave no dead run directory behind, and sizes that
cannot fit in memory are refused before anything is allocated or written.

Before: a Ctrl-C in the first seconds, a crash, a NaN at step 256 or `--set buffer_size=1e12`
(14.6 TiB) left config.toml and an events file but no checkpoint, so `--resume` said "no
checkpoint" and a fresh `train --run-dir` said "already exists".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import forked
from tests.conftest import assert_user_error

DQN = ["train", "dqn", "--env", "CartPole-v1", "--steps", "3000", "--quiet",
       "--set", "learning_starts=100", "--set", "checkpoint_every=1000",
       "--set", "hidden_size=32", "--set", "gradient_steps=16"]  # fmt: skip


def test_a_nan_before_the_first_checkpoint_leaves_nothing(bellman_here, tmp_path):
    result = bellman_here(*DQN, "--run-dir", "run", "--set", "learning_rate=1e30")
    assert_user_error(result, "loss is nan", "step")
    assert not (tmp_path / "run").exists()
    again = bellman_here(*DQN, "--run-dir", "run", "--steps", "1000")  # the same place works
    assert again.returncode == 0, again
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step-1000"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_as_the_run_directory_appears_leaves_nothing(bellman_here, tmp_path, signum):
    """A tabular run stopped between writing its config and its first episode: its loop ended
    with no checkpoint, and the command said "error: no checkpoint in 'run/checkpoints'" with
    exit status 2 and left config.toml and an events file (5 of 5 tries on 2026-12-07). Now the
    run is removed as after a failure, and the command says so and exits 130 or 143."""
    args = ["train", "q-learning", "--env", "bellman/Corridor-v0", "--steps", "10000000",
            "--quiet", "--run-dir", "run"]  # fmt: skip
    process = forked.start(args, tmp_path)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "config.toml").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == (130 if signum == signal.SIGINT else 143), stderr
    if (tmp_path / "run" / "checkpoints" / "latest").exists():  # the signal came later
        assert "checkpoint saved" in stderr
    else:
        assert stderr.strip().splitlines() == [
            "interrupted before the first checkpoint; nothing was kept: run the same command again"
        ]
        assert not (tmp_path / "run").exists()
        again = bellman_here(*args[:5], "1000", "--quiet", "--run-dir", "run")
        assert again.returncode == 0, again


@pytest.mark.parametrize("size", ["1e12", "4e10"])
def test_a_replay_memory_larger_than_the_machine_is_refused(bellman, tmp_path, size):
    started = time.perf_counter()
    result = bellman(*DQN, "--run-dir", "run", "--set", f"buffer_size={size}")
    assert_user_error(result, "replay memory", "needs", "available", "buffer_size")
    assert "TiB" in result.stderr or "GiB" in result.stderr
    assert time.perf_counter() - started < 60  # refused, not swapped to death
    assert not (tmp_path / "run").exists()


def _interrupt_after(
    tmp_path: Path, delay: float, signum: int, program=(sys.executable, "-m", "bellman")
) -> subprocess.CompletedProcess:
    """DQN's short run started as `program` (`python -m bellman`, or the console script), sent
    `signum` after `delay` seconds, and waited for. The run starts with Ctrl-C's default action,
    as from a terminal, however the suite was started: a shell runs a background job (`make
    test &`) with SIGINT ignored, its children inherit that, and a SIGINT sent before bellman
    sets its own handler was then lost (the run went on and ended with 0)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    process = subprocess.Popen(
        [*program, *DQN, "--run-dir", "run"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    time.sleep(delay)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


#: Moments in the first seconds of a run: imports, env and network setup, the first steps.
DELAYS = np.random.default_rng(17).uniform(0.2, 2.5, size=3).round(2).tolist()


@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_early_signal_leaves_a_run_that_can_go_on(bellman_here, tmp_path, delay, signum):
    """Whenever the signal lands, what is left is either nothing (the same command starts
    again) or a run with a checkpoint (`--resume` continues it): never a dead directory. (The
    signalled run is a process of its own; what follows runs in this process.)"""
    result = _interrupt_after(tmp_path, delay, signum)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 130, 143, -signum), result
    run = tmp_path / "run"
    if not run.exists():
        again = bellman_here(*DQN, "--run-dir", "run", "--steps", "1000")
        assert again.returncode == 0, again
    elif (run / "checkpoints" / "latest").exists():
        if result.returncode != 0:
            resumed = bellman_here("train", "--resume", "run")
            # a signal after the last step's checkpoint leaves a finished run: resume says so
            finished = "already reached its target" in resumed.stderr
            assert resumed.returncode == 0 or (resumed.returncode == 2 and finished), resumed
    else:
        pytest.fail(f"dead run directory: {sorted(p.name for p in run.iterdir())}")


#: The `bellman` command users type: the console script pip installs beside this interpreter.
CONSOLE_SCRIPT = Path(sys.executable).with_name("bellman")


@pytest.mark.skipif(
    not CONSOLE_SCRIPT.exists(), reason="no `bellman` console script beside this Python"
)
@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3])
def test_a_ctrl_c_while_the_console_script_starts_is_130_without_a_traceback(tmp_path, delay):
    """The console script starts in `bellman.__main__.run`, as `python -m bellman` does: before,
    it imported `bellman.cli` with Python's own SIGINT handling, and a Ctrl-C in its first ~0.3 s
    (numpy importing) printed a KeyboardInterrupt traceback and died by the signal."""
    result = _interrupt_after(tmp_path, delay, signal.SIGINT, program=(CONSOLE_SCRIPT,))
    stderr = result.stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert result.returncode == 130, (result.returncode, stderr)


# ---- Ctrl-C while native libraries import ------------------------------------------------------
# A KeyboardInterrupt raised while torch imports can run inside Python code that C++ called: it
# aborted `bellman train` with SIGABRT ("terminate called after throwing an instance of
# 'pybind11::error_already_set'") in about 1 of 60 signals sent in the first second on 2 busy
# cores, or importlib swallowed it and the run went on. The algorithm's module now imports with
# Ctrl-C held (`run.ctrl_c_deferred`), and the startup handler exits with os._exit.
def test_a_ctrl_c_during_a_held_import_lands_after_it():
    import importlib

    from bellman.run import ctrl_c_deferred

    imported = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own
    try:
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler has run by now: it only noted the signal
                imported.append(importlib.import_module("json"))
        assert imported  # the block ran to its end first
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_held_ctrl_c_reaches_the_handler_that_was_in_place():
    from bellman.run import ctrl_c_deferred

    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: seen.append(signum))
    try:
        with ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert seen == []
        assert seen == [signal.SIGINT]
        with ctrl_c_deferred():  # no signal: nothing happens after the block
            pass
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
