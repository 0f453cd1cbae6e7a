"""The one place that seeds random number generators and captures/restores their state.

A run owns explicit generators rather than global state: a `numpy.random.Generator` for the agent,
each environment's own `np_random`, and (for the deep algorithms) torch's generator. Their states
go into the checkpoint JSON (numpy bit-generator states are plain dicts of ints), so a resumed
run draws exactly the numbers the uninterrupted run would have drawn.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

AGENT_STREAM = 1  # spawn key of the agent's generator, apart from every `[seed, ...]` sequence


def make_rng(seed: int) -> np.random.Generator:
    """The agent's generator for a run with this seed.

    It comes from its own stream: numpy's `SeedSequence(s)` equals `SeedSequence([s, 0])`, so
    `default_rng(seed)` would share its seed words with `boundary_seeds(seed, 0, n)` (the
    environments' first episodes) and the agent's draws would be tied to the episodes it meets.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(AGENT_STREAM,)))


def seed_everything(seed: int, *, own_stream: bool = False) -> np.random.Generator:
    """Seed Python's `random` (and torch, CPU and CUDA, when it is loaded); return the run's
    numpy generator: the agent's (`make_rng`), or with `own_stream` `default_rng(seed)`, the
    stream the language-model steps draw batches from (they have no environments whose seeds it
    could share words with, and their measured figures were drawn from it)."""
    random.seed(seed)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    return np.random.default_rng(seed) if own_stream else make_rng(seed)


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """JSON-safe state of a numpy generator."""
    return rng.bit_generator.state


def python_random_state() -> list:
    """Python's `random` state as JSON-safe nested lists."""
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def boundary_seeds(seed: int, step: int, n: int) -> list[int]:
    """Seeds for resetting `n` environments at env step `step` of a run seeded with `seed`.

    Algorithms that reset their environments at checkpoints use these, in the uninterrupted run
    as in a resumed one, so both see exactly the same episodes afterwards.
    """
    state = np.random.SeedSequence([seed, step]).generate_state(n, dtype=np.uint32)
    return [int(value) for value in state]


# ---- capturing and restoring every generator a run draws from ----------------------------------
#: Checkpoint array names of torch's generators (uint8 state vectors).
TORCH_RNG, CUDA_RNG = "torch_rng", "cuda_rng"


def capture_rngs(
    device=None, *, uses_torch: bool = True, **generators: np.random.Generator
) -> tuple[dict, dict]:
    """Every generator a run draws from, as (arrays, JSON state) for its checkpoint.

    Args:
        device: the torch device the run computes on; a CUDA device's generator is captured too
            (actions sampled on the GPU draw from it).
        uses_torch: False for learners that draw nothing from torch (the tabular ones): torch's
            generators are then neither captured nor expected back, loaded or not.
        generators: the run's own numpy generators by name (e.g. `numpy_rng=agent_rng`).

    Returns:
        arrays: torch's CPU generator (`torch_rng`) and the CUDA one (`cuda_rng`) when used.
        state: `python_rng` (Python's `random`) and each named numpy generator's state.
    """
    import sys

    arrays = {}
    torch = sys.modules.get("torch") if uses_torch else None
    if torch is not None:
        arrays[TORCH_RNG] = torch.get_rng_state().numpy()
        if device is not None and torch.device(device).type == "cuda":
            arrays[CUDA_RNG] = torch.cuda.get_rng_state(device).numpy()
    state = {"python_rng": python_random_state()}
    state.update({name: generator_state(rng) for name, rng in generators.items()})
    return arrays, state


def restore_rngs(
    arrays: dict,
    state: dict,
    device=None,
    *,
    uses_torch: bool = True,
    **generators: np.random.Generator,
):
    """Put back what `capture_rngs` captured (called with the same `uses_torch`), after checking
    every piece; a state that does not fit (wrong length, another bit generator, garbage) is a
    CheckpointError and nothing is set.
    """
    import sys

    from bellman.errors import CheckpointError

    torch = sys.modules.get("torch") if uses_torch else None
    checks = []
    if torch is not None:
        checks.append((TORCH_RNG, torch.get_rng_state()))
        if device is not None and torch.device(device).type == "cuda" and CUDA_RNG in arrays:
            checks.append((CUDA_RNG, torch.cuda.get_rng_state(device)))
    for name, live in checks:
        saved = arrays.get(name)
        if saved is None or saved.dtype != np.uint8 or tuple(saved.shape) != tuple(live.shape):
            found = "missing" if saved is None else f"{saved.dtype} {tuple(saved.shape)}"
            raise CheckpointError(
                f"checkpoint's '{name}' is {found}, expected uint8 {tuple(live.shape)}"
            )
    python = _checked_python_state(state.get("python_rng"))
    numpy_states = {}
    for name, rng in generators.items():
        numpy_states[name] = _checked_generator_state(rng, state.get(name), name)
    # every piece fits: now set them
    for name, _ in checks:
        tensor = torch.from_numpy(np.array(arrays[name]))
        if name == TORCH_RNG:
            torch.set_rng_state(tensor)
        else:
            torch.cuda.set_rng_state(tensor, device)
    random.setstate(python)
    for name, rng in generators.items():
        rng.bit_generator.state = numpy_states[name]


def _checked_python_state(state) -> tuple:
    from bellman.errors import CheckpointError

    try:
        version, internal, gauss = state
        internal = tuple(int(x) for x in internal)
        if not (isinstance(version, int) and len(internal) == 625 and
                all(0 <= x < 2**32 for x in internal[:-1]) and 0 < internal[-1] <= 624 and
                (gauss is None or isinstance(gauss, float))):  # fmt: skip
            raise ValueError
        probe = random.Random()
        probe.setstate((version, internal, gauss))
    except (TypeError, ValueError, OverflowError):
        raise CheckpointError("checkpoint's python_rng is not a state of Python's random") from None
    return version, internal, gauss


def _checked_generator_state(rng: np.random.Generator, state, name: str) -> dict:
    from bellman.errors import CheckpointError

    expected = type(rng.bit_generator).__name__
    if not isinstance(state, dict) or state.get("bit_generator") != expected:
        raise CheckpointError(f"checkpoint's {name} is not a state of numpy's {expected}")
    probe = type(rng.bit_generator)()
    try:
        probe.state = state
    except (TypeError, ValueError, KeyError, OverflowError):
        raise CheckpointError(f"checkpoint's {name} is not a state of numpy's {expected}") from None
    return state
