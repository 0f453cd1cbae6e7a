"""Atari on the CPU, bellman against Stable-Baselines3, in ONE run: raw env steps/s, PPO end to
end, DQN end to end, all on ALE/Breakout-v5 with the same settings for both libraries.

    raw   env steps/s of 8 envs under uniform random actions (`--raw-steps` per env): bellman's
          Atari backend (ale-py's AtariVectorEnv, `env_threads = 0`: one thread per core),
          bellman's gymnasium-wrapper path (a SyncVectorEnv of make_atari_env, the readable
          reference, `atari_backend = gymnasium`), and SB3's make_atari_env + SubprocVecEnv +
          VecFrameStack(4). All three: frame skip 4, max-pool, 84x84 grey, 4 frames, 30 no-ops,
          life loss terminal, clipped rewards, sticky actions 0.25.
    ppo   PPO end to end with the paper's Atari settings (Schulman et al. 2017, Table 5: 8 envs,
          T = 128, 3 epochs, minibatch 256, lr 2.5e-4, clip 0.1, c1 = 1, c2 = 0.01): bellman's
          shipped ppo-ALE-Breakout-v5.toml against SB3's PPO("CnnPolicy") on make_atari_env +
          SubprocVecEnv. The clock runs from the end of the first iteration to the end of the
          last (`--ppo-iterations` timed iterations of 1,024 env steps). On a CPU both are bound
          by the Nature CNN: ~19 MFLOP per forward pass, so ~190 MFLOP per env step for PPO (one
          forward to act, 3 epochs of forward + backward ~ 3 forwards each). The table prints the
          GFLOP/s each library reaches that way and its share of the ceiling: the env steps/s of
          the same network work alone (acting forwards and the 3 epochs of minibatch steps, torch,
          no env), measured in the same run. A fourth run is bellman with `env_overlap` (the
          policy acting for one group of 4 games while the other 4 step in their threads).
    dqn   DQN end to end with Nature's settings (below) against SB3's DQN("CnnPolicy"), and
          the ceiling as for PPO: the env steps/s of DQN's network work alone (greedy acting
          forwards and a gradient step every 4 env steps, no env, no replay memory).

PPO and DQN each have one more bellman run, "bellman, bf16": the same settings with
`bf16_autocast = true` (the Nature CNN in bfloat16, the heads and all training state float32).
SB3 has no such switch, so that row is a precision SB3 does not run; the float32 rows are the
like-for-like comparison, and the table prints both ratios.

DQN: both libraries run their *full* DQN training loop with one torch thread: epsilon-greedy
acting with the Nature CNN, storing in and sampling from a replay memory, and a gradient step
(batch 32, Adam 1e-4, Huber loss, gradient norm 10) every 4 env steps once `--warmup` env steps
are in the memory. bellman: bellman.train("dqn", ...) (its public API, on its Atari backend); the
clock is the `wall_time` column of the run's metrics.csv, from the row at step W (the end of
warm-up) to the row at step W + N. SB3: DQN("CnnPolicy") on make_atari_env(..., env_kwargs=
{"frameskip": 1}) + VecFrameStack(n_stack=4) (AtariWrapper frame-skips itself); the clock is read
by a callback at the same env steps. Replay capacity `--buffer`, target update every 10,000 env
steps, gamma 0.99, Adam epsilon 1.5e-4, epsilon fixed at `--epsilon` (0.1) in the timed phase.

Runs alternate between libraries (ABBA over `--repeats`), so load on the machine hits both alike;
tables show the median over repeats. Short budgets by default (the machine is 2 shared cores):

    python benchmarks/atari_throughput.py [--raw-steps 500] [--ppo-iterations 4]
        [--steps 3000] [--warmup 1000] [--repeats 2] [--only raw,ppo,dqn]

Run it from the repository root. Writes benchmarks/results/atari_throughput.json.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import header, median, print_table, ratio, today, write_results

import bellman
from bellman.envs.atari import register_atari

register_atari()  # ALE ids in gymnasium's registry, here and in forked SB3 workers
ENV_ID = "ALE/Breakout-v5"
# The settings both libraries share (bellman's config field names).
SHARED = {
    "batch_size": 32,
    "train_frequency": 4,
    "gradient_steps": 1,
    "target_update_interval": 10_000,
    "gamma": 0.99,
    "learning_rate": 1e-4,
    "adam_epsilon": 1.5e-4,
    "max_grad_norm": 10.0,
}


def dqn_bellman(seed: int, args, extra: tuple[str, ...] = ()) -> dict:
    warmup, total = args.warmup, args.warmup + args.steps
    overrides = [f"{key}={value}" for key, value in SHARED.items()] + [
        f"seed={seed}",
        f"steps={total}",
        "n_envs=1",
        f"learning_starts={warmup}",
        f"buffer_size={args.buffer}",
        f"epsilon={args.epsilon}",
        f"epsilon_end={args.epsilon}",
        "loss=huber",
        "n_step=1",
        "double_dqn=false",
        "dueling=false",
        "prioritized=false",
        "network=cnn",
        "frame_stack=4",
        "eval_every=0",
        f"log_every={math.gcd(warmup, args.steps)}",  # rows at W and W + N
        f"checkpoint_every={total + 1}",  # only the final one, after the clock stops
        "save_replay=false",
        "device=cpu",
        "torch_threads=1",
        *extra,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        bellman.train("dqn", ENV_ID, overrides=overrides, run_dir=Path(tmp) / "run", quiet=True)
        with open(Path(tmp) / "run" / "metrics.csv", encoding="utf-8") as handle:
            rows = {int(row["step"]): row for row in csv.DictReader(handle)}
    start, end = rows[warmup], rows[total]
    seconds = float(end["wall_time"]) - float(start["wall_time"])
    return {
        "env_steps": total - warmup,
        "gradient_steps": int(end["updates"]) - int(start["updates"]),
        "seconds": seconds,
    }


def dqn_sb3(seed: int, args) -> dict:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    warmup, total = args.warmup, args.warmup + args.steps

    class Clock(BaseCallback):
        """perf_counter and the update count at env steps W and W + N."""

        def __init__(self):
            super().__init__()
            self.marks: dict[int, tuple[float, int]] = {}

        def _on_step(self) -> bool:
            if self.num_timesteps in (warmup, total):
                self.marks[self.num_timesteps] = (time.perf_counter(), self.model._n_updates)
            return True

    envs = make_atari_env(ENV_ID, n_envs=1, seed=seed, env_kwargs={"frameskip": 1})
    envs = VecFrameStack(envs, n_stack=4)
    model = DQN(
        "CnnPolicy",
        envs,
        learning_rate=SHARED["learning_rate"],
        buffer_size=args.buffer,
        learning_starts=warmup,
        batch_size=SHARED["batch_size"],
        gamma=SHARED["gamma"],
        train_freq=SHARED["train_frequency"],
        gradient_steps=SHARED["gradient_steps"],
        target_update_interval=SHARED["target_update_interval"],
        exploration_initial_eps=args.epsilon,
        exploration_final_eps=args.epsilon,
        max_grad_norm=SHARED["max_grad_norm"],
        policy_kwargs={"optimizer_kwargs": {"eps": SHARED["adam_epsilon"]}},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    clock = Clock()
    model.learn(total_timesteps=total, callback=clock)
    (t0, u0), (t1, u1) = clock.marks[warmup], clock.marks[total]
    envs.close()
    del model
    return {"env_steps": total - warmup, "gradient_steps": u1 - u0, "seconds": t1 - t0}


# ---- raw env steps/s ---------------------------------------------------------------------
N_ENVS = 8


def raw_backend(seed: int, args) -> dict:
    from bellman.envs.atari import register_atari
    from bellman.envs.atari_vector import AtariVector

    register_atari()
    envs = AtariVector(ENV_ID, N_ENVS, training=True, env_threads=0)
    return _time_random_steps(envs, seed, args.raw_steps)


def raw_wrapper(seed: int, args) -> dict:
    import gymnasium as gym

    from bellman.envs.atari import make_atari_env

    envs = gym.vector.SyncVectorEnv(
        [lambda: make_atari_env(ENV_ID, training=True)] * N_ENVS,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    return _time_random_steps(envs, seed, args.raw_steps)


def sb3_envs(seed: int):
    """SB3's Atari envs: make_atari_env (AtariWrapper; the v5 env with frameskip 1, since the
    wrapper skips frames itself) in a SubprocVecEnv, 4 frames stacked."""
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecFrameStack

    envs = make_atari_env(
        ENV_ID, n_envs=N_ENVS, seed=seed, env_kwargs={"frameskip": 1}, vec_env_cls=SubprocVecEnv,
        vec_env_kwargs={"start_method": "fork"},  # the workers inherit ale-py's registration
    )  # fmt: skip
    return VecFrameStack(envs, n_stack=4)


def raw_sb3(seed: int, args) -> dict:

    envs = sb3_envs(seed)
    envs.reset()
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(args.raw_steps):
        envs.step(rng.integers(0, 4, N_ENVS))
    seconds = time.perf_counter() - started
    envs.close()
    return {"env_steps": args.raw_steps * N_ENVS, "seconds": seconds}


def _time_random_steps(envs, seed: int, steps: int) -> dict:
    envs.reset(seed=[seed * 100 + e for e in range(N_ENVS)])
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(steps):
        envs.step(rng.integers(0, 4, N_ENVS))
    seconds = time.perf_counter() - started
    envs.close()
    return {"env_steps": steps * N_ENVS, "seconds": seconds}


# ---- PPO end to end ----------------------------------------------------------------------
PPO = {"n_steps": 128, "minibatch_size": 256, "n_epochs": 3, "learning_rate": 2.5e-4,
       "clip_range": 0.1, "vf_coef": 1.0, "ent_coef": 0.01, "gamma": 0.99, "gae_lambda": 0.95,
       "max_grad_norm": 0.5}  # fmt: skip
ITERATION = N_ENVS * PPO["n_steps"]  # env steps per PPO iteration
#: MFLOP of one Nature-CNN forward pass on [4, 84, 84] (conv 8x8/4, 4x4/2, 3x3/1, fc 512), and
#: per PPO env step: one forward to act + 3 epochs x (forward + backward ~ 2 forwards).
CNN_MFLOP = 2 * (32 * 20 * 20 * 4 * 8 * 8 + 64 * 9 * 9 * 32 * 4 * 4 + 64 * 7 * 7 * 64 * 3 * 3
                 + 3136 * 512) / 1e6  # fmt: skip
PPO_MFLOP_PER_STEP = CNN_MFLOP * (1 + 3 * PPO["n_epochs"])


def ppo_bellman(seed: int, args, extra: tuple[str, ...] = ()) -> dict:
    total = ITERATION * (args.ppo_iterations + 1)
    overrides = [f"seed={seed}", f"steps={total}", f"n_envs={N_ENVS}", "eval_every=0",
                 f"log_every={ITERATION}", f"checkpoint_every={total + 1}", "device=cpu",
                 "torch_threads=1", *(f"{k}={v}" for k, v in PPO.items()), *extra]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        bellman.train("ppo", ENV_ID, overrides=overrides, run_dir=Path(tmp) / "run", quiet=True)
        with open(Path(tmp) / "run" / "metrics.csv", encoding="utf-8") as handle:
            rows = {int(row["step"]): row for row in csv.DictReader(handle)}
    seconds = float(rows[total]["wall_time"]) - float(rows[ITERATION]["wall_time"])
    return {"env_steps": total - ITERATION, "seconds": seconds}


def ppo_bellman_overlap(seed: int, args) -> dict:
    """bellman's PPO with `env_overlap`: pi_theta acts for one group of 4 games while the other 4
    step (the same rollout as the synchronous loop)."""
    return ppo_bellman(seed, args, ("env_overlap=true",))


def ppo_bellman_bf16(seed: int, args) -> dict:
    """bellman's PPO with `bf16_autocast`: the Nature CNN in bfloat16 (not SB3's settings: a
    precision SB3 does not offer, shown beside the float32 run)."""
    return ppo_bellman(seed, args, ("bf16_autocast=true",))


def dqn_bellman_bf16(seed: int, args) -> dict:
    """bellman's DQN with `bf16_autocast` (as `ppo_bellman_bf16`)."""
    return dqn_bellman(seed, args, ("bf16_autocast=true",))


