"""Tests for the lectures' finite MDPs: table shape, known values, stepping, validation."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from bellman.envs.lectures import (
    CorridorEnv,
    ExplorationTrapEnv,
    FiniteMDPEnv,
    MineFieldEnv,
    RecyclingEnv,
)

ENVS = [RecyclingEnv, CorridorEnv, MineFieldEnv, ExplorationTrapEnv]


def value_iteration(env: FiniteMDPEnv, gamma: float, sweeps: int = 1000) -> np.ndarray:
    """Q* of env.P by plain value iteration: Q(s,a) = sum p (r + gamma (1 - done) max Q(s'))."""
    n_s, n_a = env.observation_space.n, env.action_space.n
    q = np.zeros((n_s, n_a))
    for _ in range(sweeps):
        v = q.max(axis=1)
        new = np.array(
            [
                [
                    sum(p * (r + gamma * (not d) * v[s2]) for p, s2, r, d in env.P[s][a])
                    for a in range(n_a)
                ]
                for s in range(n_s)
            ]
        )
        if np.max(np.abs(new - q)) < 1e-10:
            return new
        q = new
    return q


@pytest.mark.parametrize("make", ENVS)
def test_table_is_well_formed(make):
    env = make()
    n_s, n_a = env.observation_space.n, env.action_space.n
    assert len(env.state_names) == n_s and len(env.action_names) == n_a
    assert sorted(env.P) == list(range(n_s))
    for s in range(n_s):
        assert sorted(env.P[s]) == list(range(n_a))
        for a in range(n_a):
            assert sum(p for p, *_ in env.P[s][a]) == pytest.approx(1.0)
            for p, s2, r, d in env.P[s][a]:
                assert p > 0 and 0 <= s2 < n_s
                assert isinstance(s2, int) and isinstance(r, float) and isinstance(d, bool)
                if s in env.terminal_states:
                    assert (p, s2, r, d) == (1.0, s, 0.0, True)
    assert env.initial_state not in env.terminal_states


@pytest.mark.parametrize("make", ENVS)
def test_env_checker_passes(make):
    check_env(make(), skip_render_check=True)


@pytest.mark.parametrize("make", ENVS)
def test_steps_follow_the_table(make):
    env = make()
    rng = np.random.default_rng(1)
    s, info = env.reset(seed=3)
    assert s == env.initial_state and info == {"prob": 1.0}
    for _ in range(300):
        a = int(rng.integers(env.action_space.n))
        s2, r, terminated, truncated, info = env.step(a)
        assert type(s2) is int and type(r) is float and type(terminated) is bool
        assert truncated is False
        assert (info["prob"], s2, r, terminated) in env.P[s][a]
        assert info["prob"] > 0
        s = env.reset()[0] if terminated else s2


@pytest.mark.parametrize("make", ENVS)
def test_seeded_reset_is_reproducible(make):
    def episode(seed):
        env = make()
        env.reset(seed=seed)
        actions = np.random.default_rng(seed).integers(env.action_space.n, size=50)
        return [env.step(int(a))[:3] for a in actions]

    assert episode(7) == episode(7)


@pytest.mark.parametrize("bad", [-1, 2, 1.0, "left", None])
def test_invalid_action_raises(bad):
    env = RecyclingEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"invalid action .*0\.\.1"):
        env.step(bad)


def test_recycling_q_values_at_gamma_0_9():
    env = RecyclingEnv()
    q = value_iteration(env, gamma=0.9)
    assert env.state_names == ["S1", "S2", "S3", "S4", "S5"]
    assert env.action_names == ["left", "right"]
    np.testing.assert_allclose(q[1:4], [[2.0, 9.0], [8.1, 10.0], [9.0, 10.0]])
    np.testing.assert_allclose(q[[0, 4]], 0.0)


def test_recycling_right_right_right():
    env = RecyclingEnv(render_mode="ansi")
    assert env.reset(seed=0)[0] == 1
    assert env.render().startswith("S1 [S2] S3 S4 S5")
    steps = [env.step(1) for _ in range(3)]
    assert [st[1] for st in steps] == [0.0, 1.0, 10.0]
    assert [st[2] for st in steps] == [False, False, True]
    assert env.state_names[steps[-1][0]] == "S5"


def test_recycling_left_enters_garbage_can():
    env = RecyclingEnv()
    env.reset(seed=0)
    assert env.step(0) == (0, 2.0, True, False, {"prob": 1.0})


def test_corridor_reaches_treasure_and_stays_at_left_wall():
    env = CorridorEnv(n_states=4)
    assert env.observation_space.n == 4
    env.reset(seed=0)
    assert env.step(0)[:3] == (0, 0.0, False)
    assert [env.step(1)[:3] for _ in range(3)] == [(1, 0.0, False), (2, 0.0, False), (3, 1.0, True)]
    assert CorridorEnv().observation_space.n == 6


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True, "6"])
def test_corridor_validates_n_states(bad):
    with pytest.raises(ValueError, match="n_states"):
        CorridorEnv(n_states=bad)


