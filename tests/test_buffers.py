"""Replay memory: hand-built episodes, n-step returns, frame stacks, priorities, wrap-around."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bellman.buffers import ReplayMemory, SumTree


def _fill(memory, episodes, n_envs=1):
    """Feed env 0 with episodes given as lists of (reward, terminated-at-end) lengths.

    Observations are the running entry count, so every obs value is unique and checkable.
    """
    counter = 0
    memory.start(np.array([0]), np.array([[counter]], dtype=np.float32))
    for length, terminated in episodes:
        for t in range(length):
            counter += 1
            last = t == length - 1
            memory.add(
                actions=np.array([t % 2]),
                rewards=np.array([float(counter)]),
                terminated=np.array([last and terminated]),
                truncated=np.array([last and not terminated]),
                next_obs=np.array([[counter]], dtype=np.float32),
                reset_obs=np.array([[1000 + counter]], dtype=np.float32),
            )
    return memory


def _all_transitions(memory, n=256):
    batch = memory.sample(n, np.random.default_rng(0))
    return {
        float(o[0]): (float(g), float(d), float(no[0]))
        for o, g, d, no in zip(
            batch.obs, batch.returns, batch.discounts, batch.next_obs, strict=True
        )
    }


def test_one_step_transitions_and_episode_boundaries():
    memory = _fill(ReplayMemory(100, (1,), np.float32, gamma=0.5), [(3, True), (2, False)])
    # Episode 1: obs 0 -> 1 -> 2 -> 3 (terminated). Episode 2 starts from reset obs 1003.
    assert len(memory) == 5
    seen = _all_transitions(memory)
    assert seen[0.0] == (1.0, 0.5, 1.0)  # r = 1, bootstraps from obs 1 with gamma
    assert seen[2.0] == (3.0, 0.0, 3.0)  # terminal: discount 0
    assert seen[1003.0] == (4.0, 0.5, 4.0)
    assert seen[4.0] == (5.0, 0.5, 5.0)  # truncated: still bootstraps from the final obs
    assert 3.0 not in seen and 5.0 not in seen  # final observations start no transition


def test_n_step_returns_worked_by_hand():
    memory = _fill(
        ReplayMemory(100, (1,), np.float32, n_step=3, gamma=0.5), [(4, True), (2, False)]
    )
    seen = _all_transitions(memory)
    assert seen[0.0] == (1 + 0.5 * 2 + 0.25 * 3, 0.125, 3.0)  # full 3-step window
    assert seen[2.0] == (3 + 0.5 * 4, 0.0, 4.0)  # terminates after 2 steps: no bootstrap
    assert seen[3.0] == (4.0, 0.0, 4.0)
    assert seen[1004.0] == (5 + 0.5 * 6, 0.25, 6.0)  # truncated after 2: bootstrap gamma^2
    assert len(memory) == 6


def test_incomplete_n_step_windows_are_not_sampled_yet():
    memory = _fill(ReplayMemory(100, (1,), np.float32, n_step=3), [(2, False)])
    # the episode ended by truncation after 2 steps: both transitions are complete
    assert len(memory) == 2
    ongoing = ReplayMemory(100, (1,), np.float32, n_step=3)
    ongoing.start(np.array([0]), np.array([[0.0]], dtype=np.float32))
    for t in range(1, 3):
        ongoing.add(np.array([0]), np.array([1.0]), np.array([False]), np.array([False]),
                    np.array([[float(t)]], dtype=np.float32))  # fmt: skip
    assert len(ongoing) == 0  # two steps into an episode, no 3-step window is complete
    ongoing.add(np.array([0]), np.array([1.0]), np.array([False]), np.array([False]),
                np.array([[3.0]], dtype=np.float32))  # fmt: skip
    assert len(ongoing) == 1


def test_frame_stacks_are_rebuilt_with_the_first_frame_repeated():
    memory = ReplayMemory(50, (3, 2, 2), np.uint8, frame_stack=3)

    def frame(value):
        return np.full((2, 2), value, dtype=np.uint8)

    def stack(*values):
        return np.stack([frame(v) for v in values])

    memory.start(np.array([0]), stack(7, 7, 7)[None])
    memory.add(np.array([1]), np.array([0.0]), np.array([False]), np.array([False]),
               stack(7, 7, 8)[None])  # fmt: skip
    memory.add(np.array([1]), np.array([0.0]), np.array([True]), np.array([False]),
               stack(7, 8, 9)[None], reset_obs=stack(20, 20, 20)[None])  # fmt: skip
    memory.add(np.array([0]), np.array([0.0]), np.array([False]), np.array([False]),
               stack(20, 20, 21)[None])  # fmt: skip
    assert memory.frames.shape == (1, 50, 2, 2)  # one frame per entry, not a stack
    batch = memory.sample(64, np.random.default_rng(1))
    pairs = {(int(o[:, 0, 0].tolist()[-1]), tuple(o[:, 0, 0].tolist()), tuple(n[:, 0, 0].tolist()))
             for o, n in zip(batch.obs, batch.next_obs, strict=True)}  # fmt: skip
    assert pairs == {
        (7, (7, 7, 7), (7, 7, 8)),
        (8, (7, 7, 8), (7, 8, 9)),
        (20, (20, 20, 20), (20, 20, 21)),  # the new episode does not see the old frames
    }


def test_wrap_around_keeps_only_the_newest_and_never_mixes_episodes():
    memory = _fill(ReplayMemory(10, (1,), np.float32, gamma=1.0), [(25, False)])
    assert memory.stored[0] == 10
    seen = _all_transitions(memory, n=512)
    assert min(seen) >= 16  # only the newest entries survive (the oldest stays unsampled)
    for obs, (reward, _, next_obs) in seen.items():
        assert next_obs == obs + 1 and reward == obs + 1


def test_capacity_checks():
    with pytest.raises(ValueError, match="need at least n_step \\+ frame_stack \\+ 1"):
        ReplayMemory(8, (4, 84, 84), np.uint8, n_envs=2, frame_stack=4)
    with pytest.raises(ValueError, match="holds no complete transition"):
        ReplayMemory(10, (1,), np.float32).sample(4, np.random.default_rng(0))


def test_atari_frames_cost_one_frame_per_transition():
    memory = ReplayMemory(10_000, (4, 84, 84), np.uint8, frame_stack=4)
    per_transition = memory.nbytes / 10_000
    assert 84 * 84 <= per_transition < 84 * 84 + 64  # 1M transitions: < 7.1 GB


def test_sum_tree_sampling_follows_priorities():
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 0.0, 3.0, 0.0, 6.0]))
    assert tree.total == 10.0
    assert tree.find(np.array([0.0, 0.99, 1.0, 3.99, 4.0, 9.99])).tolist() == [0, 0, 2, 2, 4, 4]
    tree.update(np.array([4, 4]), np.array([2.0, 2.0]))  # repeated indices are fine
    assert tree.total == 6.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=40))
def test_sum_tree_total_is_the_sum_of_leaves(priorities):
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), np.array(priorities))
    assert tree.total == pytest.approx(sum(priorities))


def test_prioritized_sampling_and_importance_weights():
    memory = _fill(ReplayMemory(64, (1,), np.float32, prioritized=True, alpha=1.0), [(20, False)])
    rng = np.random.default_rng(0)
    batch = memory.sample(20, rng, beta=1.0)
    errors = np.where(batch.obs[:, 0] == 5.0, 100.0, 0.0)  # transition from obs 5 is surprising
    memory.update_priorities(batch.indices, errors)
    batch = memory.sample(400, rng, beta=1.0)
    share = np.mean(batch.obs[:, 0] == 5.0)
    assert share > 0.9  # p = 100 against ~1e-6 for the others (and max priority for none)
    # beta = 1: w_j is proportional to 1 / P(j), so w_j p_j^alpha is the same for every j
    products = batch.weights * memory.tree.get(batch.indices)
    np.testing.assert_allclose(products, products[0], rtol=1e-5)
    assert batch.weights.max() == 1.0


@pytest.mark.parametrize(
    ("name", "damage", "fragment"),
    [
        ("position", lambda a: a.__setitem__("replay/position", np.array([10**9])), "positions"),
        ("stored", lambda a: a.__setitem__("replay/stored", np.array([-1])), "positions"),
        ("max_priority", lambda a: a.__setitem__("replay/max_priority", np.array([np.nan])),
         "priorities"),
        ("tree", lambda a: a.__setitem__("replay/tree", -a["replay/tree"] - 1), "priorities"),
        ("dtype", lambda a: a.__setitem__("replay/frames", a["replay/frames"].astype(np.float16)),
         "dtype float16"),
        ("shape", lambda a: a.__setitem__("replay/actions", a["replay/actions"][:, :5]),
         r"shape \(1, 5\)"),
        ("missing", lambda a: a.pop("replay/valid"), "missing 'replay/valid'"),
        ("extra", lambda a: a.__setitem__("replay/extra", np.zeros(2)), "unexpected"),
    ],
)  # fmt: skip
def test_a_replay_memory_refuses_arrays_that_do_not_fit_and_keeps_its_own(name, damage, fragment):
    from bellman.errors import CheckpointError

    saved = _fill(ReplayMemory(16, (1,), np.float32, prioritized=True), [(5, True), (4, False)])
    arrays = {key: np.array(value) for key, value in saved.state_arrays().items()}
    damage(arrays)
    memory = _fill(ReplayMemory(16, (1,), np.float32, prioritized=True), [(3, True)])
    before = {key: np.array(value) for key, value in memory.state_arrays().items()}
    with pytest.raises(CheckpointError, match=fragment):
        memory.load_state_arrays(arrays, "checkpoint step-9")
    for key, value in memory.state_arrays().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    good = {key: np.array(value) for key, value in saved.state_arrays().items()}
    memory.load_state_arrays(good)
    assert _all_transitions(memory) == _all_transitions(saved)
