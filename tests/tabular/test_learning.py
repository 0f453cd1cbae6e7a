"""Seeded learning tests: thresholds a broken Q-learning or SARSA cannot reach."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from bellman import api, checkpoint
from bellman.envs import make_env
from bellman.evaluation import evaluate
from bellman.tabular.planning import greedy_policy, tabular_model, value_iteration


def _train(tmp_path, algo, env_id, *overrides):
    run = api.train(algo, env_id, overrides=list(overrides), run_dir=tmp_path / algo, quiet=True)
    return checkpoint.load(run.dir / "checkpoints")[0]["q"], run


def _greedy(q):
    return lambda s: int(np.argmax(q[int(s)]))


def test_exploration_trap_greedy_settles_on_1_epsilon_greedy_finds_1000(tmp_path):
    no_exploration = ("epsilon=0", "epsilon_end=0", "epsilon_schedule=constant", "steps=300")
    trap = "bellman/ExplorationTrap-v0"
    q, run = _train(tmp_path / "greedy", "q-learning", trap, *no_exploration)
    with open(run.dir / "episodes.csv") as handle:
        returns = {float(row["return"]) for row in csv.DictReader(handle)}
    assert returns == {1.0}  # every one of the 300 episodes took the near door
    assert int(np.argmax(q[0])) == 0 and q[0, 2] == 0.0  # the far door was never tried

    exploring = ("epsilon=0.1", "epsilon_schedule=constant", "steps=300")
    q, _ = _train(tmp_path / "explore", "q-learning", trap, *exploring)
    assert int(np.argmax(q[0])) == 2
    env = make_env("bellman/ExplorationTrap-v0")
    assert evaluate(_greedy(q), env, episodes=10, seed=0)["mean"] == 1000.0


def test_q_learning_recovers_the_recycling_table_despite_the_time_limit(tmp_path):
    # The garbage collector truncates episodes after 3 moves; truncation must bootstrap, or
    # Q(S3, left) and Q(S4, left) would not reach the lecture's 8.1 and 9.
    q, _ = _train(
        tmp_path, "q-learning", "bellman/Recycling-v0",
        "gamma=0.9", "steps=20000", "epsilon_end=0.3", "alpha_schedule=linear", "alpha_end=0.01",
    )  # fmt: skip
    np.testing.assert_allclose(q, [[0, 0], [2, 9], [8.1, 10], [9, 10], [0, 0]], atol=0.05)


@pytest.fixture(scope="module")
def taxi_optimum():
    """Q* of Taxi-v4 at gamma 0.99 and the states its greedy policy visits from seeds 0..999."""
    env = make_env("Taxi-v4")
    q_star = value_iteration(tabular_model(env), gamma=0.99)
    policy, visited = greedy_policy(q_star), set()

    def optimal(s):
        visited.add(int(s))
        return int(policy[s])

    result = evaluate(optimal, env, episodes=1000, seed=0)
    return q_star, result["mean"], sorted(visited)


def test_q_learning_on_taxi_matches_the_planned_optimum(tmp_path, taxi_optimum):
    q_star, optimal_mean, visited = taxi_optimum
    q, run = _train(tmp_path, "q-learning", "Taxi-v4", "seed=0")  # tuned config, 300k steps
    assert run.config.steps == 300_000
    learned_mean = evaluate(_greedy(q), make_env("Taxi-v4"), episodes=1000, seed=0)["mean"]
    assert optimal_mean > 7.5  # sanity: the optimum from those 1000 starts
    assert abs(learned_mean - optimal_mean) <= 0.05
    value_error = np.abs(q.max(axis=1) - q_star.max(axis=1))[visited]
    assert len(visited) > 300 and value_error.max() < 0.5


def test_sarsa_on_taxi_is_near_optimal(tmp_path, taxi_optimum):
    _, optimal_mean, _ = taxi_optimum
    q, _ = _train(tmp_path, "sarsa", "Taxi-v4", "seed=0")
    learned_mean = evaluate(_greedy(q), make_env("Taxi-v4"), episodes=1000, seed=0)["mean"]
    assert learned_mean > optimal_mean - 0.5  # a random policy scores about -770
