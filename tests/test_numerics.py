"""Training flushes subnormal floats to zero (`torch_state.flush_denormals`), in the learner and
in its self-play workers, and leaves the process as it found it afterwards."""

from __future__ import annotations

import torch

from bellman import api
from bellman.torch_state import flush_denormals
from bellman.zero import muzero, selfplay

torch.set_num_threads(1)

SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


def subnormal_product() -> float:
    """A subnormal float32 times one: itself normally, 0 when subnormals are flushed."""
    return float(torch.tensor([SUBNORMAL], dtype=torch.float32).mul(1.0)[0])


def test_flush_denormals_turns_subnormal_results_into_zero():
    assert subnormal_product() > 0
    flush_denormals(True)
    try:
        assert subnormal_product() == 0.0
    finally:
        flush_denormals(False)
    assert subnormal_product() > 0


def test_a_run_trains_with_subnormals_flushed_and_leaves_them_alone_after(tmp_path, monkeypatch):
    seen = []
    original = muzero.train

    def train(config, world, run):
        seen.append(subnormal_product())
        return original(config, world, run)

    monkeypatch.setattr(muzero, "train", train)
    tiny = ["steps=20", "games_per_iteration=2", "simulations=4", "batch_size=8", "blocks=0",
            "channels=4", "value_hidden=4", "replay_window=100"]  # fmt: skip
    api.train("muzero", "tictactoe", overrides=tiny, run_dir=tmp_path / "r", quiet=True)
    assert seen == [0.0]
    assert subnormal_product() > 0


def test_self_play_workers_flush_subnormals_too():
    pool = selfplay.start_workers(1)
    try:
        assert pool.apply(subnormal_product) == 0.0
    finally:
        pool.terminate()
        pool.join()
