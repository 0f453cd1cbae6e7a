"""How env throughput scales with Ray actors when the env is slow (a remote simulator).

The env's step sleeps 5 ms (`SlowEnv`: CartPole-sized observations, 2 actions, 200-step
episodes), so an actor stepping one env makes at most ~200 steps/s and uses almost no CPU:
scaling is measurable on 2 cores. For W = 1, 2, 4, 8, 16 actors, one env each, this script
measures env steps/s in two modes and divides by W x the one-actor rate of the same mode
(the target is >= 0.8 up to 16):

    learner acts (bellman's `backend = ray` path, `distributed.rollout.RayVectorEnv`): every
        step, the learner draws the W actions with one batched forward pass of a 4-64-64-2
        policy, sends each actor its action, and waits for all W results (synchronous, as A2C
        and PPO's rollouts on Ray are: bit for bit the single-process run).
    actors act (`ChunkActor`, what Ape-X and IMPALA actors do): each actor runs its own copy of
        the policy for a chunk of `--chunk` steps and returns the chunk's observations, actions
        and rewards; as soon as one returns, the learner puts its latest weights in the object
        store and gives that actor its next chunk (asynchronous: no actor waits for another).
        One round trip per chunk instead of per step.

Ray is started with W_max = 16 logical CPUs on this machine (actors reserve one each; the
sleeping envs use none). Torch is not used: the policy is numpy, one thread.

    python benchmarks/ray_scaling.py [--seconds 4] [--chunk 100] [--chunks 8] [--repeats 3]
                                     [--actors 1,2,4,8,16]

Each cell is the median of `--repeats` runs, the cells interleaved (1, 2, ..., 16, 1, 2, ...) so
that a busy minute on a shared machine falls on all of them.

Writes benchmarks/results/ray_scaling.json (BELLMAN_BENCH_RESULTS=DIR writes it elsewhere).
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np
import ray
from common import header, median, print_table, write_results

from bellman.distributed import cluster
from bellman.distributed.rollout import RayVectorEnv

STEP_SECONDS = 0.005
EPISODE_STEPS = 200


class SlowEnv(gym.Env):
    """A stand-in for a remote simulator: each step sleeps 5 ms, then a random-walk state."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.state = 0, self.np_random.normal(size=4).astype(np.float32)
        return self.state, {}

    def step(self, action):
        time.sleep(STEP_SECONDS)
        self.t += 1
        self.state = self.state + (0.1 if action else -0.1) * self.np_random.normal(size=4)
        self.state = self.state.astype(np.float32)
        return self.state, 1.0, False, self.t >= EPISODE_STEPS, {}


def init_policy(seed: int = 0) -> list[np.ndarray]:
    """Weights of a 4-64-64-2 tanh MLP (PPO's default CartPole policy)."""
    rng = np.random.default_rng(seed)
    sizes = [4, 64, 64, 2]
    pairs = zip(sizes, sizes[1:], strict=False)
    return [rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32) for a, b in pairs]


