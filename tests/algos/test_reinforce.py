"""REINFORCE: returns against hand-computed values, learning on CartPole, the Pong example,
Box actions, exact resume and bad input."""

from __future__ import annotations

import csv

import numpy as np
import torch

import bellman
from bellman.algos.reinforce import discounted_returns
from tests.conftest import (
    assert_killed_run_resumes_exactly,
    bad_train_input_tests,
)

torch.set_num_threads(1)


def test_discounted_returns_worked_by_hand():
    rewards = np.array([1.0, 0.0, 2.0])
    # G_2 = 2, G_1 = 0 + 0.5 * 2 = 1, G_0 = 1 + 0.5 * 1 = 1.5
    np.testing.assert_allclose(discounted_returns(rewards, 0.5), [1.5, 1.0, 2.0])
    # A time limit cut the episode: v(S_T) = 4 stands for the rest. G_2 = 2 + 0.5 * 4 = 4.
    np.testing.assert_allclose(discounted_returns(rewards, 0.5, bootstrap=4.0), [2.0, 2.0, 4.0])
    # Pong: a point (non-zero reward) ends a game's return; the steps before it see only it.
    pong = np.array([0.0, -1.0, 0.0, 1.0])
    np.testing.assert_allclose(
        discounted_returns(pong, 0.5, reset_on_reward=True), [-0.5, -1.0, 0.5, 1.0]
    )
    np.testing.assert_allclose(discounted_returns(pong, 0.5), [-0.375, -0.75, 0.5, 1.0])


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_reinforce_with_baseline_balances_cartpole(tmp_path):
    # The shipped tuned file; the run stops at the first evaluation >= 475, and the saved policy
    # must then score >= 400 on 20 episodes it has never seen (a random policy scores ~22).
    run = bellman.train("reinforce", "CartPole-v1", overrides=["seed=0", "stop_when_solved=true"],
                        run_dir=tmp_path / "run", quiet=True)  # fmt: skip
    rows = _metrics(run.dir)
    assert int(rows[-1]["step"]) < 100_000
    assert float(rows[-1]["eval_return_mean"]) >= 475
    unseen = bellman.evaluate_run(run.dir, episodes=20, seed=100)
    assert unseen["mean"] >= 400, unseen


def test_without_a_baseline_the_critic_is_not_trained(tmp_path):
    from safetensors.numpy import load_file

    overrides = ["steps=3000", "baseline=false", "batch_episodes=4", "normalize_returns=true"]
    run = bellman.train("reinforce", "CartPole-v1", overrides=overrides, run_dir=tmp_path / "a",
                        quiet=True)  # fmt: skip
    first = load_file(run.dir / "checkpoints" / "step-3000.safetensors")
    other = bellman.train("reinforce", "CartPole-v1", overrides=[*overrides, "steps=1500"],
                          run_dir=tmp_path / "b", quiet=True)  # fmt: skip
    second = load_file(other.dir / "checkpoints" / "step-1500.safetensors")
    # The same initial network (same seed): after more updates the policy moved, v did not.
    np.testing.assert_array_equal(first["policy/value_head.weight"],
                                  second["policy/value_head.weight"])  # fmt: skip
    assert not np.array_equal(first["policy/policy_head.logits.weight"],
                              second["policy/policy_head.logits.weight"])  # fmt: skip


def test_gaussian_policy_on_pendulum_trains(tmp_path):
    run = bellman.train("reinforce", "Pendulum-v1",
                        overrides=["steps=1000", "log_every=200", "batch_episodes=2"],
                        run_dir=tmp_path / "run", quiet=True)  # fmt: skip
    rows = _metrics(run.dir)
    # 200-step episodes, 2 per update: updates at 400 and 800; the run ends inside the third.
    assert [(int(row["step"]), int(row["updates"])) for row in rows] == [
        (400, 1), (800, 2), (1000, 2)
    ]  # fmt: skip
    assert np.isfinite(float(rows[-1]["policy_loss"]))


def test_the_pong_example_runs(bellman_here, tmp_path):
    # `bellman train reinforce --env ALE/Pong-v5` with Karpathy's settings from the shipped
    # file; a short run ends inside its first game and still leaves a loadable checkpoint.
    trained = bellman_here("train", "reinforce", "--env", "ALE/Pong-v5", "--steps", "300",
                           "--run-dir", "pong", "--quiet")  # fmt: skip
    assert trained.returncode == 0, trained
    config = (tmp_path / "pong" / "config.toml").read_text()
    assert 'optimizer = "rmsprop"' in config and "reset_return_on_reward = true" in config
    assert (tmp_path / "pong" / "checkpoints" / "step-300.safetensors").exists()
    evaluated = bellman_here("eval", "pong", "--episodes", "1")
    assert evaluated.returncode == 0, evaluated


RESUMABLE = ["train", "reinforce", "--env", "CartPole-v1", "--steps", "6000", "--seed", "3",
             "--set", "batch_episodes=2", "--set", "hidden_size=16",
             "--set", "checkpoint_every=1000", "--set", "log_every=500", "--set", "eval_every=0",
             "--quiet"]  # fmt: skip


def test_a_killed_run_resumes_bit_for_bit(tmp_path):
    arrays = assert_killed_run_resumes_exactly(tmp_path, RESUMABLE, steps=6000)
    assert "torch_rng" in arrays


#: (args, fragments): bad `bellman train reinforce` input and what its one error line must name.
BAD_INPUT = [
    (["--env", "CartPole-v1", "--set", "batch_episodes=0"], ["'batch_episodes'", "[1, inf)"]),
    (["--env", "CartPole-v1", "--set", "gamma=1.5"], ["'gamma'", "[0, 1]", "1.5"]),
    (["--env", "CartPole-v1", "--set", "optimizer=sgd"], ["'optimizer'", "adam, rmsprop"]),
]  # fmt: skip


bad_input, test_bad_reinforce_input_is_one_error_line = bad_train_input_tests(
    "reinforce", BAD_INPUT
)
