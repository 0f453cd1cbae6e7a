"""Checkpoints: round trip, atomicity, and a clear error for every kind of damage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bellman import checkpoint
from bellman.errors import CheckpointError


def _save(directory, step=10, algo="q-learning"):
    arrays = {"q": np.arange(6, dtype=np.float64).reshape(2, 3), "n": np.ones(3, dtype=np.int64)}
    checkpoint.save(directory, f"step-{step}", arrays, _meta(algo, step))
    return arrays


def _meta(algo="q-learning", step=10):
    """The envelope every run's checkpoint JSON carries (checkpoint.META_SCHEMA)."""
    run = {"episodes": 2, "recent_returns": [1.0, -0.5], "recent_lengths": [3, 4],
           "metrics_rows": 1, "episode_rows": 2}  # fmt: skip
    return {"algo": algo, "env": "Taxi-v4", "step": step, "config": {}, "state": {}, "run": run}


def test_round_trip_is_exact_and_leaves_no_temp_files(tmp_path):
    arrays = _save(tmp_path)
    loaded, meta = checkpoint.load(tmp_path, algo="q-learning")
    assert meta["step"] == 10 and meta["schema_version"] == checkpoint.SCHEMA_VERSION
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["latest", "step-10.json", "step-10.safetensors"]
    assert (tmp_path / "latest").read_text() == "step-10\n"


def test_corrupt_tensors_are_detected_by_sha256(tmp_path):
    _save(tmp_path)
    path = tmp_path / "step-10.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupt: its sha256 does not match"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "latest").unlink(), "no checkpoint in"),
        (lambda d: (d / "step-10.json").write_text("{not json"), "is corrupt"),
        (lambda d: (d / "step-10.safetensors").unlink(), "is missing step-10.safetensors"),
        (lambda d: (d / "latest").write_text("../../etc\n"), "is corrupt"),
        (
            lambda d: (d / "step-10.json").write_text(json.dumps({"schema_version": 99})),
            "has schema version 99",
        ),
    ],
)
def test_damaged_checkpoints_raise_a_clear_error(tmp_path, damage, message):
    _save(tmp_path)
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(tmp_path)


def test_wrong_algorithm_and_wrong_shape(tmp_path):
    arrays = _save(tmp_path, algo="sarsa")
    with pytest.raises(CheckpointError, match="written by 'sarsa', not 'q-learning'"):
        checkpoint.load(tmp_path, algo="q-learning")
    with pytest.raises(CheckpointError, match=r"'q' has shape \(2, 3\), expected \(500, 6\)"):
        checkpoint.expect_array(arrays, "q", (500, 6), "checkpoint")
    with pytest.raises(CheckpointError, match="has no tensor 'w'"):
        checkpoint.expect_array(arrays, "w", (1,), "checkpoint")


def test_prune_keeps_the_newest(tmp_path):
    for step in (10, 20, 30, 40):
        _save(tmp_path, step=step)
    checkpoint.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["step-30.json", "step-40.json"]
    assert checkpoint.load(tmp_path)[1]["step"] == 40


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "file.txt"
    checkpoint.atomic_write_text(target, "old")

    def broken_replace(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_progress_bar_shows_the_return_else_a_headline_metric():
    from bellman.run import _headline

    assert _headline({"episode_return_mean": 12.5, "loss": 0.3}) == ("return", 12.5)
    nan = float("nan")
    assert _headline({"episode_return_mean": nan, "loss": 0.3, "held_out_perplexity": 80.0}) == (
        "held_out_perplexity", 80.0,
    )  # fmt: skip
    assert _headline({"episode_return_mean": nan, "reward": -0.1, "loss": 0.3}) == ("reward", -0.1)
    label, value = _headline({"episode_return_mean": nan})
    assert label == "return" and value != value
