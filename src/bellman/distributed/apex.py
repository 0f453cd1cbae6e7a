"""Ape-X DQN: many actors exploring at their own rates, a prioritized replay, one learner.

Horgan et al., "Distributed Prioritized Experience Replay", ICLR 2018. Actors and learner run
apart and share only the replay memory and the network's parameters:

    Algorithm 1: actor
     1. procedure ACTOR(B, T)
     2.     theta_0 <- LEARNER.PARAMETERS()
     3.     s_0 <- ENVIRONMENT.INITIALIZE()
     4.     for t = 1 to T do
     5.         a_t-1 <- pi_theta_t-1(s_t-1)                   epsilon_i-greedy
     6.         (r_t, gamma_t, s_t) <- ENVIRONMENT.STEP(a_t-1)
     7.         LOCALBUFFER.ADD((s_t-1, a_t-1, r_t, gamma_t))
     8.         if LOCALBUFFER.SIZE() >= B then
     9.             tau <- LOCALBUFFER.GET(B)
    10.             p <- COMPUTEPRIORITIES(tau)                  |n-step TD error|, local theta
    11.             REPLAY.ADD(tau, p)
    12.         PERIODICALLY(theta_t <- LEARNER.PARAMETERS())
    Algorithm 2: learner
     1. procedure LEARNER(T)
     2.     theta_0 <- INITIALIZENETWORK()
     3.     for t = 1 to T do
     4.         id, tau <- REPLAY.SAMPLE()                       by priority, across the shards
     5.         l_t <- COMPUTELOSS(tau; theta_t)                 n-step double-Q, Huber
     6.         theta_t+1 <- UPDATEPARAMETERS(l_t; theta_t)
     7.         p <- COMPUTEPRIORITIES()
     8.         REPLAY.SETPRIORITY(id, p)
     9.         PERIODICALLY(REPLAY.REMOVETOOLOWPRIORITIES())

with actor i of N exploring with eps_i = eps^(1 + alpha i / (N - 1)), eps = 0.4, alpha = 7.

Here (`bellman train dqn --set backend=ray --set workers=N`):
    - The actors (`ApexActor`) and the replay shards (`ReplayShard`) are Ray actors; the
      learner is the driver process. A shard holds the existing `buffers.ReplayMemory`
      (prioritized, n-step, each frame once), one ring per actor writing to it; so is an
      actor's local buffer (a small ReplayMemory of its own steps, whose n-step transitions it
      prioritizes with its copy of theta: step 10). An actor sends its B raw steps and the TD
      errors of the transitions they completed; the shard replays the steps into its rings and
      sets those priorities (`update_priorities`), so D stores exactly what a one-process DQN
      stores. Step 9 is the rings' own: the oldest data is overwritten first (the paper's
      replay also removes the oldest).
    - Step 5's loss, double Q, dueling head and n-step targets are dqn.py's (`DQNLearner.
      update`, passed in as `DQNPieces`): this module adds the distribution only. The actors'
      priorities use theta for both Q and Q^ (they hold no target network), as in the paper.
    - Step 4 draws a minibatch across the shards in proportion to their priority mass, so
      P(j) = p_j^alpha / sum_k p_k^alpha over all of D, and the importance weights
      (N P(j))^-beta / max w use the whole N; beta anneals to 1 over the run as in dqn.py.
      Up to max(gradient_steps, 32) minibatches come in one round trip to the shards, so
      their priorities are as stale as the paper's prefetched batches.
    - Step 12 from the learner's side: every `publish_every` gradient steps the learner puts
      the weights (safetensors bytes) in Ray's object store once; each actor's next batch of
      steps fetches them when their version is newer than its own.
    - The learner keeps dqn.py's replay ratio instead of training flat out: `gradient_steps`
      updates per `train_frequency` env steps (summed over the actors) after `learning_starts`,
      and Q^ = Q every `target_update_interval` env steps; on a small machine this keeps the
      learner from starving the actors of CPU and makes the sample efficiency comparable.
    - Faults: an actor whose process dies is restarted by Ray (`max_restarts`) and its batch
      is played again (`max_task_retries`) with a fresh episode; the shard closes the episode
      in flight as a truncation. What is in replay stays (the shards are other processes).
    - Checkpoints hold the learner (Q, Q^, Adam, counters, generators) and, when save_replay is
      on, every shard's memory; `--resume` restores both and starts the actors on new episodes.
      The actors run asynchronously, so neither a run nor a resumed run is reproducible bit for
      bit (the local backend is).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from bellman.buffers import ReplayBatch, ReplayMemory
from bellman.errors import NonFiniteError
from bellman.loop import after_iteration, crossed
from bellman.schedules import make_schedule
from bellman.torch_state import flush_denormals, load_weights, weights_bytes

#: The `ApexCluster` of the run in progress in this process, if any (for monitoring and the
#: fault tests, which kill one of its actors).
RUNNING: list = []


@dataclass(frozen=True)
class DQNPieces:
    """What Ape-X takes from dqn.py (passed in: distributed/ sits below the algorithms).

    Attributes:
        make_env: () -> one training env (an actor's).
        build_network: (observation space, number of actions) -> Q(s, .; theta).
        td_target: dqn.td_target (step 12 of DQN: the n-step, double-Q target).
        exploration_draws: dqn.exploration_draws (which states explore, with which action).
        update_target: dqn.update_target (Q^ <- Q).
        eval_policy: (learner) -> the policy evaluated during training.
        make_eval_env: () -> the env of the evaluations during training.
    """

    make_env: Callable
    build_network: Callable
    td_target: Callable
    exploration_draws: Callable
    update_target: Callable
    eval_policy: Callable
    make_eval_env: Callable


def actor_epsilons(n: int, epsilon: float, alpha: float) -> list[float]:
    """eps_i = epsilon^(1 + alpha i / (n - 1)) for actors i = 0 .. n - 1 (one actor: epsilon)."""
    if n == 1:
        return [epsilon]
    return [epsilon ** (1 + alpha * i / (n - 1)) for i in range(n)]


def memory_settings(config, capacity: int, rings: int, obs_space) -> dict[str, Any]:
    """The arguments of a ReplayMemory of `capacity` entries in `rings` rings for this config."""
    frame_stack = config.frame_stack if config.env.startswith("ALE/") else 1
    return dict(
        capacity=capacity, obs_shape=obs_space.shape or (), obs_dtype=obs_space.dtype,
        n_envs=rings, frame_stack=frame_stack, n_step=config.n_step, gamma=config.gamma,
    )  # fmt: skip


# ---- the replay shards --------------------------------------------------------------------
class ReplayShard:
    """Part of D (a Ray actor): a prioritized ReplayMemory with one ring per actor it serves.

    Args:
        memory: `memory_settings` of its ReplayMemory.
        alpha, eps: the prioritization's alpha and the constant added to |delta|.
        seed: of its sampling generator.
    """

    def __init__(self, memory: dict[str, Any], alpha: float, eps: float, seed: int):
        self.memory = ReplayMemory(**memory, prioritized=True, alpha=alpha, eps=eps)
        self.unprioritized = [deque() for _ in range(self.memory.n_envs)]
        self.rng = np.random.default_rng(seed)

    def add(self, ring: int, steps: dict[str, np.ndarray], td_errors: np.ndarray) -> int:
        """Step 11: an actor's batch of raw steps into its ring (new transitions get the
        highest priority, as in prioritized replay) and then the priorities it computed for
        its oldest transitions without one. Returns the number of sampleable transitions."""
        memory, waiting = self.memory, self.unprioritized[ring]
        if "start_obs" in steps:  # the actor (re)started: the episode in flight ends here
            if memory.stored[ring]:
                memory.end_episode(ring)
            memory.start(np.array([ring]), steps["start_obs"][None])
            waiting.clear()
        columns = ("actions", "rewards", "terminated", "truncated", "next_obs", "reset_obs")
        for step in zip(*(steps[name] for name in columns), strict=True):
            waiting.append(ring * memory.ring + (memory.position[ring] - 1) % memory.ring)
            memory.add_step(ring, *step)
        flat = np.array([waiting.popleft() for _ in range(len(td_errors))], dtype=np.int64)
        if len(flat):
            memory.update_priorities(flat, td_errors)
        return len(memory)

    def mass(self) -> tuple[int, float]:
        """(sampleable transitions, total priority mass sum_j p_j^alpha)."""
        return len(self.memory), self.memory.tree.total

    def sample(self, counts: list[int], beta: float) -> list[tuple[ReplayBatch, np.ndarray] | None]:
        """Step 4 here: for each count, that many transitions by priority, with their
        p_j^alpha (the learner computes the importance weights over all the shards)."""
        drawn: list[tuple[ReplayBatch, np.ndarray] | None] = []
        for count in counts:
            batch = self.memory.sample(count, self.rng, beta) if count else None
            drawn.append(None if batch is None else (batch, self.memory.tree.get(batch.indices)))
        return drawn

    def update_priorities(self, flat: np.ndarray, td_errors: np.ndarray) -> None:
        """Step 8: p_j = |delta_j| + eps for the transitions the learner trained on."""
        self.memory.update_priorities(flat, td_errors)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return self.memory.state_arrays()

    def load_state_arrays(self, arrays: dict[str, np.ndarray], where: str) -> int:
        self.memory.load_state_arrays(arrays, where)
        return len(self.memory)

    def size(self) -> int:
        return len(self.memory)


# ---- the actors ---------------------------------------------------------------------------
class ApexActor:
    """One actor of Algorithm 1 (a Ray actor): its env, its copy of theta, its exploration
    rate eps_i and its local buffer; `collect` runs B steps of the loop (steps 5-12).

    Args:
        index: i of eps_i; epsilon: eps_i.
        pieces: `DQNPieces` (the env and the network are built from them here).
        config: the run's DQNConfig.
        shard: the name of its replay shard (a named Ray actor); ring: its ring there.
        seed: the run's seed (its env and generator are seeded from (seed, index, restarts)).
    """

    def __init__(self, index, epsilon, pieces, config, shard, ring, seed):
        import ray

        torch.set_num_threads(1)
        flush_denormals(True)  # as the learner
        self.epsilon, self.pieces, self.config = epsilon, pieces, config
        self.shard, self.ring = ray.get_actor(shard), ring  # (by name: nothing to keep alive)
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        sequence = np.random.SeedSequence([seed, index, int(time.time()) * self.restarted])
        self.rng = np.random.default_rng(sequence)
        self.env = pieces.make_env()
        self.n_actions = int(self.env.action_space.n)
        self.network = pieces.build_network(self.env.observation_space, self.n_actions)  # 2.
        self.network.requires_grad_(False)
        self.version = -1
        batch = config.actor_batch  # the local buffer holds B steps and an n-step window
        capacity = 2 * (batch + config.n_step + config.frame_stack) + 2
        space = self.env.observation_space
        self.local = ReplayMemory(**memory_settings(config, capacity, 1, space))
        self.unprioritized: deque[int] = deque()
        obs, _ = self.env.reset(seed=int(sequence.generate_state(1)[0]))  # 3. s_0
        self.local.start(np.array([0]), obs[None])
        self.obs, self.start_obs = obs, obs

    def pid(self) -> int:
        return os.getpid()

    def collect(self, weights: list, version: int) -> tuple[int, list[tuple[float, int]], bool]:
        """B steps of Algorithm 1 with the weights of `version` (`weights` holds the object
        reference, fetched only when the version is newer than this actor's).

        Returns:
            (env steps sent to replay, the (return, length) of the episodes that ended,
            whether this actor is a restarted one reporting for the first time).
        """
        import ray

        if version != self.version:  # 12. PERIODICALLY(theta <- LEARNER.PARAMETERS())
            load_weights(self.network, ray.get(weights[0]))
            self.version = version
        steps = {name: [] for name in ("actions", "rewards", "terminated", "truncated",
                                       "next_obs", "reset_obs")}  # fmt: skip
        episodes = []
        for _ in range(self.config.actor_batch):  # 4. for t = 1 to T (B of them)
            action = self._act(self.obs)  # 5. a_t-1, eps_i-greedy
            next_obs, reward, terminated, truncated, info = self.env.step(action)  # 6.
            reset_obs = next_obs
            if terminated or truncated:
                reset_obs, _ = self.env.reset()
                if "episode" in info:
                    episodes.append((float(info["episode"]["r"]), int(info["episode"]["l"])))
            memory = self.local  # 7. LOCALBUFFER.ADD((s_t-1, a_t-1, r_t, gamma_t))
            self.unprioritized.append((memory.position[0] - 1) % memory.ring)
            memory.add_step(0, action, reward, terminated, truncated, next_obs, reset_obs)
            for name, value in zip(steps, (action, reward, terminated, truncated, next_obs,
                                           reset_obs), strict=True):  # fmt: skip
                steps[name].append(value)
            self.obs = reset_obs
        # 8.-9. the local buffer holds B steps: send them, 10. with the priorities of the
        # transitions whose n-step window they completed, 11. REPLAY.ADD(tau, p)
        td_errors = self._priorities()
        batch = {name: np.asarray(values) for name, values in steps.items()}
        if self.start_obs is not None:
            batch["start_obs"] = self.start_obs
            self.start_obs = None
        ray.get(self.shard.add.remote(self.ring, batch, td_errors))
        restarted, self.restarted = self.restarted, False
        return self.config.actor_batch, episodes, restarted

    def _act(self, obs: np.ndarray) -> int:
        """Step 5: a random action with probability eps_i, else argmax_a Q(s, a; theta)."""
        explore, random_action = self.pieces.exploration_draws(1, self.n_actions, self.epsilon,
                                                               self.rng)  # fmt: skip
        if explore[0]:
            return int(random_action[0])
        with torch.no_grad():
            return int(self.network(torch.as_tensor(np.asarray(obs)[None])).argmax(dim=1)[0])

    def _priorities(self) -> np.ndarray:
        """Step 10: delta_j = G_j + gamma^k max Q(s_j+k) - Q(s_j, a_j) with this actor's theta,
        for the oldest transitions of the local buffer whose n-step window is complete."""
        memory, ready = self.local, []
        while self.unprioritized and memory.valid[0, self.unprioritized[0]]:
            ready.append(self.unprioritized.popleft())
        if not ready:
            return np.zeros(0, dtype=np.float32)
        batch = memory.transitions(np.array(ready, dtype=np.int64))
        with torch.no_grad():
            q = self.network(torch.as_tensor(batch.obs))
            next_q = self.network(torch.as_tensor(batch.next_obs))
            double = next_q if self.config.double_dqn else None
            targets = self.pieces.td_target(
                torch.as_tensor(batch.returns), torch.as_tensor(batch.discounts), next_q, double
            )
            taken = q.gather(1, torch.as_tensor(batch.actions).unsqueeze(1)).squeeze(1)
        return (targets - taken).numpy()


# ---- the learner --------------------------------------------------------------------------
class ApexCluster:
    """The Ray side of a run: the shards, the actors, the published weights and the batches in
    flight. The learner (`train`) drives it.

    Args:
        config: the run's DQNConfig; pieces: `DQNPieces`; obs_space: one observation's space.
    """

    def __init__(self, config, pieces: DQNPieces, obs_space):
        import ray

        n = config.workers or config.n_envs
        shards = min(config.replay_shards, n)
        options = dict(max_restarts=-1, max_task_retries=-1)
        shard_class = ray.remote(num_cpus=0, **options)(ReplayShard)
        names = [f"bellman-apex-shard-{s}-{uuid.uuid4().hex}" for s in range(shards)]
        actor_class = ray.remote(num_cpus=1, **options)(ApexActor)
        rings = [len(range(s, n, shards)) for s in range(shards)]
        self.shards = [
            shard_class.options(name=names[s]).remote(
                memory_settings(config, config.buffer_size // shards, rings[s], obs_space),
                config.priority_alpha, config.priority_eps, [config.seed, n + s],
            )
            for s in range(shards)
        ]  # fmt: skip
        self.epsilons = actor_epsilons(n, config.apex_epsilon, config.apex_alpha)
        self.actors = [
            actor_class.remote(i, self.epsilons[i], pieces, config, names[i % shards],
                               i // shards, config.seed)
            for i in range(n)
        ]  # fmt: skip
        RUNNING[:] = [self]
        self.in_flight: dict[Any, int] = {}
        self.version, self.weights = -1, None
        self.restarts = 0

    def publish(self, network: torch.nn.Module) -> None:
        """Step 12 (learner's side): the weights in the object store, once per version."""
        import ray

        self.version += 1
        self.weights = ray.put(weights_bytes(network))

    def gather(self, block: bool) -> tuple[int, list[tuple[float, int]]]:
        """The actors' finished batches (waiting for one when `block`), each actor sent on with
        the newest weights. Returns (env steps, ended episodes)."""
        import ray

        for i, actor in enumerate(self.actors):
            if i not in self.in_flight.values():
                self.in_flight[actor.collect.remote([self.weights], self.version)] = i
        done, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=None if block else 0)
        steps, episodes = 0, []
        for reference in done:
            i = self.in_flight.pop(reference)
            sent, ended, restarted = ray.get(reference)
            steps, episodes = steps + sent, episodes + ended
            self.restarts += restarted
            self.in_flight[self.actors[i].collect.remote([self.weights], self.version)] = i
        return steps, episodes

    def sample(self, minibatches: int, batch_size: int, beta: float, rng) -> list:
        """Step 4: `minibatches` minibatches drawn across the shards in proportion to their
        priority mass, each with importance weights over all of D. Returns a list of
        (ReplayBatch, [(shard, its rows)])."""
        import ray

        masses = ray.get([shard.mass.remote() for shard in self.shards])
        sizes = np.array([m[0] for m in masses])
        totals = np.array([m[1] for m in masses])
        if totals.sum() <= 0:  # no complete transition anywhere yet: nothing to draw
            return []
        counts = rng.multinomial(batch_size, totals / totals.sum(), size=minibatches)  # [M, S]
        drawn = ray.get([shard.sample.remote(counts[:, s].tolist(), beta)
                         for s, shard in enumerate(self.shards)])  # fmt: skip
        batches = []
        for m in range(minibatches):
            parts = [(s, drawn[s][m]) for s in range(len(self.shards)) if drawn[s][m] is not None]
            batch = ReplayBatch(**{
                f.name: np.concatenate([getattr(part[0], f.name) for _, part in parts])
                for f in fields(ReplayBatch)
            })  # fmt: skip
            leaves = np.concatenate([part[1] for _, part in parts])
            weights = (sizes.sum() * leaves / totals.sum()) ** (-beta)
            batch.weights = (weights / weights.max()).astype(np.float32)
            rows = [(s, len(part[1])) for s, part in parts]
            batches.append((batch, rows))
        return batches

    def set_priorities(self, batch: ReplayBatch, rows, td_errors: np.ndarray) -> None:
        """Step 8: the new priorities to the shards the transitions came from."""
        start = 0
        for s, count in rows:
            part = slice(start, start + count)
            self.shards[s].update_priorities.remote(batch.indices[part], td_errors[part])
            start += count

    def replay_size(self) -> int:
        import ray

        return sum(ray.get([shard.size.remote() for shard in self.shards]))

    def replay_arrays(self) -> dict[str, np.ndarray]:
        """Every shard's memory, as `shardS/replay/...` arrays."""
        import ray

        shards = ray.get([shard.state_arrays.remote() for shard in self.shards])
        return {f"shard{s}/{k}": v for s, arrays in enumerate(shards) for k, v in arrays.items()}

    def load_replay(self, arrays: dict[str, np.ndarray], where: str) -> None:
        import ray

        ray.get([
            shard.load_state_arrays.remote(
                {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"shard{s}/")},
                where,
            )
            for s, shard in enumerate(self.shards)
        ])  # fmt: skip

    def close(self) -> None:
        """End the actors and shards, once the actors' last batches are in (a batch is a few
        dozen env steps: killing an actor amid one would make Ray retry it, and say so)."""
        import ray

        ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=30)
        for handle in [*self.actors, *self.shards]:
            ray.kill(handle)
        RUNNING.clear()


