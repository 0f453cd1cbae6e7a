"""Replay memory D: uniform or prioritized, one-step or n-step, each observation stored once.

The memory keeps, for each of the `n_envs` environments that feed it, a ring of *entries*: one
entry per observation the agent saw, in the order it saw them. An entry holds

    frame        the observation (for stacked frames, only the newest frame of the stack)
    action       the action taken from it, reward the reward that followed, terminated whether
                 that step ended the episode in a terminal state
    first        whether it is the first observation of an episode
    has_next     whether the step from it has happened (False for the last observation of an
                 episode and for the newest entry)

so a transition (phi_j, a_j, r_j, phi_j+1) is two consecutive entries, and an Atari transition
costs one 84x84 frame (7 kB) instead of two stacks of four (56 kB): 1M transitions fit in ~7 GB.
A stack is rebuilt from the entry and the `frame_stack - 1` before it, repeating the episode's
first frame where the episode is shorter (exactly what the frame-stack wrapper showed the agent).

n-step returns (Sutton 1988; Hessel et al. 2018):
    G_j = r_j + gamma r_j+1 + ... + gamma^(k-1) r_j+k-1,  bootstrapped from phi_j+k with gamma^k,
    k = n, or fewer when the episode ends first (no bootstrap after a terminal state; a time-limit
    truncation still bootstraps from the last observation).
A transition becomes sampleable ("valid") once its n-step window is complete.

Prioritized replay (Schaul et al. 2016, proportional variant):
    P(j) = p_j^alpha / sum_k p_k^alpha,   p_j = |delta_j| + eps,   new transitions get max p
    importance weights w_j = (N P(j))^-beta / max_i w_i, beta annealed to 1
stored in a sum-tree so sampling and updates cost O(log N); invalid entries have priority 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bellman.errors import CheckpointError, check_memory


class SumTree:
    """A binary tree whose leaves hold priorities and whose nodes hold the sums below them.

    Leaves are `tree[size:2*size]`, the root is `tree[1]`; batched `update` and `find` work on
    arrays of indices, level by level.
    """

    def __init__(self, capacity: int):
        self.size = 1 << max(1, int(np.ceil(np.log2(capacity))))
        self.tree = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.tree[self.size + indices]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves `indices` to `values` and recompute the sums above them."""
        if len(indices) == 1:  # the common case when adding: walk up with plain integers
            node = int(indices[0]) + self.size
            self.tree[node] = values[0]
            node //= 2
            while node >= 1:
                self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]
                node //= 2
            return
        nodes = np.asarray(indices) + self.size
        self.tree[nodes] = values
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, masses: np.ndarray) -> np.ndarray:
        """For each mass u in [0, total), the leaf j with prefix_sum(j) <= u < prefix_sum(j+1)."""
        nodes = np.ones(len(masses), dtype=np.int64)
        masses = np.array(masses, dtype=np.float64)
        while nodes[0] < self.size:
            left = 2 * nodes
            go_right = masses >= self.tree[left]
            masses = np.where(go_right, masses - self.tree[left], masses)
            nodes = np.where(go_right, left + 1, left)
        leaves = nodes - self.size
        # Float round-off can land on a zero-priority leaf at the far right: step back.
        zero = self.tree[nodes] <= 0
        while zero.any():
            leaves[zero] -= 1
            zero = self.tree[self.size + leaves] <= 0
        return leaves


@dataclass
class ReplayBatch:
    """A sampled minibatch, as numpy arrays.

    Attributes:
        obs: [B, *obs_shape] phi_j; actions: [B] a_j; returns: [B] the n-step return G_j;
        discounts: [B] gamma^k, or 0 when the episode terminated within the k steps;
        next_obs: [B, *obs_shape] phi_j+k; weights: [B] importance weights (ones if uniform);
        indices: [B] flat entry indices, for `update_priorities`.
    """

    obs: np.ndarray
    actions: np.ndarray
    returns: np.ndarray
    discounts: np.ndarray
    next_obs: np.ndarray
    weights: np.ndarray
    indices: np.ndarray


