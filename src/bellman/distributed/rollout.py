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
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from bellman.distributed.cluster import connect, import_ray
from bellman.errors import BellmanError, ConfigError

#: How often Ray restarts one actor's process before the run gives up.
MAX_RESTARTS = 3


#: How long a lost actor may take to come back (Ray restarts its process; on a busy machine,
#: seconds).
RESTART_SECONDS = 60.0


def until_restored(j: int, attempt: Callable[[], Any]) -> Any:
    """attempt() until it answers (not None) while Ray restarts actor j, at most
    RESTART_SECONDS; a BellmanError after that."""
    ray = import_ray()
    deadline = time.monotonic() + RESTART_SECONDS
    while True:
        try:
            answer = attempt()
            if answer is not None:
                return answer
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            pass
        if time.monotonic() > deadline:
            raise BellmanError(
                f"Ray actor {j} was not back within {RESTART_SECONDS:.0f} s (Ray restarts an "
                f"actor at most {MAX_RESTARTS} times)"
            )
        time.sleep(0.5)


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
        self.actors = [self._new_actor(remote, make_env, len(block)) for block in self.blocks]
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

    def _new_actor(self, remote, make_env: Callable[[], gym.Env], k: int):
        """One Ray actor holding `k` envs (here an `EnvActor`)."""
        return remote(EnvActor).remote(make_env, k)

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

        def attempt():
            if chunk is None:
                return ray.get(actor.reset.remote(self._seeds[j], self._options))
            ray.get(actor.restore.remote(self._seeds[j], self._options, self._actions[j]))
            return ray.get(actor.step.remote(chunk))

        return until_restored(j, attempt)

    def close_extras(self, **kwargs) -> None:
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        self.sync.close()