def train(config, envs, run, learner, pieces: DQNPieces):
    """Ape-X DQN for `config.steps` env steps (summed over the actors); see the module
    docstring. `learner` is dqn.py's DQNLearner without a replay memory of its own."""
    from bellman.distributed.cluster import connect
    from bellman.evaluation import TrainingEvaluation

    n = config.workers or config.n_envs
    connect(config.ray_address, n)
    restored = run.restored
    if restored is not None:
        arrays, meta = restored
        replay = {k: v for k, v in arrays.items() if k.startswith("shard")}
        learner.restore({k: v for k, v in arrays.items() if k not in replay}, meta)
    beta = make_schedule("linear", config.priority_beta, 1.0, 1.0, config.steps)
    evaluation = TrainingEvaluation(config, pieces.make_eval_env)
    cluster = ApexCluster(config, pieces, envs.single_observation_space)
    envs.close()
    try:
        if restored is not None and replay:
            cluster.load_replay(replay, f"checkpoint step-{meta['step']}")
        _learn(config, run, learner, pieces, cluster, beta, evaluation)
    finally:
        cluster.close()
        evaluation.close()
    return learner


def _learn(config, run, learner, pieces: DQNPieces, cluster: ApexCluster, beta, evaluation):
    """Algorithm 2 in the driver while Algorithm 1 runs in the actors, until `config.steps`."""
    losses: list[float] = []
    q_means: list[float] = []
    owed = 0  # gradient steps the replay ratio allows that the learner has not taken yet
    starved = False  # the last draw found no complete transition in the shards
    restored = run.restored
    refilled = restored is not None and not any(k.startswith("shard") for k in restored[0])
    warm_until = learner.step + config.learning_starts if refilled else config.learning_starts

    def log(columns: dict[str, float]) -> None:
        run.log(
            learner.step, loss=float(np.mean(losses)) if losses else math.nan,
            q_mean=float(np.mean(q_means)) if q_means else math.nan, updates=learner.updates,
            replay_size=cluster.replay_size(), actor_restarts=cluster.restarts,
            priority_beta=beta(learner.step), **columns,
        )  # fmt: skip
        losses.clear()
        q_means.clear()

    def save() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, state = learner.checkpoint()  # Q, Q^, Adam, counters, generators
        if config.save_replay:
            arrays.update(cluster.replay_arrays())  # and D, shard by shard
        return arrays, state

    cluster.publish(learner.q_network)  # 2. theta_0, for the actors' step 2
    with run.session(start_step=learner.step):
        while learner.step < config.steps:
            before = learner.step
            # Algorithm 1's batches (4.-11.), waiting for one when there is nothing to train on
            steps, episodes = cluster.gather(block=owed == 0 or starved)
            learner.step += steps
            for episode_return, length in episodes:
                run.log_episode(learner.step, episode_return, length)
            if learner.step >= warm_until:  # dqn.py's replay ratio
                rounds = crossed(before, learner.step, config.train_frequency)
                owed += rounds * config.gradient_steps
            if owed:
                # up to 32 minibatches per draw (or a round's gradient_steps): fewer round
                # trips; their priorities are as stale as the paper's prefetched batches'
                minibatches = min(owed, max(config.gradient_steps, 32))
                drawn = cluster.sample(minibatches, config.batch_size, beta(learner.step),
                                       learner.rng)  # 4. id, tau <- REPLAY.SAMPLE()  # fmt: skip
                for batch, rows in drawn:
                    loss, q_mean, td_errors = learner.update(batch)  # 5.-7. l_t, theta_t+1, p
                    cluster.set_priorities(batch, rows, td_errors)  # 8. REPLAY.SETPRIORITY
                    losses.append(loss)
                    q_means.append(q_mean)
                    if learner.updates % config.publish_every == 0:
                        cluster.publish(learner.q_network)  # (Algorithm 1's step 12)
                owed, starved = owed - len(drawn), not drawn
                if losses and not math.isfinite(losses[-1]):
                    raise NonFiniteError(f"loss is {losses[-1]} at step {learner.step}")
            if crossed(before, learner.step, config.target_update_interval):  # Q^ = Q
                pieces.update_target(learner.target_network, learner.q_network, config.tau)
            if after_iteration(
                run, learner.step, before, save=save, log=log, evaluation=evaluation,
                policy=lambda: pieces.eval_policy(learner),
            ):  # fmt: skip
                break