def test_minefield_optimal_policy_reaches_goal_without_mines():
    env = MineFieldEnv()
    q = value_iteration(env, gamma=0.99)
    s, _ = env.reset(seed=0)
    rewards = []
    for _ in range(50):
        s, r, terminated, _, _ = env.step(int(np.argmax(q[s])))
        rewards.append(r)
        if terminated:
            break
    row, col, _ = env.decode(s)
    assert env.layout[row][col] == "G"
    assert rewards[-1] == MineFieldEnv.GOAL_REWARD
    assert MineFieldEnv.MINE_REWARD not in rewards


def test_minefield_random_walk_often_hits_a_mine():
    env = MineFieldEnv()
    rng = np.random.default_rng(0)
    mines = 0
    for episode in range(200):
        env.reset(seed=episode)
        for _ in range(100):
            _, r, terminated, _, _ = env.step(int(rng.integers(4)))
            if terminated:
                mines += r == MineFieldEnv.MINE_REWARD
                break
    assert mines >= 100


def test_minefield_power_up_is_consumed():
    env = MineFieldEnv(layout=["RP.", "..G"])
    assert env.observation_space.n == 6 * 2
    s, _ = env.reset(seed=0)
    assert env.decode(s) == (0, 0, 1)
    assert env.state_names[s] == "r0c0+P1"
    s, r, *_ = env.step(1)  # right, onto the power-up: -1 + 1
    assert (env.decode(s), r) == ((0, 1, 0), 0.0)
    s, r, *_ = env.step(3)  # left, back to the start
    assert (env.decode(s), r) == ((0, 0, 0), -1.0)
    s, r, *_ = env.step(1)  # right again: the power-up is gone
    assert (env.decode(s), r) == ((0, 1, 0), -1.0)
    assert env.step(0)[:3] == (s, -1.0, False)  # bump into the top wall


def test_minefield_encode_decode_roundtrip():
    env = MineFieldEnv()
    for s in range(env.observation_space.n):
        assert env.encode(*env.decode(s)) == s


def test_minefield_render_shows_robot_and_taken_power_ups():
    env = MineFieldEnv(layout="RP./..G", render_mode="ansi")
    env.reset(seed=0)
    assert env.render() == "RP.\n..G\n"
    env.step(1)
    assert env.render().splitlines()[0] == ".R."


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (["R..", ".G"], "same non-zero length"),
        (["R.X", "..G"], "unknown characters"),
        (["...", "..G"], "exactly one R"),
        (["R.R", "..G"], "exactly one R"),
        (["R..", "..."], "exactly one G"),
        ([], "non-empty"),
        (["R" + "P" * 9 + "G"], "power-ups"),
    ],
)
def test_minefield_rejects_bad_layouts(layout, message):
    with pytest.raises(ValueError, match=message):
        MineFieldEnv(layout=layout)


def test_exploration_trap_door_rewards():
    env = ExplorationTrapEnv()
    assert env.action_names == ["near door", "empty room", "far door"]
    assert env.state_names[0] == "start"
    for action, expected in enumerate([1.0, 0.0, 1000.0]):
        assert env.reset(seed=0)[0] == 0
        s, r, terminated, truncated, _ = env.step(action)
        assert (r, terminated, truncated) == (expected, True, False)
        assert s in env.terminal_states


def test_exploration_trap_greedy_settles_on_near_door():
    env = ExplorationTrapEnv()
    q = np.zeros(3)
    for _ in range(20):
        env.reset(seed=0)
        a = int(np.argmax(q))
        q[a] += 0.5 * (env.step(a)[1] - q[a])
    assert np.argmax(q) == 0 and q[2] == 0.0


def test_step_before_reset_and_bad_render_mode():
    from gymnasium.error import ResetNeeded

    with pytest.raises(ResetNeeded):
        RecyclingEnv().step(0)
    with pytest.raises(ValueError, match="render_mode"):
        RecyclingEnv(render_mode="human")
