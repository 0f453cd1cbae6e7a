"""A2C and PPO's N actors on Ray: a gymnasium vector env whose environments live in Ray actors.

Synchronous acting, as in A2C (Mnih et al. 2016, Algorithm S3) with its actors on other
processes or machines:
    1. the learner draws a_t ~ pi_theta(.|s_t) for all N envs at once (batched, as on one process);
    2. each of the W actors is sent the actions of the envs it holds, steps them and resets the
       ones whose episode ended in the same step (gymnasium's SAME_STEP autoreset);
    3. s_t+1, r_t and the episode ends come back and are put together in env order, with the
       `infos` gymnasium's SyncVectorEnv builds (`final_obs`, `final_info`, `episode`).
So a seeded run with `backend = ray` is, bit for bit, the single-process run with the same
`n_envs`: env i is built and seeded as SyncVectorEnv's env i is, only in another process.

Faults: each actor is restarted by Ray (`max_restarts`) when its process dies. The vector env
keeps, for every actor, the seeds of the envs' last reset and the actions sent since; a restarted
actor rebuilds its envs, resets them with those seeds and replays those actions (envs are
deterministic given seed and actions), then the interrupted step is retried. The run goes on
exactly as if nothing had happened, and a `warning:` line on stderr says what was replayed.
The loops reset with seeds at every checkpoint (`onpolicy.boundary`), which bounds the replay.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from bellman.distributed.cluster import connect, import_ray
from bellman.errors import BellmanError, ConfigError

#: How often Ray restarts one actor's process before the run gives up.
MAX_RESTARTS = 3


class EnvActor:
    """The body of one Ray actor: `k` environments from `make_env`, stepped in turn with
    same-step autoreset (as gymnasium's SyncVectorEnv steps its envs)."""

    def __init__(self, make_env: Callable[[], gym.Env], k: int):
        self.envs = [make_env() for _ in range(k)]
        self.in_sync = False  # a (re)started actor's envs wait for `reset` or `restore`

    def pid(self) -> int:
        import os

        return os.getpid()

    def reset(self, seeds: list, options: dict | None) -> list[tuple[Any, dict]]:
        """(s_0, info) of every env, reset with its seed."""
        self.in_sync = True
        pairs = zip(self.envs, seeds, strict=True)
        return [env.reset(seed=seed, options=options) for env, seed in pairs]

    def step(self, actions) -> list | None:
        """For every env: (s_t+1, r_t, terminated, truncated, the info dicts SyncVectorEnv adds
        for it, in its order); an env whose episode ended is reset, its last observation and
        info handed back as `final_obs` and `final_info`. None when this actor was restarted
        and has not been restored yet."""
        if not self.in_sync:
            return None
        results = []
        for env, action in zip(self.envs, actions, strict=True):
            obs, reward, terminated, truncated, info = env.step(action)
            parts = [info]
            if terminated or truncated:
                final = {"final_obs": obs, "final_info": info}
                obs, info = env.reset()
                parts = [final, info]
            results.append((obs, reward, terminated, truncated, parts))
        return results

    def restore(self, seeds: list, options: dict | None, actions: list) -> None:
        """Rebuild the envs' state: reset with `seeds`, then replay `actions` (one entry per
        step since that reset)."""
        self.reset(seeds, options)
        for chunk in actions:
            self.step(chunk)


class RayVectorEnv(gym.vector.VectorEnv):
    """`n_envs` environments from `make_env` spread over `workers` Ray actors (0: one per env),
    stepped together; satisfies gymnasium's VectorEnv (SAME_STEP autoreset).

    Args:
        make_env: builds one env (shipped to the actors: it must pickle with cloudpickle).
        n_envs: N, the number of envs.
        workers: W, the number of actors (0: N); actor j holds a contiguous block of envs.
        ray_address: "" for a local Ray, or HOST:PORT of a cluster (`cluster.connect`).
    """

    def __init__(
        self, make_env: Callable[[], gym.Env], n_envs: int, workers: int = 0, ray_address=""
    ):
        workers = workers or n_envs
        if workers > n_envs:
            raise ConfigError(
                f"workers = {workers} but n_envs = {n_envs}: each Ray actor steps at least one "
                f"env; set workers <= {n_envs} (0: one actor per env)"
            )
        connect(ray_address, workers)
        ray = import_ray()
        probe = make_env()
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.spec, self.render_mode = probe.spec, probe.render_mode
        probe.close()
        self.num_envs = n_envs
        self.observation_space = batch_space(self.single_observation_space, n_envs)
        self.action_space = batch_space(self.single_action_space, n_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.blocks = np.array_split(np.arange(n_envs), workers)
        remote = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=0)
        self.actors = [remote(EnvActor).remote(make_env, len(block)) for block in self.blocks]
        try:  # wait for the actors: an env they cannot build is the user's error, said once
            self.actor_pids()
        except ray.exceptions.RayActorError as error:
            self.close()
            reason = str(error).strip().splitlines()[-1].strip()
            raise ConfigError(f"the Ray actors could not build the env: {reason}") from None
        # what a restarted actor replays: its envs' last reset seeds and the actions since
        self._seeds: list[list] = [[None] * len(block) for block in self.blocks]
        self._options: dict | None = None
        self._actions: list[list] = [[] for _ in self.blocks]

    def actor_pids(self) -> list[int]:
        """The process id of every actor (for tests and for `ray` tooling)."""
        return import_ray().get([actor.pid.remote() for actor in self.actors])

    def reset(self, *, seed=None, options=None):
        """Reset every env: `seed` None, an int (env i gets seed + i) or one per env."""
        if seed is None or isinstance(seed, int):
            seed = [None if seed is None else seed + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"{len(seed)} seeds for {self.num_envs} envs")
        self._options = options
        self._seeds = [[seed[i] for i in block] for block in self.blocks]
        self._actions = [[] for _ in self.blocks]
        pairs = zip(self.actors, self._seeds, strict=True)
        refs = [actor.reset.remote(seeds, options) for actor, seeds in pairs]
        results = self._gather(refs, [None] * len(refs))
        infos: dict[str, Any] = {}
        for i, (_, info) in enumerate(results):
            infos = self._add_info(infos, info, i)
        return self._batch([obs for obs, _ in results]), infos

    def step(self, actions):
        """Send each actor its envs' actions, and put their results together in env order."""
        chunks = [actions[block[0] : block[-1] + 1] for block in self.blocks]
        refs = [actor.step.remote(chunk) for actor, chunk in zip(self.actors, chunks, strict=True)]
        results = self._gather(refs, chunks)
        for j, chunk in enumerate(chunks):
            self._actions[j].append(chunk)
        infos: dict[str, Any] = {}
        for i, (_, _, _, _, parts) in enumerate(results):
            for part in parts:
                infos = self._add_info(infos, part, i)
        return (
            self._batch([row[0] for row in results]),
            np.array([row[1] for row in results], dtype=np.float64),
            np.array([row[2] for row in results], dtype=np.bool_),
            np.array([row[3] for row in results], dtype=np.bool_),
            infos,
        )

    def _batch(self, observations: list) -> np.ndarray:
        out = create_empty_array(self.single_observation_space, self.num_envs)
        return concatenate(self.single_observation_space, observations, out)

    def _gather(self, refs: list, chunks: list) -> list:
        """The actors' answers to a reset (`chunks` all None) or a step, one row per env in env
        order, fetched with one `ray.get`; an actor that died or was restarted meanwhile is
        restored and asked again (`_recover`)."""
        ray = import_ray()
        lost = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
        try:
            answers, reasons = ray.get(refs), ["restarted"] * len(refs)
        except lost:
            answers, reasons = [], []
            for ref in refs:
                try:
                    answers.append(ray.get(ref))
                    reasons.append("restarted")
                except lost as error:
                    answers.append(None)
                    reasons.append(type(error).__name__)
        rows = []
        for j, answer in enumerate(answers):
            rows.extend(answer if answer is not None else self._recover(j, chunks[j], reasons[j]))
        return rows

    def _recover(self, j: int, chunk, reason: str):
        """Restore actor j's envs (reset with the last seeds, replay the actions since) and
        retry the interrupted call, waiting for Ray to restart the actor when it must."""
        ray = import_ray()
        block = self.blocks[j]
        unseeded = " (their last reset had no seed: the replayed episodes are new ones)"
        print(
            f"warning: Ray actor {j} (envs {block[0]}-{block[-1]}) was lost ({reason}); Ray "
            f"restarts it, its envs are reset with their seeds, {len(self._actions[j])} steps "
            f"replayed and the step retried{unseeded if None in self._seeds[j] else ''}",
            file=sys.stderr,
        )
        actor = self.actors[j]
        for attempt in range(MAX_RESTARTS + 1):
            try:
                if chunk is None:
                    return ray.get(actor.reset.remote(self._seeds[j], self._options))
                ray.get(actor.restore.remote(self._seeds[j], self._options, self._actions[j]))
                result = ray.get(actor.step.remote(chunk))
                if result is not None:
                    return result
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                time.sleep(0.5 * (attempt + 1))
        raise BellmanError(f"Ray actor {j} could not be restored after {MAX_RESTARTS} restarts")

    def close_extras(self, **kwargs) -> None:
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
