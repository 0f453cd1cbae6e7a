"""AlphaZero's self-play on Ray actors (bellman.distributed.selfplay): with max_policy_lag = 0 a
seeded run is the one-worker run and the process pool's run bit for bit, through an actor killed
mid-run; with a lag of 1 the actors play the next iteration's games with the net of the moment
while the learner trains. One local Ray (2 CPUs) serves the module."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman.errors import ConfigError

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'bellman[ray]'")

from bellman.distributed import selfplay  # noqa: E402

torch.set_num_threads(1)

# two iterations of 4 games in groups of 2 (both actors play), 3 gradient steps between them
TINY = [
    "steps=40", "simulations=8", "blocks=1", "channels=8", "value_hidden=8", "batch_size=16",
    "replay_window=2000", "train_steps=3", "games_per_iteration=4", "concurrent_games=2",
    "arena_games=0", "optimizer=adam", "learning_rate=0.001", "checkpoint_every=1000",
]  # fmt: skip


def final(run_dir: Path, settings: list[str]):
    """Train tic-tac-toe with `settings`; the final checkpoint's arrays and the metrics rows
    without their timing columns."""
    api.train("alphazero", "tictactoe", overrides=settings, run_dir=run_dir, quiet=True)
    arrays, _ = checkpoint.load(run_dir / "checkpoints")
    timing = ("wall_time", "steps_per_second", "selfplay_seconds", "train_seconds",
              "arena_seconds")  # fmt: skip
    with open(run_dir / "metrics.csv") as handle:
        rows = [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(handle)]
    return arrays, rows


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """The reference: self-play in the learner's process."""
    return final(tmp_path_factory.mktemp("one") / "run", TINY)


def assert_same(a, b) -> None:
    assert set(a[0]) == set(b[0])
    for key in a[0]:
        assert np.array_equal(a[0][key], b[0][key]), key
    assert a[1] == b[1]


def kill_an_actor_in_the_first_iteration(killed: list[int]) -> None:
    """In a thread of the test: SIGKILL actor 0's process while it has a group of the first
    iteration's games, then ask it for its process id again. Ray answers once it has restarted
    the actor; the run cannot end before, as actor 0 still has a group of the second iteration
    to play (asked any later, a finished run's `ray.kill` could beat the answer)."""
    deadline = time.monotonic() + 120
    while not selfplay.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    actors = selfplay.RUNNING[0]
    first = actors.pid(0)  # answered at once, even while the actor plays
    while time.monotonic() < deadline:
        if actors.outstanding[0] and actors.groups_sent <= 2:  # 2 groups per iteration
            os.kill(first, signal.SIGKILL)
            killed.extend([first, actors.pid(0)])
            return
        time.sleep(0.001)


def test_ray_self_play_is_the_one_worker_and_the_pool_run_bit_for_bit(
    local_ray, one_worker, tmp_path: Path
):
    # an actor killed while it has a group: Ray restarts it and the group is played again
    killed: list[int] = []
    killer = threading.Thread(target=kill_an_actor_in_the_first_iteration, args=(killed,))
    killer.start()
    on_ray = final(tmp_path / "ray", [*TINY, "backend=ray", "workers=2"])
    killer.join()
    assert len(killed) == 2 and killed[0] != killed[1]
    assert int(on_ray[1][-1]["iteration"]) == 2 and int(on_ray[1][-1]["updates"]) == 6
    assert_same(on_ray, one_worker)  # every array: nets, Adam, window, generators
    assert_same(final(tmp_path / "pool", [*TINY, "workers=2"]), one_worker)


def test_a_policy_lag_plays_the_next_iteration_with_the_net_of_the_moment(
    local_ray, one_worker, tmp_path: Path
):
    lagging = final(tmp_path / "lag", [*TINY, "backend=ray", "workers=2", "max_policy_lag=1"])
    # iteration 2's games were sent before iteration 1 trained: they are the untrained net's
    # games (a run that never trains), not the synchronous run's
    untrained = final(tmp_path / "untrained", [*TINY, "train_steps=0"])
    first = int(one_worker[1][0]["replay_size"])
    both = int(lagging[1][1]["replay_size"])
    policies = "replay/policies"
    assert np.array_equal(lagging[0][policies][:first], one_worker[0][policies][:first])
    assert np.array_equal(lagging[0][policies][first:both], untrained[0][policies][first:both])
    assert not np.array_equal(lagging[0][policies][first:both],
                              one_worker[0][policies][first:both])  # fmt: skip
    assert int(lagging[1][-1]["updates"]) == 6  # the learner trained as often


def test_max_policy_lag_needs_ray():
    with pytest.raises(ConfigError, match="backend = ray"):
        api.train("alphazero", "tictactoe", overrides=[*TINY, "max_policy_lag=1"], quiet=True)


@pytest.mark.parametrize("lag", [0, 1, 2])
def test_the_actors_keep_the_weights_of_the_last_lag_plus_one_versions(local_ray, lag):
    actors = selfplay.SelfPlayActors(1, max_policy_lag=lag)
    try:
        versions = [bytes([i]) * 8 for i in range(5)]
        references = [actors.publish(weights) for weights in versions]
        assert actors.publish(versions[-1]) is references[-1]  # one `ray.put` per version
        assert [blob for blob, _ in actors.versions] == versions[-1 - lag :]
    finally:
        actors.terminate()
