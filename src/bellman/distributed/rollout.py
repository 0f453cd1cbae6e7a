"""A2C and PPO's N actors on Ray: a gymnasium vector env whose environments live in Ray actors.

Synchronous acting, as in A2C (Mnih et al. 2016, Algorithm S3) with its actors on other
processes or machines:
    1. the learner draws a_t ~ pi_theta(.|s_t) for all N envs at once (batched, as on one process);
    2. each of the W actors is sent the actions of the envs it holds, steps them and resets the
       ones whose episode ended in the same step (gymnasium's SAME_STEP autoreset);
    3. the raw s_t+1, r_t and episode ends come back, and on the learner's side gymnasium's own
       SyncVectorEnv steps N `Relay` envs that hand back those answers: it puts them together
       in env order with the same `infos` (`final_obs`, `final_info`, `episode`), through the
       same normalisation wrappers, whose running statistics the N envs share as on one process.
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

import functools
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from bellman.distributed.cluster import connect, import_ray
from bellman.errors import BellmanError, ConfigError

#: How often Ray restarts one actor's process before the run gives up.
MAX_RESTARTS = 3


class EnvActor:
    """The body of one Ray actor: `k` environments from `make_env`, stepped in turn with
    same-step autoreset (as gymnasium's SyncVectorEnv steps its envs); answers are raw, the
    learner's wrappers come after."""

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
        """For every env, its raw step (s_t+1, r_t, terminated, truncated, info) and, where the
        episode ended, the raw (s_0, info) of the reset that follows at once (gymnasium's
        same-step autoreset), else None. None when this actor was restarted and has not been
        restored yet."""
        if not self.in_sync:
            return None
        results = []
        for env, action in zip(self.envs, actions, strict=True):
            step = env.step(action)
            results.append((step, env.reset() if step[2] or step[3] else None))
        return results

    def restore(self, seeds: list, options: dict | None, actions: list) -> None:
        """Rebuild the envs' state: reset with `seeds`, then replay `actions` (one entry per
        step since that reset)."""
        self.reset(seeds, options)
        for chunk in actions:
            self.step(chunk)


class Relay(gym.Env):
    """The learner's stand-in for one env that lives in an actor: `step` and `reset` hand back
    the actor's answers, queued by RayVectorEnv in the order gymnasium's SyncVectorEnv asks for
    them. The learner's wrappers (normalisation, with statistics shared by the N envs) wrap it."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, spec):
        self.observation_space, self.action_space, self.spec = observation_space, action_space, spec
        self.answers: deque = deque()

    def step(self, action):
        return self.answers.popleft()

    def reset(self, *, seed=None, options=None):
        return self.answers.popleft()


class RayVectorEnv(gym.vector.VectorEnv):
    """`n_envs` environments from `make_env` spread over `workers` Ray actors (0: one per env),
    stepped together; satisfies gymnasium's VectorEnv (SAME_STEP autoreset).

    Args:
        make_env: builds one env (shipped to the actors: it must pickle with cloudpickle).
        n_envs: N, the number of envs.
        workers: W, the number of actors (0: N); actor j holds a contiguous block of envs.
        ray_address: "" for a local Ray, or HOST:PORT of a cluster (`cluster.connect`).
        wrap: env -> env, the wrappers that stay with the learner (applied to each `Relay`):
            those whose state the N envs share, such as normalisation statistics.
    """

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        n_envs: int,
        workers: int = 0,
        ray_address: str = "",
        wrap: Callable[[gym.Env], gym.Env] | None = None,
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
        self.relays = [
            Relay(probe.observation_space, probe.action_space, probe.spec) for _ in range(n_envs)
        ]
        probe.close()
        wrap = wrap or (lambda env: env)
        # the learner's side: gymnasium's SyncVectorEnv over the wrapped relays, so the results
        # are put together (autoreset, infos, normalisation in env order) by the same code
        self.sync = gym.vector.SyncVectorEnv(
            [functools.partial(wrap, relay) for relay in self.relays],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        self.envs = self.sync.envs  # where the learner finds the normalisation wrappers
        self.num_envs, self.metadata = n_envs, self.sync.metadata
        self.single_observation_space = self.sync.single_observation_space
        self.single_action_space = self.sync.single_action_space
        self.observation_space = self.sync.observation_space
        self.action_space = self.sync.action_space
        self.spec, self.render_mode = self.relays[0].spec, None
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
        for relay, answer in zip(self.relays, self._gather(refs, [None] * len(refs)), strict=True):
            relay.answers.append(answer)
        return self._relayed(self.sync.reset(seed=seed, options=options))

    def step(self, actions):
        """Send each actor its envs' actions; the learner's SyncVectorEnv then steps the relays,
        which hand back the actors' answers, in env order."""
        chunks = [actions[block[0] : block[-1] + 1] for block in self.blocks]
        refs = [actor.step.remote(chunk) for actor, chunk in zip(self.actors, chunks, strict=True)]
        rows = self._gather(refs, chunks)
        for j, chunk in enumerate(chunks):
            self._actions[j].append(chunk)
        for relay, (step, reset) in zip(self.relays, rows, strict=True):
            relay.answers.extend([step] if reset is None else [step, reset])
        return self._relayed(self.sync.step(actions))

    def _relayed(self, result):
        """`result`, after checking that the SyncVectorEnv asked for every answer (a wrapper
        that changed an episode's end would desynchronise the two sides)."""
        if any(relay.answers for relay in self.relays):
            raise BellmanError("a wrapper changed where an episode ends: not possible on Ray")
        return result

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
        self.sync.close()
