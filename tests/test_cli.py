"""The user-facing paths of the `bellman` command, through real subprocesses."""

from __future__ import annotations

import csv
import json
import signal
import time
import tomllib

import numpy as np
import pytest
from safetensors.numpy import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bellman.errors import ConfigError
from bellman.run import TIMING_COLUMNS
from tests import forked
from tests.conftest import run_here


def test_plan_json_reproduces_the_recycling_lecture_table(bellman):
    result = bellman("plan", "bellman/Recycling-v0", "--gamma", "0.9", "--format", "json")
    assert result.returncode == 0, result
    table = json.loads(result.stdout)
    assert table["states"] == ["S1", "S2", "S3", "S4", "S5"]
    assert table["actions"] == ["left", "right"]
    assert table["q"] == [[0, 0], [2, 9], [8.1, 10], [9, 10], [0, 0]]


def test_plan_table_shows_values_and_the_greedy_policy(bellman):
    result = bellman("plan", "bellman/Recycling-v0", "--gamma", "0.9")
    assert result.returncode == 0, result
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert rows["S3"] == ["8.1", "10", "10", "right"]
    assert rows["S1"][-1] == "terminal"


def test_envs_and_algos_list_what_exists(bellman):
    envs = bellman("envs")
    assert envs.returncode == 0, envs
    for env_id in ("bellman/Recycling-v0", "bellman/MineField-v0", "Taxi-v4", "CartPole-v1"):
        assert env_id in envs.stdout
    rows = {line.split()[0]: line for line in envs.stdout.splitlines()[1:] if line.strip()}
    for game in ("tictactoe", "connect4", "go9"):  # what `train alphazero --env` takes
        assert "board game" in rows.get(game, ""), envs.stdout
    algos = bellman("algos")
    assert "q-learning" in algos.stdout and "sarsa" in algos.stdout
    names = [line.split("  ")[0] for line in algos.stdout.splitlines()[1:-1]]
    for step in ("pretrain", "sft", "reward", "ppo", "dpo"):  # `bellman lm STEP`
        assert f"lm {step}" in names, algos
    from bellman.api import ALGORITHMS

    assert [name for name in names if name.strip()] == list(ALGORITHMS)  # the one registry
    lm_fields = bellman("algos", "lm", "ppo")
    assert lm_fields.returncode == 0, lm_fields
    assert lm_fields.stdout.startswith("lm ppo: RLHF") and "kl_coef" in lm_fields.stdout
    assert "vocab_size" in bellman("algos", "lm-pretrain").stdout
    fields = bellman("algos", "q-learning")
    assert fields.returncode == 0, fields
    assert "epsilon_schedule" in fields.stdout and "(0, 1]" in fields.stdout
    assert "Learning rate alpha" in fields.stdout


def _train(bellman, run_dir, *extra, steps=4000):
    return bellman(
        "train", "q-learning", "--env", "bellman/MineField-v0", "--steps", str(steps),
        "--set", "log_every=500", "--set", "checkpoint_every=1000", "--run-dir", run_dir, *extra,
    )  # fmt: skip


def test_train_writes_a_full_run_directory_then_eval_and_plot(bellman, tmp_path):
    result = _train(bellman, "run", "--seed", "4")
    assert result.returncode == 0, result
    run = tmp_path / "run"
    assert "run directory: run" in result.stdout
    assert "steps/s" in result.stderr and "return" in result.stderr  # the progress bar
    config = tomllib.loads((run / "config.toml").read_text())
    assert config["algo"] == "q-learning" and config["env"] == "bellman/MineField-v0"
    assert config["seed"] == 4 and config["steps"] == 4000 and config["gamma"] == 0.99
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(500, 4001, 500))
    for column in ("episode_return_mean", "epsilon", "alpha", "bellman_residual", "wall_time"):
        assert column in rows[0]
    with open(run / "episodes.csv") as handle:
        episodes = list(csv.DictReader(handle))
    assert int(episodes[-1]["episode"]) == len(episodes) > 10
    assert (run / "plot.png").read_bytes()[:4] == b"\x89PNG"
    # Checkpoints are taken at the first episode end after every 1000 steps and at the end;
    # keep_checkpoints = 3 leaves the newest three.
    names = sorted(p.name for p in (run / "checkpoints").glob("step-*.json"))
    assert len(names) == 3 and names[-1] == "step-4000.json"
    assert (run / "checkpoints" / "latest").read_text() == "step-4000\n"
    events = EventAccumulator(str(run))
    events.Reload()
    assert len(events.Scalars("episode_return_mean")) == len(rows)
    assert len(events.Scalars("episode/return")) == len(episodes)

    evaluation = bellman("eval", "run", "--episodes", "20", "--seed", "7")
    assert evaluation.returncode == 0, evaluation
    report = json.loads((run / "eval.json").read_text())
    assert {"mean", "std", "min", "max", "episodes", "seed"} <= set(report)
    assert report["episodes"] == 20 and report["seed"] == 7
    assert report["min"] <= report["mean"] <= report["max"]

    assert _train(bellman, "other", "--seed", "5", "--quiet").returncode == 0
    plot = bellman("plot", "run", "other", "--out", "both.png")
    assert plot.returncode == 0, plot
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"