# ---- acting = actors: each actor runs pi_theta for the whole rollout ------------------------
def statistics(rms_by_name: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{name: (mean, var, count)} of the RunningMeanStd objects that are not None (copies)."""
    return {
        name: (np.array(rms.mean, copy=True), np.array(rms.var, copy=True), float(rms.count))
        for name, rms in rms_by_name.items()
        if rms is not None
    }


def new_moments(base: tuple, now: tuple) -> tuple | None:
    """The (mean, var, count) of the samples a RunningMeanStd took in since it was `base`, when
    it is `now`: the parallel-variance update (Chan et al.) that took it from base to now,
        n = c' - c,  delta = (m' - m) c' / n,  mean = m + delta,
        var = (v' c' - v c - delta^2 c n / c') / n,
    solved for the batch. None when it took in nothing."""
    (mean0, var0, count0), (mean1, var1, count1) = base, now
    n = count1 - count0
    if n < 0.5:
        return None
    delta = (mean1 - mean0) * count1 / n
    var = (var1 * count1 - var0 * count0 - delta**2 * count0 * n / count1) / n
    return mean0 + delta, np.maximum(var, 0.0), n


@dataclass(frozen=True)
class Acting:
    """What an actor needs of the on-policy algorithms to run pi_theta itself, handed down by
    them (`algos.onpolicy.make_train_env` builds it; this floor does not import the
    algorithms):

    Attributes:
        learner: (config, envs) -> the acting half of a learner: pi_theta, its speed path, the
            numpy generator `rng`, the step counter, the normalisation statistics' owners.
        storage: (learner, config) -> the empty rollout of T steps (`onpolicy.rollout_storage`).
        run_policy: (learner, envs, obs, rollout, run) -> T steps of pi_theta
            (`onpolicy.run_policy`: the same loop as on one process).
    """

    learner: Callable
    storage: Callable
    run_policy: Callable


class RolloutActor:
    """The body of one Ray actor with `acting = actors`: `k` envs of `make_env` (normalised with
    this actor's copy of the statistics) in a same-step-autoreset SyncVectorEnv, and a copy of
    pi_theta that runs them for a rollout of T steps with `algos.onpolicy.run_policy` itself.

    Args:
        make_env: one normalised training env (its wrappers share this actor's statistics).
        k: how many envs this actor holds.
        config: the run's ActorCriticConfig (the network's shape, `fast`, `n_steps`).
        acting: the algorithms' pieces (`Acting`).
    """

    def __init__(self, make_env: Callable[[], gym.Env], k: int, config, acting: Acting):
        import dataclasses

        import torch

        from bellman.torch_state import flush_denormals

        torch.set_num_threads(1)
        flush_denormals(True)  # as the learner
        self.envs = gym.vector.SyncVectorEnv(
            [make_env] * k, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        self.config = dataclasses.replace(config, device="cpu", n_envs=k)
        self.acting = acting
        self.learner = acting.learner(self.config, self.envs)
        self.obs = None  # a (re)started actor's envs wait for `reset`
        self.base = self._statistics()

    def pid(self) -> int:
        import os

        return os.getpid()

    def _statistics(self) -> dict:
        return statistics({"obs": self.learner.obs_rms, "return": self.learner.return_rms})

    def _moments(self) -> dict:
        """The statistics' moments of what the envs saw since the learner's last ones were set."""
        now = self._statistics()
        moments = {name: new_moments(self.base[name], now[name]) for name in now}
        self.base = now
        return moments

    def _set_statistics(self, stats: dict) -> None:
        """The statistics set to the learner's (`statistics`), the base of the next moments."""
        for name, rms in (("obs", self.learner.obs_rms), ("return", self.learner.return_rms)):
            if rms is not None:
                mean, var, count = stats[name]
                rms.mean, rms.var, rms.count = mean.copy(), var.copy(), count
        self.base = self._statistics()

    def reset(self, seeds: list, stats: dict) -> tuple[np.ndarray, dict]:
        """s_0 of every env (reset with its seed, normalised with the learner's statistics `stats`;
        the reward normaliser's running returns restart), and the statistics' new moments."""
        self._set_statistics(stats)
        for wrapper in self.learner.reward_normalizers:
            wrapper.discounted_reward = np.array([0.0])
        self.obs, _ = self.envs.reset(seed=seeds)
        return self.obs, self._moments()

    def collect(self, weights: dict, stats: dict, seed: int) -> tuple | None:
        """Set theta and the statistics to the learner's, run pi_theta for T steps drawing from a
        generator seeded with `seed`, and return (the rollout's arrays [T, k, ...], the
        observations to continue from, the finished episodes as (t, return, length), the
        statistics' new moments). None when this actor was restarted and has not been reset."""
        import torch

        if self.obs is None:
            return None
        self.learner.policy.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        self._set_statistics(stats)
        self.learner.rng, self.learner.step = np.random.default_rng(seed), 0
        rollout, episodes = self.acting.storage(self.learner, self.config), EpisodeRecorder(self.k)
        self.obs, _, _ = self.acting.run_policy(
            self.learner, self.envs, self.obs, rollout, episodes
        )
        arrays = {name: getattr(rollout, name) for name in vars(rollout)}
        return arrays, self.obs, episodes.rows, self._moments()

    @property
    def k(self) -> int:
        return self.envs.num_envs


class EpisodeRecorder:
    """What `run_policy` takes for a Run inside an actor: it keeps the finished episodes as
    (t, return, length), t the rollout step they ended in, for the learner to log."""

    def __init__(self, k: int):
        self.k, self.rows = k, []

    def log_episode(self, step: int, episode_return: float, length: int) -> None:
        self.rows.append((step // self.k - 1, episode_return, length))


class RayActingEnv(RayVectorEnv):
    """The N envs of `acting = actors`: W Ray actors (`RolloutActor`), each holding a block of
    envs and a copy of pi_theta, and running it for the whole rollout of T steps: one round trip
    per iteration instead of one per step (what IMPALA's and Ape-X's actors do, here kept
    synchronous, as A2C's and PPO's rollouts are).

    Per iteration (`run_policy`, which `algos.onpolicy.run_policy` hands over to):
        1. theta goes into the object store once; every actor gets it, the normalisation
           statistics and a seed drawn from the learner's generator (saved in checkpoints);
        2. every actor runs pi_theta on its envs for T steps (`onpolicy.run_policy`: the same
           sampling, time-limit bootstrap and autoreset as on one process);
        3. the blocks are put back together in env order, the statistics' new moments merged
           into the learner's (each actor normalised with its own copy during the rollout), the
           finished episodes logged at their global steps.
    A seeded run is reproducible, with or without a checkpoint and `--resume`, but it is not the
    one-process run: the actions are drawn from the actors' generators. A lost actor is
    restarted by Ray, its envs are reset with fresh seeds and its rollout is collected again
    (a `warning:` line says so; from there the run is a different one).

    Args:
        make_env: one normalised training env (`onpolicy.make_train_env`'s).
        config: the run's ActorCriticConfig (`n_envs`, `workers`, `ray_address`, the network).
        acting: the algorithms' pieces the actors run (`Acting`).
        wrap: the normalisation wrappers: the learner's stand-in envs carry the statistics
            that checkpoints save and evaluation reads; they never step.
    """

    acts = True  # onpolicy.run_policy hands the rollout to `run_policy` below

    def __init__(
        self, make_env: Callable[[], gym.Env], config, acting: Acting, wrap: Callable | None = None
    ):
        self.config, self.acting = config, acting
        super().__init__(make_env, config.n_envs, config.workers, config.ray_address, wrap=wrap)

    def _new_actor(self, remote, make_env: Callable[[], gym.Env], k: int):
        return remote(RolloutActor).remote(make_env, k, self.config, self.acting)

    def step(self, actions):
        raise BellmanError("with acting = actors the actors run the policy: call run_policy")

    def _statistics_owners(self) -> dict:
        first = self.envs[0]
        owners = {}
        while isinstance(first, gym.Wrapper):
            if isinstance(first, gym.wrappers.NormalizeObservation):
                owners["obs"] = first.obs_rms
            if isinstance(first, gym.wrappers.NormalizeReward):
                owners["return"] = first.return_rms
            first = first.env
        return owners

    def _merge(self, moments: dict) -> None:
        """Fold an actor's new moments into the learner's statistics."""
        owners = self._statistics_owners()
        for name, batch in moments.items():
            if batch is not None:
                mean, var, count = batch
                owners[name].update_from_moments(mean, var, count)

    def reset(self, *, seed=None, options=None):
        """Reset every env in its actor: `seed` None, an int (env i gets seed + i) or one per
        env. Returns the N first observations (normalised in the actors) and no infos."""
        if seed is None or isinstance(seed, int):
            seed = [None if seed is None else seed + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"{len(seed)} seeds for {self.num_envs} envs")
        self._seeds = [[seed[i] for i in block] for block in self.blocks]
        stats = statistics(self._statistics_owners())
        calls = [
            lambda j=j: self.actors[j].reset.remote(self._seeds[j], stats)
            for j in range(len(self.actors))
        ]
        obs = []
        for first, moments in self._answers(calls, "reset"):
            obs.append(first)
            self._merge(moments)
        return np.concatenate(obs), {}

    def run_policy(self, learner, rollout, run):
        """Steps 1-3 of the class docstring; `onpolicy.run_policy`'s returns: (the observations
        to continue from, the rollout as tensors on the learner's device, V(s_T) [N])."""
        import torch

        ray = import_ray()
        weights = ray.put(
            {
                name: value.detach().cpu().numpy()
                for name, value in learner.policy.state_dict().items()
            }
        )
        stats = statistics(self._statistics_owners())
        seeds = learner.rng.integers(2**63, size=len(self.actors))
        calls = [
            lambda j=j: self.actors[j].collect.remote(weights, stats, int(seeds[j]))
            for j in range(len(self.actors))
        ]
        before, n = learner.step, self.num_envs
        obs, episodes = [], []
        for j, (arrays, last_obs, rows, moments) in enumerate(
            self._answers(calls, "collect", learner)
        ):
            block = slice(self.blocks[j][0], self.blocks[j][-1] + 1)
            for name, array in arrays.items():
                getattr(rollout, name)[:, block] = array
            obs.append(last_obs)
            episodes.extend((t, j, episode_return, length) for t, episode_return, length in rows)
            self._merge(moments)
        for t, _, episode_return, length in sorted(episodes, key=lambda row: row[:2]):
            run.log_episode(before + (t + 1) * n, episode_return, length)
        learner.step = before + rollout.rewards.shape[0] * n
        obs = np.concatenate(obs)
        with torch.no_grad():
            return obs, rollout.tensors(learner.device), learner.policy.value(learner.tensor(obs))

    def _answers(self, calls: list, what: str, learner=None) -> list:
        """ray.get of every actor's call; a lost actor (or a restarted one that answers None)
        is reset with fresh seeds and asked again (`_recover`)."""
        ray = import_ray()
        lost = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
        refs = [call() for call in calls]
        answers = []
        for j, ref in enumerate(refs):
            try:
                answer, reason = ray.get(ref), "restarted"
            except lost as error:
                answer, reason = None, type(error).__name__
            answers.append(
                answer if answer is not None else self._recover(j, calls[j], what, reason, learner)
            )
        return answers

    def _recover(self, j: int, call, what: str, reason: str, learner):
        """Reset actor j's envs with fresh seeds (from the run's seed and step) and retry."""
        from bellman import seeding

        ray = import_ray()
        block = self.blocks[j]
        print(
            f"warning: Ray actor {j} (envs {block[0]}-{block[-1]}) was lost ({reason}); Ray "
            f"restarts it, its envs are reset with fresh seeds and its {what} is retried (the "
            f"run goes on as a different one from here)",
            file=sys.stderr,
        )
        step = learner.step if learner is not None else 0
        seeds = seeding.boundary_seeds(self.config.seed + 1 + j, step, self.num_envs)

        def attempt():
            if what != "reset":
                stats = statistics(self._statistics_owners())
                answer = self.actors[j].reset.remote([seeds[i] for i in block], stats)
                _, moments = ray.get(answer)
                self._merge(moments)
            return ray.get(call())

        return until_restored(j, attempt)