def ppo_sb3(seed: int, args) -> dict:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        """perf_counter at the start of every rollout (= the end of the previous iteration)."""

        def __init__(self):
            super().__init__()
            self.starts: list[float] = []

        def _on_rollout_start(self) -> None:
            self.starts.append(time.perf_counter())

        def _on_training_end(self) -> None:
            self.starts.append(time.perf_counter())

        def _on_step(self) -> bool:
            return True

    envs = sb3_envs(seed)
    model = SB3PPO(
        "CnnPolicy", envs, n_steps=PPO["n_steps"], batch_size=PPO["minibatch_size"],
        n_epochs=PPO["n_epochs"], learning_rate=PPO["learning_rate"],
        clip_range=PPO["clip_range"], vf_coef=PPO["vf_coef"], ent_coef=PPO["ent_coef"],
        gamma=PPO["gamma"], gae_lambda=PPO["gae_lambda"], max_grad_norm=PPO["max_grad_norm"],
        seed=seed, device="cpu", verbose=0,
    )  # fmt: skip
    clock = Clock()
    model.learn(total_timesteps=ITERATION * (args.ppo_iterations + 1), callback=clock)
    envs.close()
    return {"env_steps": ITERATION * args.ppo_iterations,
            "seconds": clock.starts[-1] - clock.starts[1]}  # fmt: skip


