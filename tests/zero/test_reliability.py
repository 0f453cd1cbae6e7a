"""AlphaZero against bad numbers and bad files: a diverging run stops with one error line and
never saves a non-finite tensor; a crafted checkpoint is refused before training resumes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman.errors import NonFiniteError
from bellman.games import make_game
from bellman.zero import alphazero as az
from tests.conftest import assert_user_error

torch.set_num_threads(1)

TINY = [
    "simulations=8", "blocks=1", "channels=8", "value_hidden=8", "batch_size=16",
    "replay_window=2000", "train_steps=3", "games_per_iteration=4", "arena_games=0",
    "optimizer=adam", "learning_rate=0.001", "checkpoint_every=20", "keep_checkpoints=10",
]  # fmt: skip


def _set(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _checkpoints_finite(run_dir: Path) -> list[str]:
    """The names of the run's checkpoints, after asserting every float tensor is finite."""
    directory = run_dir / "checkpoints"
    names = sorted(p.stem for p in directory.glob("step-*.json")) if directory.exists() else []
    for name in names:
        arrays, _ = checkpoint.load(directory, name)
        for key, value in arrays.items():
            if value.dtype.kind == "f":
                assert np.isfinite(value).all(), f"{name}: {key} is not finite"
    return names


@pytest.mark.parametrize("arena", ["0", "2"])
def test_diverging_run_stops_with_one_error_line(bellman, tmp_path: Path, arena: str):
    # learning_rate = 1e9 blows up BatchNorm's running variances (the loss can stay finite)
    settings = [*TINY, "steps=60", "learning_rate=1e9", f"arena_games={arena}", "arena_every=1",
                "arena_simulations=4", "baseline_simulations=8"]  # fmt: skip
    result = bellman("train", "alphazero", "--env", "tictactoe", "--run-dir", "run",
                     "--quiet", *_set(*settings))  # fmt: skip
    assert_user_error(result, "at step")
    assert "nan" in result.stderr or "inf" in result.stderr
    _checkpoints_finite(tmp_path / "run")


def test_divergence_after_a_good_checkpoint_keeps_latest_on_it(tmp_path: Path):
    run_dir = tmp_path / "run"
    api.train("alphazero", "tictactoe", overrides=[*TINY, "steps=20"], run_dir=run_dir,
              quiet=True)  # fmt: skip
    good = checkpoint.latest_name(run_dir / "checkpoints")
    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace("learning_rate = 0.001", "learning_rate = 1e9"))
    with pytest.raises(NonFiniteError, match="at step"):
        api.resume(run_dir, steps=200, quiet=True)
    assert checkpoint.latest_name(run_dir / "checkpoints") == good
    assert _checkpoints_finite(run_dir) == [good]


def test_a_non_finite_loss_stops_at_its_gradient_step():
    config = az.AlphaZeroConfig(env="tictactoe", blocks=1, channels=4, value_hidden=4,
                                batch_size=4, replay_window=8, optimizer="adam")  # fmt: skip
    game = make_game("tictactoe")
    learner = az.AlphaZeroLearner(config, game)
    planes = np.zeros((8, *game.observation_shape), np.float32)
    policies = np.full((8, game.action_size), 1 / game.action_size, np.float32)
    learner.window.add(planes, policies, np.full(8, np.nan, np.float32))  # z = NaN
    learner.step = 123
    with pytest.raises(NonFiniteError, match=r"loss is nan at step 123 \(gradient step 1"):
        learner.train_step()
    learner.network.tower[0].bn1.running_var[0] = math.inf
    with pytest.raises(NonFiniteError, match="'tower.0.bn1.running_var' holds inf at step 123"):
        learner.promote()
    with pytest.raises(NonFiniteError, match="running_var"):
        learner.arrays()
