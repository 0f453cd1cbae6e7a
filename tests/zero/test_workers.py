"""Self-play workers: spawned (nothing of the learner's process inherited, so no CUDA context is
forked into them), deaf to Ctrl-C, and given up at a stop so that a Ctrl-C during self-play
saves and ends the run in seconds (AlphaZero's and MuZero's, which share `selfplay.play_groups`).

Before: on a 16-core GPU machine `bellman train alphazero --env go9 --set workers=6` had its 20
games of an iteration in one group of concurrent_games = 32 (one busy worker), and a SIGINT
waited for the whole iteration's self-play (minutes) before saving.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch

from bellman.games import make_game
from bellman.nets import AlphaZeroNetwork
from bellman.zero import selfplay as sp
from bellman.zero.network import weights_bytes
from tests import forked

torch.set_num_threads(1)


def _what_the_worker_inherited() -> tuple:
    """Run in a worker: the parent's marker (only a fork copies it), whether CUDA is set up,
    and what Ctrl-C does there."""
    return (
        sp._WORKER.get("parent-only"),
        torch.cuda.is_initialized(),
        signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
    )


def test_workers_are_spawned_and_leave_ctrl_c_to_the_learner():
    sp._WORKER["parent-only"] = "copied by fork"
    pool = sp.start_workers(1)
    try:
        marker, cuda, ignores_sigint = pool.apply(_what_the_worker_inherited)
    finally:
        pool.terminate()
        pool.join()
        del sp._WORKER["parent-only"]
    assert marker is None  # a fresh interpreter: a fork would have copied the marker
    assert not cuda
    assert ignores_sigint


def _tasks(groups: int, simulations: int = 8):
    game = make_game("tictactoe")
    settings = sp.SelfPlaySettings(
        game="tictactoe", simulations=simulations, c_puct=1.25, dirichlet_alpha=1.0,
        dirichlet_fraction=0.25, temperature_moves=4, search_batch_size=4, virtual_loss=1.0,
        blocks=1, channels=8, value_hidden=8, torch_threads=1,
    )  # fmt: skip
    torch.manual_seed(0)
    blob = weights_bytes(AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=1,
                                          channels=8, value_hidden=8))  # fmt: skip
    return [(blob, settings, 3, [2 * g, 2 * g + 1]) for g in range(groups)]


def test_play_groups_in_order_and_given_up_at_a_stop():
    tasks = _tasks(3)
    played = sp.play_groups(tasks, None, lambda: False)
    direct = [pair for task in tasks for pair in sp.self_play_games(task)]
    assert [n for n, _ in played] == list(range(6))
    for (_, a), (_, b) in zip(played, direct, strict=True):
        assert (a.policies == b.policies).all() and a.first_player_result == b.first_player_result
    calls = []  # without workers: the stop is seen between groups
    assert sp.play_groups(tasks, None, lambda: calls.append(1) or len(calls) > 1) is None
    assert len(calls) == 2
    # with a worker busy for far longer than the test: the stop is seen within the poll
    pool = sp.start_workers(1)
    try:
        long = _tasks(200, simulations=400)
        started = time.perf_counter()
        stop_at = started + 0.5
        assert sp.play_groups(long, pool, lambda: time.perf_counter() > stop_at) is None
        assert time.perf_counter() - started < 3
    finally:
        pool.terminate()
        pool.join()


@pytest.mark.parametrize("algo", ["alphazero", "muzero"])
def test_sigint_during_self_play_with_two_workers_saves_and_stops_in_seconds(
    tmp_path: Path, algo: str
):
    # one iteration of 4000 games at 200 simulations in groups of 2: minutes of self-play
    settings = [
        "workers=2", "concurrent_games=2", "games_per_iteration=4000", "simulations=200",
        "blocks=1", "channels=8", "value_hidden=8", "batch_size=16", "arena_games=0",
    ]  # fmt: skip
    command = ["train", algo, "--env", "tictactoe", "--run-dir", "run", "--steps", "100000",
               "--quiet"]  # fmt: skip
    for setting in settings:
        command += ["--set", setting]
    process = forked.start(command, tmp_path)
    run = tmp_path / "run"
    deadline = time.monotonic() + 120
    while not (run / "config.toml").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the session is open: the workers are starting or playing
    time.sleep(2.0)
    process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    took = time.monotonic() - signalled
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert took < 15, f"{took:.1f} s from SIGINT to exit (2 shared, busy cores)"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0"
    meta = json.loads((run / "checkpoints" / "step-0.json").read_text())
    assert meta["state"]["games"] == 0  # the iteration was given up, nothing half-counted
