"""What bellman's replay memory costs for Atari: bytes per transition, measured two ways.

bellman's `ReplayMemory` stores each 84x84 frame once and rebuilds the [4, 84, 84] stacks of a
transition (phi_j, a_j, r_j, phi_j+1) when it samples them, so a transition costs one frame
(7,056 bytes) plus a few bytes of action, reward and flags. A naive memory that stores obs and
next_obs stacks pays 2 x 4 x 84 x 84 = 56,448 bytes for the frames alone.

For the uniform and the prioritized memory this script
    1. builds a memory of `--capacity` transitions (default 100,000) and fills it completely with
       Atari-shaped uint8 observations (episodes that end, so resets are stored as well),
    2. reads `memory.nbytes` (the bytes of its arrays, the sum-tree included),
    3. reads the process's resident memory (VmRSS in /proc/self/status) before building and after
       filling: numpy's zeros are only backed by RAM once written, so the growth of RSS is what
       the filled memory really occupies (not an accounting trick),
    4. builds, without filling, a memory of Nature's 1,000,000 transitions and reads its nbytes
       (the cost once it is full; it must stay under 8 GB).

    python benchmarks/replay_memory.py [--capacity 100000]

Run it as a script from the repository root (it imports benchmarks/common.py as `common`).
Writes benchmarks/results/replay_memory.json. Runs in well under a minute.
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import sys
import time

import numpy as np
from common import header, print_table, today, write_results

from bellman.buffers import ReplayMemory

OBS_SHAPE = (4, 84, 84)  # DeepMind's agent history of 4 greyscale 84x84 frames
FRAME_STACK = 4
NATURE_CAPACITY = 1_000_000
LIMIT = 8 * 10**9  # bytes: 1M transitions must fit in this
NAIVE_BYTES = 2 * int(np.prod(OBS_SHAPE))  # obs + next_obs stacks, uint8


def rss_bytes() -> int:
    """The process's current resident set size (Linux /proc; ru_maxrss's peak elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def make_memory(capacity: int, prioritized: bool) -> ReplayMemory:
    return ReplayMemory(
        capacity, OBS_SHAPE, np.uint8, 1, frame_stack=FRAME_STACK, prioritized=prioritized
    )


def fill(memory: ReplayMemory, steps: int, rng: np.random.Generator) -> float:
    """Feed `steps` env steps of random frames, in episodes of 100-1,000 steps; returns seconds.

    Random frames do not compress or share pages, and every entry of the ring gets written.
    """
    pool = rng.integers(0, 256, size=(64, 1, *OBS_SHAPE), dtype=np.uint8)
    actions, rewards = np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.float32)
    no = np.zeros(1, dtype=bool)
    episode_left = int(rng.integers(100, 1001))
    started = time.perf_counter()
    memory.start(np.array([0]), pool[0])
    for t in range(steps):
        episode_left -= 1
        ends = np.array([episode_left == 0])
        actions[0] = t % 4
        memory.add(actions, rewards, ends, no, pool[t % 64], reset_obs=pool[(t + 1) % 64])
        if episode_left == 0:
            episode_left = int(rng.integers(100, 1001))
    return time.perf_counter() - started


def measure(kind: str, capacity: int) -> dict:
    prioritized = kind == "prioritized"
    gc.collect()
    rss_before = rss_bytes()
    memory = make_memory(capacity, prioritized)
    rss_empty = rss_bytes()
    seconds = fill(memory, capacity, np.random.default_rng(0))
    rss_full = rss_bytes()
    stored = int(memory.stored.sum())
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    for _ in range(200):
        batch = memory.sample(32, rng)
    sample_us = (time.perf_counter() - started) / 200 * 1e6
    assert batch.obs.shape == (32, *OBS_SHAPE) and batch.next_obs.shape == (32, *OBS_SHAPE)
    row = {
        "kind": kind,
        "capacity": capacity,
        "entries_written": stored,
        "transitions_sampleable": len(memory),
        "nbytes": memory.nbytes,
        "bytes_per_transition": memory.nbytes / capacity,
        "rss_growth_empty": rss_empty - rss_before,
        "rss_growth_filled": rss_full - rss_before,
        "rss_over_nbytes": (rss_full - rss_before) / memory.nbytes,
        "fill_seconds": seconds,
        "add_us": seconds / capacity * 1e6,
        "sample_32_us": sample_us,
    }
    del memory, batch
    gc.collect()
    # Nature's 1M: built but not filled (so it costs no RAM here); nbytes is its size when full.
    nature = make_memory(NATURE_CAPACITY, prioritized)
    row["nbytes_1m"] = nature.nbytes
    row["bytes_per_transition_1m"] = nature.nbytes / NATURE_CAPACITY
    del nature
    gc.collect()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--capacity", type=int, default=100_000)
    args = parser.parse_args()

    rows = []
    for kind in ("uniform", "prioritized"):
        print(f"filling a {kind} memory of {args.capacity:,} transitions ...", flush=True)
        rows.append(measure(kind, args.capacity))

    gb = 1e9
    print()
    print(
        f"Replay memory for Atari observations uint8 {list(OBS_SHAPE)}, frame_stack "
        f"{FRAME_STACK}; {args.capacity:,} transitions filled; {today()}, "
        f"{platform.machine()}, numpy {np.__version__}"
    )
    table = [
        [
            f"bellman {r['kind']}",
            f"{r['bytes_per_transition']:,.1f}",
            f"{r['nbytes'] / 1e6:,.1f} MB",
            f"{r['rss_growth_filled'] / 1e6:,.1f} MB ({r['rss_growth_empty'] / 1e6:,.1f} MB)",
            f"{r['rss_over_nbytes']:.3f}",
            f"{r['nbytes_1m'] / gb:.3f} GB",
            f"{r['add_us']:.1f} us",
            f"{r['sample_32_us']:.0f} us",
        ]
        for r in rows
    ]
    table.append(
        [
            "naive obs + next_obs stacks",
            f"{NAIVE_BYTES:,} (frames only)",
            f"{NAIVE_BYTES * args.capacity / 1e6:,.1f} MB",
            "-",
            "-",
            f"{NAIVE_BYTES * NATURE_CAPACITY / gb:.3f} GB",
            "-",
            "-",
        ]
    )
    print_table(
        ["memory", "bytes/transition (nbytes)", "nbytes filled", "RSS growth filled (empty)",
         "RSS / nbytes", "1M transitions", "add", "sample 32"],
        table,
    )  # fmt: skip
    ok = all(r["nbytes_1m"] < LIMIT for r in rows)
    ratio = NAIVE_BYTES / rows[0]["bytes_per_transition_1m"]
    print(f"1M transitions < 8 GB: {'yes' if ok else 'NO'}; naive / bellman uniform = {ratio:.1f}x")

    record = {
        **header(None, "numpy"),
        "obs_shape": list(OBS_SHAPE),
        "frame_stack": FRAME_STACK,
        "capacity": args.capacity,
        "naive_bytes_per_transition": NAIVE_BYTES,
        "naive_nbytes_1m": NAIVE_BYTES * NATURE_CAPACITY,
        "under_8gb_at_1m": ok,
        "rows": rows,
    }
    write_results("replay_memory", record)


if __name__ == "__main__":
    main()