class ReplayMemory:
    """Replay memory D of capacity N fed by `n_envs` environments (see the module docstring).

    Args:
        capacity: total number of entries N, split evenly over the environments.
        obs_shape: shape of one observation as the agent sees it ([4, 84, 84] for Atari).
        obs_dtype: its dtype (uint8 frames, float32 vectors, int64 discrete states).
        n_envs: how many environments feed the memory (each gets its own ring).
        frame_stack: observations are stacks of this many frames; only the newest is stored.
        n_step: length of the multi-step return.
        gamma: discount of the multi-step return.
        prioritized: proportional prioritized replay instead of uniform sampling.
        alpha, eps: prioritization exponent and the small constant added to |delta|.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype,
        n_envs: int = 1,
        *,
        frame_stack: int = 1,
        n_step: int = 1,
        gamma: float = 0.99,
        prioritized: bool = False,
        alpha: float = 0.6,
        eps: float = 1e-6,
    ):
        self.n_envs = n_envs
        self.ring = capacity // n_envs
        if self.ring < n_step + frame_stack + 1:
            raise ValueError(
                f"capacity {capacity} leaves {self.ring} entries per env; "
                f"need at least n_step + frame_stack + 1 = {n_step + frame_stack + 1}"
            )
        self.obs_shape = tuple(obs_shape)
        self.frame_stack = frame_stack
        frame_shape = self.obs_shape[1:] if frame_stack > 1 else self.obs_shape
        self.n_step, self.gamma = n_step, gamma
        shape = (n_envs, self.ring)
        entry = (
            np.dtype(obs_dtype).itemsize * int(np.prod(frame_shape)) + 8 + 4 + 4 + 16 * prioritized
        )  # frame, action, reward, flags, sum-tree leaf and node
        check_memory(n_envs * self.ring * entry,
                     f"a replay memory of {capacity:,} transitions ({entry} bytes each)",
                     "lower buffer_size")  # fmt: skip
        self.frames = np.zeros(shape + frame_shape, dtype=obs_dtype)
        self.actions = np.zeros(shape, dtype=np.int64)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.first = np.zeros(shape, dtype=bool)
        self.has_next = np.zeros(shape, dtype=bool)
        self.valid = np.zeros(shape, dtype=bool)
        self.position = np.zeros(n_envs, dtype=np.int64)  # where the next entry goes
        self.stored = np.zeros(n_envs, dtype=np.int64)  # entries written (capped at the ring)
        self.prioritized, self.alpha, self.eps = prioritized, alpha, eps
        self.tree = SumTree(n_envs * self.ring) if prioritized else None
        self.max_priority = 1.0
        self.n_valid = 0

    # ---- writing ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of transitions that can be sampled."""
        return self.n_valid

    @property
    def nbytes(self) -> int:
        """Bytes held by the memory's arrays (the sum-tree included)."""
        arrays = (self.frames, self.actions, self.rewards, self.terminated, self.first)
        total = sum(a.nbytes for a in arrays) + self.has_next.nbytes + self.valid.nbytes
        return total + (self.tree.tree.nbytes if self.tree is not None else 0)

    def start(self, envs: np.ndarray, obs: np.ndarray) -> None:
        """Begin an episode in each env of `envs` with its first observation (after reset)."""
        for e, o in zip(np.atleast_1d(envs), obs, strict=True):
            self._push(int(e), o, first=True)

    def add(self, actions, rewards, terminated, truncated, next_obs, reset_obs=None) -> None:
        """Record one vector step for every env: a_t, r_t, terminated, truncated, phi_t+1.

        Args:
            actions, rewards, terminated, truncated: [n_envs].
            next_obs: [n_envs, *obs_shape] the observation after the step; for an env whose
                episode ended this is the *final* observation (gymnasium's `final_obs`).
            reset_obs: [n_envs, *obs_shape] the first observation of the next episode, used for
                the envs whose episode ended.
        """
        for e in range(self.n_envs):
            reset = None if reset_obs is None else reset_obs[e]
            step = actions[e], rewards[e], terminated[e], truncated[e], next_obs[e], reset
            self.add_step(e, *step)

    def add_step(self, e: int, action, reward, terminated, truncated, next_obs, reset_obs) -> None:
        """`add` for env e alone (Ape-X's replay shards write each actor's steps this way)."""
        last = (self.position[e] - 1) % self.ring
        self.actions[e, last] = action
        self.rewards[e, last] = reward
        self.terminated[e, last] = terminated
        self.has_next[e, last] = True
        self._push(e, next_obs, first=False)
        if terminated or truncated:
            self.end_episode(e)
            self._push(e, reset_obs, first=True)

    def _push(self, e: int, obs: np.ndarray, first: bool) -> None:
        """Write entry `position[e]`, invalidating what it overwrites, and validate the
        transition whose n-step window it completes."""
        p = int(self.position[e])
        # Overwriting the oldest entry: its transition goes, and so does the frame history of
        # the next frame_stack - 1 entries.
        if self.frame_stack == 1:
            if self.valid[e, p]:
                self._set_valid(e, np.array([p]), False)
        else:
            self._set_valid(e, (p + np.arange(self.frame_stack)) % self.ring, False)
        self.frames[e, p] = obs[-1] if self.frame_stack > 1 else obs
        self.first[e, p] = first
        self.has_next[e, p] = False
        self.terminated[e, p] = False
        self.position[e] = (p + 1) % self.ring
        self.stored[e] = min(self.stored[e] + 1, self.ring)
        if not first:
            start = (p - self.n_step) % self.ring
            if self.n_step == 1:
                in_episode = not self.first[e, p]
            else:
                window = (start + 1 + np.arange(self.n_step)) % self.ring
                in_episode = not self.first[e, window].any()
            if in_episode and self._old_enough(e, start):
                self._set_valid(e, np.array([start]), True)

    def end_episode(self, e: int) -> None:
        """The episode in env e just ended: its last n - 1 transitions are complete now."""
        final = (int(self.position[e]) - 1) % self.ring
        for back in range(1, self.n_step):
            start = (final - back) % self.ring
            if not self.has_next[e, start] or not self._old_enough(e, start):
                break
            self._set_valid(e, np.array([start]), True)
            if self.first[e, start]:
                break

    def _old_enough(self, e: int, index: int) -> bool:
        """Whether the entry and its frame history are still in the ring."""
        age = (index - self.position[e]) % self.ring  # 0 = the oldest entry
        return (
            self.stored[e] == self.ring
            and age >= self.frame_stack
            or (self.stored[e] < self.ring and index < self.position[e])
        )

    def _set_valid(self, e: int, indices: np.ndarray, valid: bool) -> None:
        changed = int(np.count_nonzero(self.valid[e, indices] != valid))
        self.n_valid += changed if valid else -changed
        self.valid[e, indices] = valid
        if self.tree is not None:
            value = self.max_priority**self.alpha if valid else 0.0
            self.tree.update(e * self.ring + indices, np.full(len(indices), value))

    # ---- sampling --------------------------------------------------------------------------
    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 0.4) -> ReplayBatch:
        """Sample a minibatch uniformly (or by priority, with importance weights)."""
        if len(self) == 0:
            raise ValueError("the replay memory holds no complete transition yet")
        if self.tree is None:
            flat = self._sample_uniform(batch_size, rng)
            weights = np.ones(batch_size, dtype=np.float32)
        else:
            # Stratified: one uniform draw in each of batch_size equal slices of the total mass.
            total = self.tree.total
            masses = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
            flat = self.tree.find(np.minimum(masses, np.nextafter(total, 0)))
            probabilities = self.tree.get(flat) / total
            weights = (len(self) * probabilities) ** (-beta)
            weights = (weights / weights.max()).astype(np.float32)
        return self.transitions(flat, weights)

    def transitions(self, flat: np.ndarray, weights: np.ndarray | None = None) -> ReplayBatch:
        """The transitions at flat entry indices `flat` (valid ones), as `sample` returns them;
        weights default to ones (Ape-X's actors compute the priorities of theirs)."""
        if weights is None:
            weights = np.ones(len(flat), dtype=np.float32)
        env, index = np.divmod(flat, self.ring)
        returns, discounts, bootstrap = self._n_step(env, index)
        return ReplayBatch(
            obs=self._stack(env, index),
            actions=self.actions[env, index],
            returns=returns,
            discounts=discounts,
            next_obs=self._stack(env, bootstrap),
            weights=weights,
            indices=flat,
        )

    def _sample_uniform(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform over stored entries (rejecting the few that are not complete transitions)."""
        valid = self.valid.reshape(-1)
        if self.n_envs == 1:
            flat = rng.integers(0, self.stored[0], size=batch_size)
            bad = ~valid[flat]
            while bad.any():
                flat[bad] = rng.integers(0, self.stored[0], size=int(bad.sum()))
                bad = ~valid[flat]
            return flat
        ends = np.cumsum(self.stored)
        flat = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        while len(todo):
            draw = rng.integers(0, ends[-1], size=len(todo))
            env = np.searchsorted(ends, draw, side="right")
            flat[todo] = env * self.ring + draw - (ends[env] - self.stored[env])
            todo = todo[~valid[flat[todo]]]
        return flat

    def _n_step(self, env: np.ndarray, index: np.ndarray):
        """n-step returns G, discounts gamma^k (0 after termination) and bootstrap entries."""
        if self.n_step == 1:
            terminated = self.terminated[env, index]
            discounts = np.where(terminated, 0.0, self.gamma).astype(np.float32)
            return self.rewards[env, index], discounts, (index + 1) % self.ring
        returns = np.zeros(len(index), dtype=np.float32)
        discounts = np.ones(len(index), dtype=np.float32)
        position = index.copy()
        running = np.ones(len(index), dtype=bool)
        for _ in range(self.n_step):
            returns += np.where(running, discounts * self.rewards[env, position], 0.0)
            ended = running & self.terminated[env, position]
            discounts = np.where(running, discounts * self.gamma, discounts)
            discounts[ended] = 0.0
            position = np.where(running, (position + 1) % self.ring, position)
            running &= ~ended & self.has_next[env, position]
        return returns, discounts, position

    def _stack(self, env: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The observation at each entry: its frame, or its stack of frame_stack frames."""
        if self.frame_stack == 1:
            return self.frames[env, index]
        columns = [index]
        for _ in range(self.frame_stack - 1):
            previous = columns[-1]
            step_back = (previous - 1) % self.ring
            columns.append(np.where(self.first[env, previous], previous, step_back))
        order = np.stack(columns[::-1], axis=1)  # oldest frame first, as the wrapper stacks them
        return self.frames[env[:, None], order]

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """p_j = |delta_j| + eps for the sampled transitions (prioritized replay only)."""
        priorities = np.abs(td_errors).astype(np.float64) + self.eps
        still_valid = self.valid.reshape(-1)[indices]
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(indices[still_valid], priorities[still_valid] ** self.alpha)

    # ---- checkpoints -----------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to restore the memory exactly, as named arrays."""
        arrays = {
            "replay/frames": self.frames,
            "replay/actions": self.actions,
            "replay/rewards": self.rewards,
            "replay/terminated": self.terminated,
            "replay/first": self.first,
            "replay/has_next": self.has_next,
            "replay/valid": self.valid,
            "replay/position": self.position,
            "replay/stored": self.stored,
            "replay/max_priority": np.array([self.max_priority]),
        }
        if self.tree is not None:
            arrays["replay/tree"] = self.tree.tree
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray], where: str = "checkpoint") -> None:
        """Restore from `state_arrays` output, after checking the `replay/*` arrays against this
        memory (key set, shapes, dtypes) and the values the ring indexes with (positions and
        counts within the ring, a finite positive max priority, finite non-negative sum-tree
        masses): a file that does not fit is a CheckpointError, and nothing is changed."""
        from bellman.torch_state import check_arrays

        live = self.state_arrays()
        found = {key: value for key, value in arrays.items() if key.startswith("replay/")}
        check_arrays(found, {k: (v.shape, v.dtype) for k, v in live.items()}, f"{where} replay/")
        position, stored = found["replay/position"], found["replay/stored"]
        in_ring = (position >= 0) & (position < self.ring) & (stored >= 0) & (stored <= self.ring)
        priority = float(found["replay/max_priority"][0])
        masses = found.get("replay/tree", np.zeros(1))
        if not (in_ring.all() and math.isfinite(priority) and priority > 0
                and np.isfinite(masses).all() and (masses >= 0).all()):  # fmt: skip
            raise CheckpointError(
                f"{where}: the replay memory's positions, counts or priorities are out of range "
                f"(position {position.tolist()}, stored {stored.tolist()} in a ring of "
                f"{self.ring}, max priority {priority})"
            )
        for name in ("frames", "actions", "rewards", "terminated", "first", "has_next", "valid",
                     "position", "stored"):  # fmt: skip
            getattr(self, name)[...] = arrays[f"replay/{name}"]
        self.max_priority = float(arrays["replay/max_priority"][0])
        self.n_valid = int(self.valid.sum())
        if self.tree is not None:
            self.tree.tree[...] = arrays["replay/tree"]
