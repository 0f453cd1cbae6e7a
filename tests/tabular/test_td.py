"""Q-learning and SARSA pieces against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from bellman.tabular.q_learning import q_learning_target
from bellman.tabular.sarsa import sarsa_target
from bellman.tabular.td import epsilon_greedy


def test_q_learning_target_bootstraps_unless_terminal():
    q_next = np.array([1.0, 5.0, -2.0])
    assert q_learning_target(1.0, q_next, 0.9, terminated=False) == pytest.approx(1.0 + 0.9 * 5)
    assert q_learning_target(1.0, q_next, 0.9, terminated=True) == 1.0


def test_one_q_learning_update_worked_by_hand():
    # Recycling, gamma 0.9, alpha 0.5: Q(S3, right) = 0, max_a Q(S4, a) = 10, entering S4 pays +1.
    q_s3_right, target = 0.0, q_learning_target(1.0, np.array([9.0, 10.0]), 0.9, False)
    assert q_s3_right + 0.5 * (target - q_s3_right) == pytest.approx(5.0)


def test_sarsa_target_uses_the_next_action_value():
    assert sarsa_target(-1.0, 4.0, 0.5, terminated=False) == 1.0
    assert sarsa_target(-1.0, 4.0, 0.5, terminated=True) == -1.0


def test_epsilon_greedy_is_greedy_at_zero_with_first_index_ties():
    rng = np.random.default_rng(0)
    assert {epsilon_greedy(np.array([0.0, 3.0, 3.0]), 0.0, rng) for _ in range(100)} == {1}


def test_epsilon_greedy_explores_uniformly_at_one():
    rng = np.random.default_rng(0)
    actions = [epsilon_greedy(np.array([0.0, 9.0, 0.0, 0.0]), 1.0, rng) for _ in range(8000)]
    counts = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(counts, 0.25, atol=0.02)


def test_epsilon_greedy_rate():
    rng = np.random.default_rng(1)
    actions = [epsilon_greedy(np.array([1.0, 0.0]), 0.2, rng) for _ in range(10000)]
    # greedy 80% of the time, and half of the 20% random picks are the greedy action too
    assert np.mean(np.array(actions) == 1) == pytest.approx(0.1, abs=0.01)
