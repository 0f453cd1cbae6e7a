"""The agent's generator and the environments' episode seeds come from separate streams."""

import numpy as np

from bellman import seeding


def test_agent_stream_is_apart_from_the_first_episode_seeds():
    for seed in range(10):
        agent = seeding.make_rng(seed).integers(2**32, size=4)
        # SeedSequence(seed) == SeedSequence([seed, 0]): the words boundary_seeds(seed, 0, n) uses
        first_episodes = np.random.default_rng([seed, 0]).integers(2**32, size=4)
        assert not np.array_equal(agent, first_episodes)
        assert np.array_equal(agent, seeding.make_rng(seed).integers(2**32, size=4))


def test_boundary_seeds_differ_by_step_and_repeat_for_the_same_step():
    assert seeding.boundary_seeds(7, 0, 3) == seeding.boundary_seeds(7, 0, 3)
    assert seeding.boundary_seeds(7, 0, 3) != seeding.boundary_seeds(7, 2048, 3)
    assert len(set(seeding.boundary_seeds(7, 0, 8))) == 8
