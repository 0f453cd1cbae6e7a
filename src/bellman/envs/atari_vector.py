"""The Atari backend: N games in ale-py's `AtariVectorEnv` (C++ threads), DeepMind's phi.

`bellman.envs.make_vector_env` picks this backend for `ALE/...` ids (every other id, and
`atari_backend = "gymnasium"`, gets gymnasium's SyncVectorEnv of `envs.atari.make_atari_env`).
It presents the same vector-env interface the algorithms already step: same-step autoreset with
`infos["final_obs"]`, and `infos["final_info"]["episode"]` with the raw score of each finished
game, so `final_observations` and `log_episodes` read it unchanged.

DeepMind's phi (Mnih et al. 2015, Methods), where each item is done:

    1. frame skip k = 4, the action repeated      ale-py, natively (C++), per env thread
    2. max of the last two frames (flicker)       ale-py, natively
    3. grey level, resized to 84 x 84             ale-py, natively (the same pixels as the
                                                  wrapper path: tests/envs/test_atari_vector.py)
    4. the 4 most recent frames stacked           here, in numpy: at the start of every learning
                                                  episode the stack is 4 copies of its first frame,
                                                  as the wrapper path and the replay memory do
    5. 1 to 30 no-ops on reset                    ale-py, natively, from each env's seeded generator
    6. rewards clipped to their sign (learning)   here; `infos["raw_reward"]` and the logged game
                                                  scores are the game's own
    7. life loss terminal (learning only)         ale-py's `life_loss_info`: `terminated` at a
                                                  lost life, the game goes on; a game over resets
    +  FIRE on reset                              ale-py's `use_fire_reset`
    +  sticky actions 0.25 for v5 ids             ale-py, natively (`repeat_action_probability`)

Differences from the gymnasium-wrapper path (`envs.atari.make_atari_env`), each tested:
    - FIRE on reset: ale-py presses FIRE for one emulator frame after the no-ops; the wrapper
      path (baselines' FireResetEnv) takes FIRE then action 2 as two agent steps (8 frames).
      After a lost life the backend presses nothing (the game goes on from the frame where the
      life was lost, the agent serves); the wrapper path takes a no-op step and FIRE again.
    - Random numbers: the no-op counts and sticky actions come from ale-py's per-env generators
      seeded by `reset(seed=...)`, not from gymnasium's, so the same seed gives other games.
    With no-ops, sticky actions and FIRE off, the two paths give equal observations, rewards and
    terminations for the same actions (the test).

Synchronous runs are reproducible bit for bit: every env has its own seeded emulator, and the
thread that steps it does not change its numbers (tested with 1 and 2 threads).

Groups (`groups` = 2, the on-policy algorithms' `env_overlap`): the N games in two emulators
of N/2 each, stepped apart: `send(actions, g)` starts group g's step on its threads and returns at
once, `recv(g)` waits for it, so a learner can run pi_theta for one group while the other's
games step (`algos.onpolicy.run_policy`). Each game is the same emulator with the same seed as in
one group: `step` (both groups sent, then both received) returns what one group of N returns,
bit for bit (tested).

Async (`async_batch` = B < N, this class only; no algorithm uses it yet): `step` sends actions
for the B envs it last returned and returns the first B envs that finish their step
(`infos["env_id"]` names them), so slow envs do not hold the fast ones back. What it changes:
each call covers another set of envs, so an algorithm must take transitions env by env (PPO,
A2C and REINFORCE keep [T, N] rollouts and cannot), and which envs come back depends on the
threads' timing, so a run is not reproducible. Why DQN, which could, does not take it yet:
with ale-py 0.12.1 an env whose reset result is not in the first batch after `reset` can be
starved (4 envs, batch 2, 2 threads: env 2 did not come back in 8 steps), and a replay memory
fed that way would silently lose an actor; the training configs have no async setting.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from bellman.errors import ConfigError

#: What `env_threads = 0` means: one emulator thread per core of this machine.
CORES = os.cpu_count() or 1


def check_counts(n_envs: int, env_threads: int, async_batch: int, groups: int = 1) -> None:
    """ConfigError for thread, batch and group counts the backend cannot take, naming what is
    valid."""
    if env_threads > CORES:
        raise ConfigError(
            f"env_threads = {env_threads} is more than the {CORES} cores of this machine; "
            f"use 1..{CORES}, or 0 for one thread per core"
        )
    if async_batch > n_envs:
        raise ConfigError(
            f"async_batch = {async_batch} is more than n_envs = {n_envs}: an async step returns "
            f"async_batch of the n_envs games; use 0 (synchronous) or 1..{n_envs}"
        )
    if groups > 1 and (n_envs % groups or async_batch):
        raise ConfigError(
            f"env_overlap steps the n_envs games in {groups} equal groups, but n_envs = {n_envs}"
            f"{' is odd' if n_envs % groups else ' with async_batch'}; use an even n_envs >= 2"
            f" (or env_overlap = false)"
        )


def check_settings(
    env_id: str, n_envs: int, env_threads: int, async_batch: int, groups: int = 1
) -> None:
    """ConfigError for settings the backend cannot take, naming the value and what is valid."""
    check_counts(n_envs, env_threads, async_batch, groups)
    spec = gym.registry[env_id]
    if spec.kwargs.get("obs_type", "rgb") != "rgb":
        raise ConfigError(
            f"'{env_id}' has {spec.kwargs['obs_type']} observations; the Atari backend and "
            f"DeepMind's preprocessing take screens: use the id without '-ram'"
        )


class AtariVector(gym.vector.VectorEnv):
    """N Atari games stepped by ale-py's C++ threads, with DeepMind's preprocessing.

    Args:
        env_id: an `ALE/<Game>-v5` id (registered: `envs.atari.register_atari`).
        n_envs: N, the games.
        training: True: life loss ends the learner's episode and rewards are clipped to their
            sign; False: whole games, raw rewards.
        frame_stack: m, frames per observation.
        env_threads: emulator threads (0: one per core; never more than N).
        async_batch: B < N steps the first B games ready (see the module docstring); 0 all N.
        groups: 2 steps the games in two groups that can be sent and received apart (`send`,
            `recv`; see the module docstring); 1 one group.
        noop_max: reset takes 1..noop_max no-ops (0: none).
        repeat_action_probability: sticky actions; None keeps the id's (v5: 0.25).
        fire_reset: press FIRE on reset in games that have it.
    """

    def __init__(
        self,
        env_id: str,
        n_envs: int,
        *,
        training: bool,
        frame_stack: int = 4,
        env_threads: int = 0,
        async_batch: int = 0,
        groups: int = 1,
        noop_max: int = 30,
        repeat_action_probability: float | None = None,
        fire_reset: bool = True,
    ):
        from ale_py.vector_env import AtariVectorEnv

        check_settings(env_id, n_envs, env_threads, async_batch, groups)
        self.spec = gym.registry[env_id]
        kwargs = self.spec.kwargs
        sticky = kwargs.get("repeat_action_probability", 0.0)
        if repeat_action_probability is not None:
            sticky = repeat_action_probability
        size = n_envs // groups
        self.ale_envs = [
            AtariVectorEnv(
                kwargs["game"],
                size,
                batch_size=async_batch,
                num_threads=min(env_threads or CORES, size),
                max_num_frames_per_episode=kwargs.get("max_num_frames_per_episode", 108_000),
                repeat_action_probability=float(sticky),
                full_action_space=kwargs.get("full_action_space", False),
                autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
                stack_num=1,
                noop_max=noop_max,
                life_loss_info=training,
                reward_clipping=False,
                use_fire_reset=fire_reset,
            )  # fmt: skip
            for _ in range(groups)
        ]
        #: the envs of each group, in order: group g is envs g N/groups .. (g + 1) N/groups - 1
        self.groups = [slice(g * size, (g + 1) * size) for g in range(groups)]
        self.num_envs, self.training, self.frame_stack = n_envs, training, frame_stack
        self.batch = async_batch or n_envs
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.single_observation_space = gym.spaces.Box(0, 255, (frame_stack, 84, 84), np.uint8)
        self.single_action_space = self.ale_envs[0].single_action_space
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, self.batch
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.batch)
        # the m most recent frames of each env in a ring: frame slot `newest[e]` is the latest
        self.ring = np.zeros((n_envs, frame_stack, 84, 84), dtype=np.uint8)
        self.newest = np.zeros(n_envs, dtype=np.int64)
        self.lives = np.zeros(n_envs, dtype=np.int64)
        self.scores = np.zeros(n_envs, dtype=np.float64)  # raw score of each game so far
        self.lengths = np.zeros(n_envs, dtype=np.int64)  # its length in agent steps
        self.env_ids = np.arange(self.batch)  # the envs the next step's actions go to

    def reset(
        self, *, seed: int | list[int] | np.ndarray | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """New games in all N envs (one seed each, or consecutive seeds from an int)."""
        if seed is not None:
            seed = np.arange(seed, seed + self.num_envs) if np.isscalar(seed) else seed
            seed = np.asarray(seed, dtype=np.int64) % (2**31)  # ale-py's seeds are int32
        results = [
            ale_env.reset(seed=None if seed is None else seed[group])
            for ale_env, group in zip(self.ale_envs, self.groups, strict=True)
        ]
        frames = np.concatenate([frames for frames, _ in results])
        infos = [info for _, info in results]
        ids = np.concatenate([
            info["env_id"] + group.start for info, group in zip(infos, self.groups, strict=True)
        ])  # fmt: skip
        lives = np.concatenate([info["lives"] for info in infos])
        self.ring[ids] = frames  # m copies of the first frame, [B, 1, 84, 84] broadcast
        self.lives[ids] = lives
        self.scores[ids], self.lengths[ids] = 0.0, 0
        self.env_ids = ids
        return self.ring[ids], {"env_id": ids, "lives": lives}  # (a copy: fancy index)

    def step(self, actions: np.ndarray):
        """One agent step (k frames) of the envs `env_ids` (all N when synchronous): every group
        sent its actions, then every group received, as one step (see `recv`)."""
        actions = np.asarray(actions, dtype=np.int64)
        for g, group in enumerate(self.groups):  # (async: the one group's B actions)
            self.send(actions[group], g)
        steps = [ale_env.recv() for ale_env in self.ale_envs]
        info = {  # what `finish` reads (final_obs: where a game ended, else any frame)
            "env_id": np.concatenate(
                [s[4]["env_id"] + group.start for s, group in zip(steps, self.groups, strict=True)]
            ),
            "lives": np.concatenate([s[4]["lives"] for s in steps]),
            "final_obs": np.concatenate([s[4].get("final_obs", s[0]) for s in steps]),
        }
        return self.finish(
            (*(np.concatenate([step[i] for step in steps]) for i in range(4)), info), None
        )

    def send(self, actions: np.ndarray, group: int) -> None:
        """Start group `group`'s step with `actions` (one per env of the group) and return: its
        threads step the games while the caller goes on; `recv(group)` collects it."""
        self.ale_envs[group].send(np.asarray(actions, dtype=np.int64))

    def recv(self, group: int):
        """Wait for group `group`'s step and return it as `step` does, for its envs only
        (`infos["env_id"]` names them by their index among the N)."""
        return self.finish(self.ale_envs[group].recv(), group)

    def finish(self, result, group: int | None):
        """DeepMind's preprocessing of a step of ale-py's (items 4, 6, 7: the stacks, clipped
        rewards, life loss; the bookkeeping of raw scores).

        Args:
            result: ale-py's (frames, rewards, terminated, truncated, info) for some envs.
            group: their group (their `env_id`s are the group's own), or None (the N's).

        Returns:
            (phi_t+1 [B, m, 84, 84] uint8, rewards [B] float32: clipped when training, raw
             otherwise, terminated [B], truncated [B], infos) with infos "env_id", "raw_reward",
            "lives", "final_obs"/"_final_obs" where a learner's episode ended (its last phi),
            and "final_info" {"episode": {"r", "l"}, "_episode"} where a game ended.
        """
        frames, rewards, terminated, truncated, info = result
        ids = info["env_id"] + (0 if group is None else self.groups[group].start)
        raw = rewards.astype(np.float64)
        lives = info["lives"].astype(np.int64)
        ended = terminated | truncated
        life_lost = terminated & (lives < self.lives[ids]) & ~truncated
        game_over = ended & ~life_lost
        # 4. the stack: the newest frame over the oldest in each env's ring (where the game was
        # reset, its final frame), then the ring read oldest first: one gather, the only copy
        newest = frames[:, -1]
        if game_over.any():
            newest = np.where(game_over[:, None, None], info["final_obs"][:, -1], newest)
        slot = (self.newest[ids] + 1) % self.frame_stack
        self.ring[ids, slot], self.newest[ids] = newest, slot
        order = (slot[:, None] + 1 + np.arange(self.frame_stack)) % self.frame_stack
        stacks = self.ring[ids[:, None], order]
        infos: dict[str, Any] = {"env_id": ids, "raw_reward": raw, "lives": lives}
        if ended.any():  # a new learning episode: m copies of its first frame
            infos["final_obs"], infos["_final_obs"] = stacks, ended
            stacks = stacks.copy()
            stacks[ended] = frames[ended]
            self.ring[ids[ended]] = frames[ended]
        self.scores[ids] += raw
        self.lengths[ids] += 1
        if game_over.any():
            infos["final_info"] = {
                "episode": {"r": self.scores[ids].copy(), "l": self.lengths[ids].copy()},
                "_episode": game_over,
            }
            over = ids[game_over]
            self.scores[over], self.lengths[over] = 0.0, 0
        self.lives[ids] = lives
        self.env_ids = ids
        learned = np.sign(raw) if self.training else raw
        return stacks, learned.astype(np.float32), terminated, truncated, infos

    def close(self, **kwargs) -> None:
        for ale_env in self.ale_envs:
            ale_env.close()