def act(weights: list[np.ndarray], obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """a ~ softmax(MLP(obs)) for a batch of observations [B, 4] -> [B]."""
    h = obs
    for w in weights[:-1]:
        h = np.tanh(h @ w)
    logits = h @ weights[-1]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (rng.random(len(p))[:, None] > p.cumsum(axis=1)).sum(axis=1).clip(0, 1)


class ChunkActor:
    """One env and a copy of the policy; `run(weights, T)` steps T times and returns the chunk."""

    def __init__(self, seed: int):
        self.env, self.rng = SlowEnv(), np.random.default_rng(seed)
        self.obs, _ = self.env.reset(seed=seed)

    def run(self, weights, steps: int):
        obs, actions, rewards = [], [], []
        for _ in range(steps):
            action = int(act(weights, self.obs[None], self.rng)[0])
            obs.append(self.obs)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            actions.append(action)
            rewards.append(reward)
            self.obs = self.env.reset()[0] if terminated or truncated else next_obs
        return np.array(obs), np.array(actions), np.array(rewards)


def learner_acts(workers: int, seconds: float) -> float:
    """Env steps/s of RayVectorEnv with `workers` actors, one env each, the learner acting."""
    envs = RayVectorEnv(SlowEnv, workers, workers)
    weights, rng = init_policy(), np.random.default_rng(0)
    obs, _ = envs.reset(seed=0)
    for _ in range(5):  # warm up: actors started, first calls done
        obs = envs.step(act(weights, obs, rng))[0]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        obs = envs.step(act(weights, obs, rng))[0]
        steps += workers
    elapsed = time.perf_counter() - start
    envs.close()
    return steps / elapsed


def actors_act(workers: int, chunks: int, chunk: int) -> float:
    """Env steps/s of `workers` ChunkActors that run the policy themselves, `chunk` steps a
    call, `chunks` calls each. Asynchronous, as Ape-X and IMPALA actors are: an actor that
    returns a chunk gets the latest weights and its next call at once, without waiting for the
    others; the clock stops when the last chunk is in."""
    remote = ray.remote(num_cpus=1)(ChunkActor)
    actors = [remote.remote(seed) for seed in range(workers)]
    weights = ray.put(init_policy())
    ray.get([actor.run.remote(weights, 2) for actor in actors])  # warm up
    start = time.perf_counter()
    pending = {actor.run.remote(weights, chunk): (actor, 1) for actor in actors}
    steps = 0
    while pending:
        [ready], _ = ray.wait(list(pending), num_returns=1)
        actor, calls = pending.pop(ready)
        steps += len(ray.get(ready)[2])
        if calls < chunks:
            weights = ray.put(init_policy())  # the learner publishes its latest weights
            pending[actor.run.remote(weights, chunk)] = (actor, calls + 1)
    elapsed = time.perf_counter() - start
    for actor in actors:
        ray.kill(actor)
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per cell")
    parser.add_argument("--chunk", type=int, default=100, help="steps per call, actors-act mode")
    parser.add_argument("--chunks", type=int, default=8, help="calls per actor, actors-act mode")
    parser.add_argument("--repeats", type=int, default=3, help="the median of this many runs")
    parser.add_argument("--actors", default="1,2,4,8,16")
    args = parser.parse_args()
    counts = [int(n) for n in args.actors.split(",")]
    ray.init(address="local", num_cpus=max(counts), include_dashboard=False,
             log_to_driver=False, logging_level="ERROR",
             object_store_memory=cluster.LOCAL_OBJECT_STORE_BYTES)  # fmt: skip
    load = os.getloadavg()[0]
    runs = {"learner acts": {n: [] for n in counts}, "actors act": {n: [] for n in counts}}
    for repeat in range(args.repeats):  # the cells interleaved, so a busy minute hits them all
        for workers in counts:
            runs["learner acts"][workers].append(learner_acts(workers, args.seconds))
            runs["actors act"][workers].append(actors_act(workers, args.chunks, args.chunk))
            done = ", ".join(f"{mode} {run[workers][-1]:.0f}/s" for mode, run in runs.items())
            print(f"repeat {repeat}, {workers} actors: {done}", flush=True)
    rates = {mode: {n: median(run[n]) for n in counts} for mode, run in runs.items()}
    load = (load + os.getloadavg()[0]) / 2
    ray.shutdown()
    rows, record_rows = [], []
    for workers in counts:
        cells = [workers]
        for mode, rate in rates.items():
            scaled = rate[workers] / (workers * rate[counts[0]] / counts[0])
            cells += [f"{rate[workers]:,.0f}", f"{scaled:.2f}"]
            record_rows.append({
                "mode": mode, "actors": workers, "steps_per_s": rate[workers],
                "runs": runs[mode][workers], "ratio_to_n_x_one": scaled,
            })  # fmt: skip
        rows.append(cells)
    print(f"\nenv step sleeps {STEP_SECONDS * 1000:.0f} ms; one env per actor; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs\n")  # fmt: skip
    chunked = f"actors act (async, {args.chunk}-step chunks): steps/s"
    print_table(["actors", "learner acts: steps/s", "/ (N x one)", chunked, "/ (N x one)"], rows)
    record = header(None, "ray", "gymnasium")
    record.update(step_seconds=STEP_SECONDS, chunk=args.chunk, chunks=args.chunks,
                  seconds=args.seconds, repeats=args.repeats, load_average=load,
                  rows=record_rows)  # fmt: skip
    write_results("ray_scaling", record)


if __name__ == "__main__":
    main()