def ppo_network_ceiling(seed: int, args) -> dict:
    """The env steps/s of PPO's network work alone: per iteration, 128 acting forwards on [8, 4,
    84, 84] and 3 epochs of 4 minibatch steps of 256 (forward, backward, Adam), no env; the
    network as bellman's PPO builds it (channels-last inputs, the default)."""
    import gymnasium as gym

    from bellman.algos import onpolicy
    from bellman.algos.onpolicy import build_policy
    from bellman.algos.ppo import PPOConfig

    torch.manual_seed(seed)
    config = PPOConfig(env=ENV_ID, network="cnn", shared_trunk=True)
    policy = build_policy(config, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
                          gym.spaces.Discrete(4))  # fmt: skip
    onpolicy.speed_switches(policy, config, torch.device("cpu"))
    optimizer = torch.optim.Adam(policy.parameters(), lr=2.5e-4)
    obs = torch.randint(0, 255, (ITERATION, 4, 84, 84), dtype=torch.uint8)
    actions = torch.randint(0, 4, (ITERATION,))
    started = time.perf_counter()
    for _ in range(args.ppo_iterations):
        with torch.no_grad():
            for t in range(PPO["n_steps"]):
                policy.evaluate(obs[t * N_ENVS : (t + 1) * N_ENVS], actions[:N_ENVS])
        for _ in range(PPO["n_epochs"]):
            for k in range(0, ITERATION, PPO["minibatch_size"]):
                log_probs, entropy, values = policy.evaluate(
                    obs[k : k + PPO["minibatch_size"]], actions[k : k + PPO["minibatch_size"]]
                )
                loss = -log_probs.mean() + values.pow(2).mean() - 0.01 * entropy.mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return {"env_steps": ITERATION * args.ppo_iterations,
            "seconds": time.perf_counter() - started}  # fmt: skip


