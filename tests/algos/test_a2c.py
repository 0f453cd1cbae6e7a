"""A2C: n-step returns and the loss against hand-computed values, learning on CartPole, Box
actions, exact resume and bad input."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

import bellman
from bellman.algos.a2c import A2CConfig, actor_critic_loss
from bellman.algos.onpolicy import Rollout, estimate_advantages
from tests.algos.test_ppo import UNBOUNDED_CLI
from tests.conftest import (
    CliResult,
    assert_killed_run_resumes_exactly,
    assert_user_error,
    bad_train_input_tests,
)

torch.set_num_threads(1)


def test_lambda_one_gives_the_papers_n_step_returns():
    # One actor, t_max = 3, gamma = 0.5, V(s_0..s_2) = [1, 2, 3], bootstrap V(s_3) = 2.
    values = torch.tensor([[1.0], [2.0], [3.0]])
    flags = torch.zeros(3, 1, dtype=torch.bool)
    rollout = Rollout(obs=values, actions=values, log_probs=values, values=values,
                      rewards=torch.ones(3, 1), terminated=flags.clone(), truncated=flags.clone(),
                      final_values=torch.zeros(3, 1))  # fmt: skip
    advantages, returns = estimate_advantages(rollout, torch.tensor([2.0]), gamma=0.5, lam=1.0)
    # R <- r_i + gamma R from R = V(s_3): q_2 = 1 + 0.5 * 2 = 2, q_1 = 1 + 0.5 * 2 = 2,
    # q_0 = 1 + 0.5 * 2 = 2.
    assert returns[:, 0].tolist() == pytest.approx([2.0, 2.0, 2.0])
    assert advantages[:, 0].tolist() == pytest.approx([1.0, 0.0, -1.0])
    # The episode terminates after step 1: R = 0 there, and step 2 starts a new return.
    rollout.terminated[1, 0] = True
    rollout.rewards[:, 0] = torch.tensor([1.0, 4.0, 1.0])
    _, returns = estimate_advantages(rollout, torch.tensor([2.0]), gamma=0.5, lam=1.0)
    assert returns[:, 0].tolist() == pytest.approx([1 + 0.5 * 4, 4.0, 1 + 0.5 * 2])


def test_actor_critic_loss_worked_by_hand():
    config = A2CConfig(env="CartPole-v1", ent_coef=0.1, vf_coef=0.5)
    log_probs = torch.tensor([-1.0, -2.0])
    entropy = torch.tensor([0.5, 0.7])
    values, returns = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0])
    advantages = returns - values  # [2, 1]
    loss, policy, critic, mean_entropy = actor_critic_loss(
        log_probs, entropy, values, advantages, returns, config
    )
    assert float(policy) == pytest.approx(-(-1.0 * 2 + -2.0 * 1) / 2)  # 2.0
    assert float(critic) == pytest.approx(0.5 * (4 + 1) / 2)  # 1.25
    assert float(mean_entropy) == pytest.approx(0.6)
    assert float(loss) == pytest.approx(2.0 - 0.1 * 0.6 + 0.5 * 1.25)


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_a2c_solves_cartpole(tmp_path):
    # RL Zoo's settings (the shipped tuned file: 8 actors x 5 steps, RMSProp 7e-4); the run stops
    # at the first evaluation >= 475 and the saved policy must hold it on 20 unseen episodes.
    run = bellman.train("a2c", "CartPole-v1", overrides=["seed=1", "stop_when_solved=true"],
                        run_dir=tmp_path / "run", quiet=True)  # fmt: skip
    rows = _metrics(run.dir)
    assert int(rows[-1]["step"]) <= 60_000
    assert float(rows[-1]["eval_return_mean"]) >= 475
    unseen = bellman.evaluate_run(run.dir, episodes=20, seed=100)
    assert unseen["mean"] >= 475, unseen


@pytest.mark.parametrize(
    ("env_id", "switches"),
    [
        ("Pendulum-v1", ["optimizer=adam", "normalize_observations=true", "gae_lambda=0.95"]),
        ("CartPole-v1", ["shared_trunk=true", "normalize_advantages=true", "anneal=true"]),
    ],
)
def test_switches_train_and_log(tmp_path, env_id, switches):
    run = bellman.train("a2c", env_id, overrides=["steps=2000", "n_envs=4", "log_every=400",
                                                  "eval_every=1000", *switches],
                        run_dir=tmp_path / "run", quiet=True)  # fmt: skip
    rows = _metrics(run.dir)
    # log_every 400, and a row at every evaluation (1000, 2000)
    assert [int(row["step"]) for row in rows] == [400, 800, 1000, 1200, 1600, 2000]
    assert int(rows[-1]["iterations"]) == 2000 // (4 * 5)
    for column in ("policy_loss", "value_loss", "entropy", "explained_variance", "learning_rate"):
        assert column in rows[0]
    if "anneal=true" in switches:
        assert float(rows[-1]["learning_rate"]) < float(rows[0]["learning_rate"])


RESUMABLE = ["train", "a2c", "--env", "Pendulum-v1", "--steps", "6000", "--seed", "2",
             "--set", "n_envs=4", "--set", "hidden_size=16", "--set", "anneal=true",
             "--set", "normalize_observations=true", "--set", "normalize_rewards=true",
             "--set", "checkpoint_every=1000", "--set", "log_every=500", "--quiet"]  # fmt: skip


def test_a_killed_run_resumes_bit_for_bit(tmp_path):
    arrays = assert_killed_run_resumes_exactly(tmp_path, RESUMABLE, steps=6000)
    assert {"normalize/obs_mean", "optim/0/square_avg"} <= set(arrays)


def test_infinite_action_bounds_are_one_error_line(tmp_path):
    script = tmp_path / "unbounded_cli.py"
    script.write_text(UNBOUNDED_CLI)
    completed = subprocess.run(
        [sys.executable, "-W", "ignore", str(script), "train", "a2c",
         "--env", "UnboundedPendulum-v0", "--run-dir", "run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert_user_error(CliResult(completed), "UnboundedPendulum-v0", "infinite bounds")
    assert not (tmp_path / "run").exists()


#: (args, fragments): bad `bellman train a2c` input and what its one error line must name.
BAD_INPUT = [
    (["--env", "CartPole-v1", "--set", "gae_lambda=-0.1"], ["'gae_lambda'", "[0, 1]"]),
    (["--env", "CartPole-v1", "--set", "n_steps=0"], ["'n_steps'", "[1, inf)"]),
    (["--env", "CartPole-v1", "--set", "optimizer=sgd"], ["'optimizer'", "rmsprop, adam"]),
    (["--env", "CartPole-v1", "--set", "ent_coef=-1"], ["'ent_coef'", "[0, inf)"]),
    (["--env", "FrozenLake-v1", "--set", "normalize_observations=true"],
     ["normalize_observations", "Discrete(16)"]),
]  # fmt: skip


bad_input, test_bad_a2c_input_is_one_error_line = bad_train_input_tests("a2c", BAD_INPUT)
