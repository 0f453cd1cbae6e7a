"""AlphaZero against bad numbers and bad files: a diverging run stops with one error line and
never saves a non-finite tensor; a crafted checkpoint is refused before training resumes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import api, checkpoint
from bellman.errors import CheckpointError, NonFiniteError
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
        learner.checkpoint()


# ---- crafted checkpoints: refused before anything trains or is written ------------------------
def _craft_optim_tiny(arrays):
    for key in [k for k in arrays if k.startswith("optim/")]:
        arrays[key] = np.zeros(1, arrays[key].dtype)  # tiny moments: the fused kernel's memory


def _craft(key_of, change):
    def craft(arrays):
        key = key_of(arrays)
        arrays[key] = change(arrays[key])

    return craft


def _bn_weight(arrays):
    return "net/stem.1.weight"  # (32,) with channels = 32


def _optim_of_bn_weight(arrays):
    return next(k for k, v in arrays.items() if k.endswith("/exp_avg") and v.shape == (32,))


CRAFTS = {
    "optim arrays replaced by tiny ones": _craft_optim_tiny,
    "a (31,) tensor for a (32,) parameter": _craft(_bn_weight, lambda v: v[:31]),
    "a (31,) Adam moment for a (32,) parameter": _craft(_optim_of_bn_weight, lambda v: v[:31]),
    "a (31,) BatchNorm variance in best/": _craft(
        lambda a: "best/stem.1.running_var", lambda v: v[:31]
    ),
    "a float16 re-save of a float32 weight": _craft(
        lambda a: "net/stem.0.weight", lambda v: v.astype(np.float16)
    ),
    "a float16 re-save of the replay planes": _craft(
        lambda a: "replay/planes", lambda v: v.astype(np.float16)
    ),
    "an int8 re-save of a float32 BatchNorm mean": _craft(
        lambda a: "net/stem.1.running_mean", lambda v: v.astype(np.int8)
    ),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("crafted") / "run"
    api.train("alphazero", "tictactoe", overrides=[*TINY, "steps=20", "channels=32"],
              run_dir=run_dir, quiet=True)  # fmt: skip
    return run_dir


def _drop(key):
    def craft(arrays):
        del arrays[key]

    return craft


def _state(**changes):
    def craft(meta):
        meta["state"].update(changes)

    return craft


CRAFTS.update({
    "no torch_rng": _drop("torch_rng"),
    "a uint8 torch_rng cut short": _craft(lambda a: "torch_rng", lambda v: v[:100]),
    "no replay outcomes": _drop("replay/outcomes"),
})  # fmt: skip

STATE_CRAFTS = {
    "games that are text": _state(games="abc"),
    "a negative update count": _state(updates=-1),
    "a replay window larger than its capacity": _state(replay_size=10**9),
    "a replay position past the window": _state(replay_size=2000, replay_position=2000),
    "an Elo rating that is text": _state(elo={"random": 0.0, "net-1": "high"}),
    "an Elo table without its anchor": _state(elo={"net-1": 3.0}),
    "a numpy generator state that is junk": _state(numpy_rng={"bit_generator": "PCG64"}),
    "no python_rng": lambda meta: meta["state"].pop("python_rng"),
}


def _rewrite_checkpoint(run_dir: Path, craft, craft_meta=None) -> None:
    """Apply `craft` to the latest checkpoint's arrays (and `craft_meta` to its JSON) and update
    the JSON's sha256 to match."""
    import hashlib
    import json

    from safetensors.numpy import load_file, save_file

    directory = run_dir / "checkpoints"
    name = checkpoint.latest_name(directory)
    tensors = directory / f"{name}.safetensors"
    arrays = load_file(tensors)
    craft(arrays)
    save_file({k: np.ascontiguousarray(v).reshape(v.shape) for k, v in arrays.items()}, tensors)
    meta_path = directory / f"{name}.json"
    meta = json.loads(meta_path.read_text())
    if craft_meta is not None:
        craft_meta(meta)
    meta["sha256"] = hashlib.sha256(tensors.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))


def _crafted_copy(tmp_path: Path, finished_run: Path, case: str) -> Path:
    """A copy of the finished run whose latest checkpoint is crafted as `case` says."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    if case in CRAFTS:
        _rewrite_checkpoint(run_dir, CRAFTS[case])
    else:
        _rewrite_checkpoint(run_dir, lambda arrays: None, STATE_CRAFTS[case])
    return run_dir


def _files(run_dir: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", [*CRAFTS, *STATE_CRAFTS])
def test_crafted_checkpoint_is_refused_and_the_run_left_as_it_was(
    tmp_path: Path, finished_run: Path, case: str
):
    run_dir = _crafted_copy(tmp_path, finished_run, case)
    files = _files(run_dir)
    with pytest.raises(CheckpointError):
        api.resume(run_dir, steps=40, quiet=True)
    assert _files(run_dir) == files  # metrics.csv, config.toml, checkpoints: all unchanged


@pytest.mark.parametrize(
    "case", ["optim arrays replaced by tiny ones", "a float16 re-save of a float32 weight"]
)
def test_crafted_checkpoint_through_the_cli(bellman, tmp_path: Path, finished_run: Path, case):
    run_dir = _crafted_copy(tmp_path, finished_run, case)
    files = _files(run_dir)
    result = bellman("train", "--resume", run_dir, "--steps", "40", "--quiet")
    assert_user_error(result)
    assert _files(run_dir) == files


def test_sgd_run_resumes_exactly(tmp_path: Path):
    # SGD with momentum is AlphaZero's default optimizer (the papers'): its momentum buffers
    # must be checked and restored like Adam's moments
    settings = [*TINY, "optimizer=sgd", "learning_rate=0.01"]
    one_go = api.train("alphazero", "tictactoe", overrides=[*settings, "steps=40"],
                       run_dir=tmp_path / "a", quiet=True)  # fmt: skip
    api.train("alphazero", "tictactoe", overrides=[*settings, "steps=20"],
              run_dir=tmp_path / "b", quiet=True)  # fmt: skip
    resumed = api.resume(tmp_path / "b", steps=40, quiet=True)
    expected, _ = checkpoint.load(one_go.dir / "checkpoints")
    final, _ = checkpoint.load(resumed.dir / "checkpoints")
    assert any(key.endswith("/momentum_buffer") for key in final)
    assert set(final) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(final[key], value, err_msg=key)