def dqn_network_ceiling(seed: int, args) -> dict:
    """The env steps/s of DQN's network work alone, for `--steps` env steps: a greedy forward on
    [1, 4, 84, 84] for the share 1 - epsilon of them (the explored ones need none) and, every 4
    env steps, one gradient step as bellman's learner takes it (Q^ on 32 next states, Q forward
    and backward on 32 states, the Huber loss, gradient norm 10, fused Adam); no env and no
    replay memory; the network as bellman's DQN builds it (channels-last inputs, the default).
    A few untimed steps come first, as the end-to-end runs' clocks start after warm-up."""
    import gymnasium as gym

    from bellman.algos.dqn import DQNConfig, build_q_network, td_loss, td_target
    from bellman.nets.fast import channels_last_inputs, clip_grad_norm, step_optimizer

    torch.manual_seed(seed)
    config = DQNConfig(env=ENV_ID, network="cnn")
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    q_network, target_network = (build_q_network(config, space, 4) for _ in range(2))
    for network in (q_network, target_network):
        channels_last_inputs(network)
    target_network.requires_grad_(False)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=SHARED["learning_rate"],
                                 eps=SHARED["adam_epsilon"], fused=True)  # fmt: skip
    parameters = list(q_network.parameters())
    size, every = SHARED["batch_size"], SHARED["train_frequency"]
    frames = torch.randint(0, 255, (2 * size, 4, 84, 84), dtype=torch.uint8)
    actions = torch.randint(0, 4, (size, 1))
    greedy_share = round(args.steps * (1 - args.epsilon)) / args.steps
    warm = 4 * every  # untimed: the first calls set up the convolutions' kernels
    acted = 0.0
    for step in range(-warm, args.steps):
        if step == 0:
            started = time.perf_counter()
        acted += greedy_share
        if acted >= 1:
            acted -= 1
            with torch.no_grad():
                q_network(frames[step % size : step % size + 1]).argmax(dim=1)
        if step % every == 0:
            with torch.no_grad():
                targets = td_target(torch.zeros(size), torch.full((size,), 0.99),
                                    target_network(frames[size:]))  # fmt: skip
            q_taken = q_network(frames[:size]).gather(1, actions).squeeze(1)
            loss = td_loss(q_taken, targets, None, "huber")
            for parameter in parameters:
                parameter.grad = None
            loss.backward()
            clip_grad_norm(parameters, SHARED["max_grad_norm"])
            step_optimizer(optimizer)
    return {"env_steps": args.steps, "gradient_steps": -(-args.steps // every),
            "seconds": time.perf_counter() - started}  # fmt: skip


SECTIONS = {
    "raw": {"backend": raw_backend, "wrapper path": raw_wrapper, "sb3": raw_sb3},
    "ppo": {
        "bellman": ppo_bellman,
        "sb3": ppo_sb3,
        "network alone": ppo_network_ceiling,
        "bellman, env_overlap": ppo_bellman_overlap,
        "bellman, bf16": ppo_bellman_bf16,
    },
    "dqn": {
        "bellman": dqn_bellman,
        "sb3": dqn_sb3,
        "network alone": dqn_network_ceiling,
        "bellman, bf16": dqn_bellman_bf16,
    },
}


def measure(section: str, args, started: float) -> dict[str, list[dict]]:
    """Every runner of a section `--repeats` times, in ABBA order; the runs per runner."""
    runners = SECTIONS[section]
    runs: dict[str, list[dict]] = {name: [] for name in runners}
    for repeat in range(args.repeats):
        order = list(runners) if repeat % 2 == 0 else list(runners)[::-1]  # ABBA
        for name in order:
            print(f"[{time.perf_counter() - started:6.0f} s] {section}, repeat "
                  f"{repeat + 1}/{args.repeats}: {name} ...", flush=True)  # fmt: skip
            result = runners[name](args.seed + repeat, args)
            result["env_steps_per_second"] = result["env_steps"] / result["seconds"]
            if "gradient_steps" in result:
                result["gradient_steps_per_second"] = result["gradient_steps"] / result["seconds"]
            runs[name].append({"repeat": repeat, "seed": args.seed + repeat, **result})
            print(f"         {result['env_steps_per_second']:.1f} env steps/s", flush=True)
    return runs


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    return {
        name: {key: median(r[key] for r in rows) for key in rows[0] if key.endswith("per_second")}
        for name, rows in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw-steps", type=int, default=500, help="random steps per env (raw)")
    parser.add_argument("--ppo-iterations", type=int, default=4, help="timed PPO iterations")
    parser.add_argument("--steps", type=int, default=3000, help="timed DQN env steps N")
    parser.add_argument("--warmup", type=int, default=1000, help="DQN learning_starts W")
    parser.add_argument("--buffer", type=int, default=100_000, help="DQN replay capacity")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="raw,ppo,dqn", help="sections to run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    sections = [name for name in args.only.split(",") if name]
    runs = {section: measure(section, args, started) for section in sections}
    summary = {section: summarize(section_runs) for section, section_runs in runs.items()}
    record = {
        **header(torch.get_num_threads(), "torch", "numpy", "gymnasium", "ale_py",
                 "stable_baselines3", "bellman"),
        "env": ENV_ID, "args": vars(args), "dqn_settings": SHARED, "ppo_settings": PPO,
        "ppo_mflop_per_env_step": PPO_MFLOP_PER_STEP, "summary": summary, "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }  # fmt: skip
    machine = record["machine"]
    print(
        f"\n{ENV_ID} on the CPU, torch {torch.__version__} with 1 thread, median of "
        f"{args.repeats}; {today()}, {machine['platform']}, {machine['cpu_count']} CPUs"
    )
    ratios = print_summary(summary, args)
    record["ratios"] = ratios
    write_results("atari_throughput", record)


def print_summary(summary: dict, args) -> dict[str, float]:
    """The three tables and the ratios the issue's targets are stated in."""
    ratios: dict[str, float] = {}
    if "raw" in summary:
        raw = summary["raw"]
        print(f"\nraw env steps/s, {N_ENVS} envs, random actions, {args.raw_steps} steps each")
        wrapper = raw["wrapper path"]["env_steps_per_second"]
        rows = []
        for name, row in raw.items():
            speed = row["env_steps_per_second"]
            rows.append([name, f"{speed:.0f}", f"{ratio(speed, wrapper):.2f}x"])
        print_table(["path", "env steps/s", "/ wrapper path"], rows)
        ratios["raw_backend_over_wrapper"] = ratio(
            raw["backend"]["env_steps_per_second"], raw["wrapper path"]["env_steps_per_second"]
        )
    if "ppo" in summary:
        ppo = summary["ppo"]
        ceiling = ppo["network alone"]["env_steps_per_second"]
        print(
            f"\nPPO end to end, {N_ENVS} envs, Table 5 settings, {args.ppo_iterations} timed "
            f"iterations of {ITERATION} env steps; {PPO_MFLOP_PER_STEP:.0f} MFLOP per env step"
        )
        print_table(
            ["run", "env steps/s", "GFLOP/s", "share of ceiling"],
            [
                [
                    name,
                    f"{row['env_steps_per_second']:.0f}",
                    f"{row['env_steps_per_second'] * PPO_MFLOP_PER_STEP / 1e3:.1f}",
                    f"{row['env_steps_per_second'] / ceiling:.0%}",
                ]
                for name, row in ppo.items()
            ],
        )
        ratios["ppo_bellman_over_sb3"] = ratio(
            ppo["bellman"]["env_steps_per_second"], ppo["sb3"]["env_steps_per_second"]
        )
        ratios["ppo_bf16_over_sb3"] = ratio(
            ppo["bellman, bf16"]["env_steps_per_second"], ppo["sb3"]["env_steps_per_second"]
        )
        ratios["ppo_env_overlap_over_synchronous"] = ratio(
            ppo["bellman, env_overlap"]["env_steps_per_second"],
            ppo["bellman"]["env_steps_per_second"],
        )
    if "dqn" in summary:
        dqn = summary["dqn"]
        print(
            f"\nDQN end to end, 1 env, Nature settings, {args.steps} env steps timed after "
            f"{args.warmup} warm-up"
        )
        ceiling = dqn["network alone"]["env_steps_per_second"]
        print_table(
            ["run", "env steps/s", "gradient steps/s", "share of ceiling"],
            [
                [
                    name,
                    f"{row['env_steps_per_second']:.1f}",
                    f"{row['gradient_steps_per_second']:.1f}",
                    f"{row['env_steps_per_second'] / ceiling:.0%}",
                ]
                for name, row in dqn.items()
            ],
        )
        ratios["dqn_bellman_over_sb3"] = ratio(
            dqn["bellman"]["env_steps_per_second"], dqn["sb3"]["env_steps_per_second"]
        )
        ratios["dqn_bf16_over_sb3"] = ratio(
            dqn["bellman, bf16"]["env_steps_per_second"], dqn["sb3"]["env_steps_per_second"]
        )
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    return ratios


if __name__ == "__main__":
    main()
