"""The one place that seeds random number generators and captures/restores their state.

A run owns explicit generators rather than global state: a `numpy.random.Generator` for the agent,
each environment's own `np_random`, and (for the deep algorithms) torch's generator. Their states
go into the checkpoint JSON (numpy bit-generator states are plain dicts of ints), so a resumed
run draws exactly the numbers the uninterrupted run would have drawn.
"""

from __future__ import annotations

import random
from typing import Any

import gymnasium as gym
import numpy as np

AGENT_STREAM = 1  # spawn key of the agent's generator, apart from every `[seed, ...]` sequence


def make_rng(seed: int) -> np.random.Generator:
    """The agent's generator for a run with this seed.

    It comes from its own stream: numpy's `SeedSequence(s)` equals `SeedSequence([s, 0])`, so
    `default_rng(seed)` would share its seed words with `boundary_seeds(seed, 0, n)` (the
    environments' first episodes) and the agent's draws would be tied to the episodes it meets.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(AGENT_STREAM,)))


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's `random` (and torch when it is loaded); return the agent's numpy generator."""
    random.seed(seed)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    return make_rng(seed)


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """JSON-safe state of a numpy generator."""
    return rng.bit_generator.state


def set_generator_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Restore a state captured by `generator_state` (in place)."""
    rng.bit_generator.state = state


def env_rng_state(env: gym.Env) -> dict[str, Any]:
    """JSON-safe state of an environment's own generator (`env.unwrapped.np_random`)."""
    return generator_state(env.unwrapped.np_random)


def set_env_rng_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Give an environment a generator in the captured state, as `reset(seed=...)` would."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    env.unwrapped.np_random = np.random.Generator(bit_generator)


def python_random_state() -> list:
    """Python's `random` state as JSON-safe nested lists."""
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_python_random_state(state: list) -> None:
    """Restore a state captured by `python_random_state`."""
    version, internal, gauss = state
    random.setstate((version, tuple(internal), gauss))


def boundary_seeds(seed: int, step: int, n: int) -> list[int]:
    """Seeds for resetting `n` environments at env step `step` of a run seeded with `seed`.

    Algorithms that reset their environments at checkpoints use these, in the uninterrupted run
    as in a resumed one, so both see exactly the same episodes afterwards.
    """
    state = np.random.SeedSequence([seed, step]).generate_state(n, dtype=np.uint32)
    return [int(value) for value in state]