def _popen(tmp_path, *args):
    return forked.start(args, tmp_path)


def _wait_for_checkpoint(run_dir, not_named=None, timeout=120):
    latest = run_dir / "checkpoints" / "latest"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if latest.exists() and latest.read_text().strip() not in ("", not_named):
            return latest.read_text().strip()
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def _final_state(run_dir):
    arrays = load_file(run_dir / "checkpoints" / f"step-{TAXI_STEPS}.safetensors")
    with open(run_dir / "metrics.csv") as handle:
        metrics = [
            {k: v for k, v in row.items() if k not in TIMING_COLUMNS}
            for row in csv.DictReader(handle)
        ]
    return arrays, metrics, (run_dir / "episodes.csv").read_text()


TAXI_STEPS = 48000
TAXI = ("train", "q-learning", "--env", "Taxi-v4", "--steps", str(TAXI_STEPS), "--seed", "3",
        "--set", "log_every=1000", "--set", "checkpoint_every=8000", "--quiet")  # fmt: skip


def test_interrupted_runs_resume_bit_for_bit(tmp_path):
    one_go = run_here([*TAXI, "--run-dir", "one-go"], tmp_path)
    assert one_go.returncode == 0, one_go
    expected = _final_state(tmp_path / "one-go")

    # Ctrl-C: saves at the next safe point, exits 130 and says how to resume.
    process = _popen(tmp_path, *TAXI, "--run-dir", "sigint")
    _wait_for_checkpoint(tmp_path / "sigint")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Resume with: bellman train --resume sigint" in stderr
    stopped_at = json.loads(
        (
            tmp_path / "sigint/checkpoints" / f"{_wait_for_checkpoint(tmp_path / 'sigint')}.json"
        ).read_text()
    )["step"]
    assert 8000 <= stopped_at < TAXI_STEPS

    # A hard kill after the second checkpoint: rows written after it must not be duplicated.
    process = _popen(tmp_path, *TAXI, "--run-dir", "killed")
    first = _wait_for_checkpoint(tmp_path / "killed")
    _wait_for_checkpoint(tmp_path / "killed", not_named=first)
    process.kill()
    process.communicate(timeout=60)

    for name in ("sigint", "killed"):
        resumed = run_here(["train", "--resume", name, "--quiet"], tmp_path)
        assert resumed.returncode == 0, resumed
        arrays, metrics, episodes = _final_state(tmp_path / name)
        for key in ("q", "visit_counts"):
            np.testing.assert_array_equal(arrays[key], expected[0][key])
        assert metrics == expected[1]
        assert episodes == expected[2]


def test_every_registry_entry_satisfies_its_protocol():
    """The one registry: each `bellman train` algorithm's module has every member of
    `AlgorithmModule`, each lm step's every member of `LMStepModule`; a module that lacks one
    is refused when it loads, naming what is missing."""
    from bellman import api

    assert {spec.is_lm_step for spec in api.ALGORITHMS.values()} == {True, False}
    for spec in api.ALGORITHMS.values():
        module = spec.load()
        assert module.Config is spec.config_class
        if spec.is_lm_step:
            assert module.ALGO == spec.name.replace(" ", "-")
    broken = api.Algorithm("broken", "bellman.schedules", "a module that is no algorithm")
    with pytest.raises(TypeError, match="AlgorithmModule.*make_train_env"):
        broken.load()
    assert api.lm_step("lm-ppo") is api.lm_step("lm ppo") is api.lookup("lm  ppo")
    with pytest.raises(ConfigError, match="`bellman lm ppo`"):
        api.algorithm("lm-ppo")
