"""Exact planning: value iteration on P reproduces the lectures' tables and known optima."""

from __future__ import annotations

import numpy as np
import pytest

from bellman.envs import make_env
from bellman.errors import ConfigError
from bellman.evaluation import evaluate
from bellman.tabular.planning import greedy_policy, tabular_model, value_iteration


def test_recycling_reproduces_the_lecture_table():
    model = tabular_model(make_env("bellman/Recycling-v0"))
    q = value_iteration(model, gamma=0.9)
    assert model.state_names == ["S1", "S2", "S3", "S4", "S5"]
    assert model.action_names == ["left", "right"]
    expected = [[0, 0], [2, 9], [8.1, 10], [9, 10], [0, 0]]
    np.testing.assert_allclose(q, expected, atol=1e-12)


def test_backup_is_one_bellman_step_worked_by_hand():
    model = tabular_model(make_env("bellman/Recycling-v0"))
    q = np.zeros((5, 2))
    q[2] = [1.0, 4.0]  # V(S3) = 4
    backed_up = model.backup(q, gamma=0.5)
    # S2-right: reward 0 + 0.5 * V(S3) = 2; S4-left: 0 + 0.5 * 4 = 2; S4-right: +10 (terminal)
    assert backed_up[1, 1] == 2.0 and backed_up[3, 0] == 2.0 and backed_up[3, 1] == 10.0
    assert model.bellman_residual(q, gamma=0.5) == 10.0


def test_cliff_walking_optimum_is_the_13_step_edge_path():
    env = make_env("CliffWalking-v1")
    q = value_iteration(tabular_model(env), gamma=1.0)
    assert q.max(axis=1)[36] == pytest.approx(-13.0)
    policy = greedy_policy(q)
    assert evaluate(lambda s: int(policy[s]), env, episodes=1, seed=0)["mean"] == -13.0


def test_frozen_lake_value_matches_monte_carlo():
    env = make_env("FrozenLake-v1", max_episode_steps=5000)  # the optimum is patient
    q = value_iteration(tabular_model(env), gamma=1.0)
    policy = greedy_policy(q)
    success = evaluate(lambda s: int(policy[s]), env, episodes=2000, seed=0)["mean"]
    assert q.max(axis=1)[0] == pytest.approx(0.8235, abs=1e-3)  # a known slippery 4x4 result
    assert success == pytest.approx(q.max(axis=1)[0], abs=0.03)


def test_taxi_optimal_policy_is_consistent_with_v_star():
    env = make_env("Taxi-v4")
    q = value_iteration(tabular_model(env), gamma=1.0)
    policy = greedy_policy(q)
    # Undiscounted and deterministic: V*(start) is exactly the episode's return.
    for seed in range(20):
        start, _ = env.reset(seed=seed)
        result = evaluate(lambda s: int(policy[s]), env, episodes=1, seed=seed)
        assert result["mean"] == pytest.approx(q[start].max())


def test_planning_errors():
    with pytest.raises(ConfigError, match="has no transition table P"):
        tabular_model(make_env("CartPole-v1"))
    model = tabular_model(make_env("bellman/Corridor-v0"))
    with pytest.raises(ConfigError, match=r"gamma must be in \[0, 1\], got 1.5"):
        value_iteration(model, gamma=1.5)
