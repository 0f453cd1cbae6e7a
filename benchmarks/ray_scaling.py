"""How env throughput scales with Ray actors when the env is slow (a remote simulator).

The env's step sleeps 5 ms (`SlowEnv`: CartPole-sized observations, 2 actions, 200-step
episodes), so an actor stepping one env makes at most ~200 steps/s and uses almost no CPU:
scaling is measurable on 2 cores. For W = 1, 2, 4, 8, 16 actors, one env each, this script
measures the env steps/s of PPO's rollouts (`onpolicy.run_policy`, T = `--steps` steps a
rollout, the CartPole-sized 4-64-64-2 network of PPO's defaults) with `backend = ray` in its two
`acting` modes, and divides by W x the one-actor rate of the same mode (target: >= 0.8 up to 16):

    acting = learner (`distributed.rollout.RayVectorEnv`): every step, the learner draws the W
        actions with one batched forward pass, sends each actor its action and waits for all W
        results: one round trip a step (bit for bit the single-process run).
    acting = actors (`distributed.rollout.RayActingEnv`): theta goes to the actors through the
        object store, each actor runs its own copy of pi_theta for the T steps and returns the
        rollout: one round trip a rollout (synchronous: the learner waits for all W).

Ray is started with W_max = 16 logical CPUs on this machine (actors reserve one each; the
sleeping envs use none). Torch runs on one thread.

    python benchmarks/ray_scaling.py [--steps 128] [--iterations 4] [--repeats 3]
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

from bellman.algos.onpolicy import acting_learner, rollout_storage, run_policy
from bellman.algos.ppo import PPOConfig
from bellman.distributed import cluster
from bellman.distributed.rollout import Acting, RayActingEnv, RayVectorEnv

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


class NoRun:
    """What `run_policy` logs finished episodes to; the benchmark keeps none."""

    def log_episode(self, step: int, episode_return: float, length: int) -> None:
        pass


def rollout_rate(acting: str, workers: int, steps: int, iterations: int) -> float:
    """Env steps/s of `iterations` PPO rollouts of `steps` steps on `workers` actors, one
    SlowEnv each, through bellman's own path (`onpolicy.run_policy` with `acting`): the
    CartPole-sized 4-64-64-2 policy and value of PPO's defaults, on the speed path; no update
    between rollouts (acting throughput alone), but with acting = actors theta goes to the
    actors every rollout, as in training."""
    config = PPOConfig(env="CartPole-v1", n_envs=workers, workers=workers, n_steps=steps,
                       minibatch_size=steps, backend="ray", acting=acting)  # fmt: skip
    if acting == "actors":
        envs = RayActingEnv(SlowEnv, config, Acting(acting_learner, rollout_storage, run_policy))
    else:
        envs = RayVectorEnv(SlowEnv, workers, workers)
    learner = acting_learner(config, envs)
    rollout = rollout_storage(learner, config)
    obs, _ = envs.reset(seed=0)
    obs = run_policy(learner, envs, obs, rollout, NoRun())[0]  # warm up: actors busy once
    start = time.perf_counter()
    for _ in range(iterations):
        obs = run_policy(learner, envs, obs, rollout, NoRun())[0]
    elapsed = time.perf_counter() - start
    envs.close()
    return iterations * steps * workers / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=128, help="T: steps of a rollout")
    parser.add_argument("--iterations", type=int, default=4, help="timed rollouts per cell")
    parser.add_argument("--repeats", type=int, default=3, help="the median of this many runs")
    parser.add_argument("--actors", default="1,2,4,8,16")
    args = parser.parse_args()
    counts = [int(n) for n in args.actors.split(",")]
    ray.init(address="local", num_cpus=max(counts), include_dashboard=False,
             log_to_driver=False, logging_level="ERROR",
             object_store_memory=cluster.LOCAL_OBJECT_STORE_BYTES)  # fmt: skip
    load = os.getloadavg()[0]
    modes = {"learner acts": "learner", "actors act": "actors"}
    runs = {mode: {n: [] for n in counts} for mode in modes}
    for repeat in range(args.repeats):  # the cells interleaved, so a busy minute hits them all
        for workers in counts:
            for mode, acting in modes.items():
                rate = rollout_rate(acting, workers, args.steps, args.iterations)
                runs[mode][workers].append(rate)
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
    names = ["acting = learner: steps/s", "/ (N x one)", "acting = actors: steps/s", "/ (N x one)"]
    print_table(["actors", *names], rows)
    record = header(None, "ray", "gymnasium")
    record.update(step_seconds=STEP_SECONDS, rollout_steps=args.steps,
                  iterations=args.iterations, repeats=args.repeats, load_average=load,
                  rows=record_rows)  # fmt: skip
    write_results("ray_scaling", record)


if __name__ == "__main__":
    main()
