"""bfloat16 against float32 on a trained Atari network: does `bf16_autocast` act as float32 does?

`bf16_autocast` runs the Nature CNN's convolutions and its fully connected layer in bfloat16
(`bellman.nets.fast.bf16_convolutions`). A short learning run says little about DQN (Breakout
needs far more than the CPU's budget before scores part from random play), so this script asks
the question directly, on the states a trained agent meets: the run's latest checkpoint plays
`--steps` env steps greedily in float32 (an eval env: whole games, no exploration but the
config's eval epsilon), and every state seen goes through the network twice, float32 and
bf16_autocast, with the same weights. Printed:

    DQN: greedy actions that agree, max and mean |Q_bf16 - Q_fp32|, and the mean gap between
         the best and second-best Q (how far apart the values a greedy choice separates are)
    PPO: greedy actions (argmax of the logits) that agree, the mean total variation distance
         between pi_bf16 and pi_fp32, max and mean |V_bf16 - V_fp32|

    python benchmarks/bf16_agreement.py RUN_DIR [--steps 5000]

Writes benchmarks/results/bf16_agreement_ALGO.json (BELLMAN_BENCH_RESULTS=DIR for scratch).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from common import header, print_table, write_results

from bellman import api, checkpoint
from bellman.algos import dqn, onpolicy
from bellman.nets.fast import bf16_convolutions
from bellman.torch_state import load_module


def networks(algo: str, config, env, arrays) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(float32 network, the same weights under bf16_autocast), both in eval mode."""
    if algo == "dqn":
        network = dqn.build_q_network(config, env.observation_space, int(env.action_space.n))
        prefix = "q/"
    else:
        network = onpolicy.build_policy(config, env.observation_space, env.action_space)
        prefix = "policy/"
    load_module(network, arrays, prefix, torch.device("cpu"), "checkpoint")
    bf16 = copy.deepcopy(network)
    bf16_convolutions(bf16)
    return network.eval(), bf16.eval()


def states_seen(env, network, algo: str, steps: int, epsilon: float, seed: int) -> np.ndarray:
    """`steps` observations met by the float32 network's greedy (epsilon-greedy) play."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    seen = []
    for _ in range(steps):
        seen.append(np.asarray(obs))
        with torch.no_grad():
            out = network(torch.as_tensor(seen[-1][None]))
        scores = out if algo == "dqn" else out[0]  # (PPO: epsilon 0, the argmax of the logits)
        action = int(dqn.epsilon_greedy_actions(scores, epsilon, rng)[0])
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(seen)


def compare(algo: str, fp32, bf16, states: np.ndarray) -> dict[str, float]:
    """The agreement figures of the module docstring over `states`, 256 at a time."""
    parts: dict[str, list] = {"agree": [], "abs": [], "gap": [], "tv": [], "vabs": []}
    with torch.no_grad():
        for start in range(0, len(states), 256):
            batch = torch.as_tensor(states[start : start + 256])
            a, b = fp32(batch), bf16(batch)
            if algo == "dqn":
                parts["agree"].append((a.argmax(1) == b.argmax(1)).numpy())
                parts["abs"].append((a - b).abs().flatten().numpy())
                top = a.topk(2, dim=1).values
                parts["gap"].append((top[:, 0] - top[:, 1]).numpy())
            else:
                (la, va), (lb, vb) = a, b
                parts["agree"].append((la.argmax(1) == lb.argmax(1)).numpy())
                tv = 0.5 * (la.softmax(1) - lb.softmax(1)).abs().sum(1)
                parts["tv"].append(tv.numpy())
                parts["vabs"].append((va - vb).abs().numpy())
    joined = {k: np.concatenate(v) for k, v in parts.items() if v}
    if algo == "dqn":
        return {"greedy_agreement": float(joined["agree"].mean()),
                "max_abs_q_difference": float(joined["abs"].max()),
                "mean_abs_q_difference": float(joined["abs"].mean()),
                "mean_best_second_gap": float(joined["gap"].mean())}  # fmt: skip
    return {"greedy_agreement": float(joined["agree"].mean()),
            "mean_total_variation": float(joined["tv"].mean()),
            "max_abs_v_difference": float(joined["vabs"].max()),
            "mean_abs_v_difference": float(joined["vabs"].mean())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec, config = api.load_run_config(args.run_dir)
    if spec.name not in ("dqn", "ppo"):
        parser.error(f"{args.run_dir} is a {spec.name} run; valid: a dqn or ppo run")
    arrays, meta = checkpoint.load(args.run_dir / "checkpoints")
    module = dqn if spec.name == "dqn" else onpolicy
    env = module.make_eval_env(config)
    fp32, bf16 = networks(spec.name, config, env, arrays)
    epsilon = config.eval_epsilon if spec.name == "dqn" else 0.0
    states = states_seen(env, fp32, spec.name, args.steps, epsilon, args.seed)
    figures = compare(spec.name, fp32, bf16, states)
    print(f"{spec.name} on {config.env}, checkpoint at step {meta['step']:,}, "
          f"{len(states):,} states of greedy play")  # fmt: skip
    print_table(["figure", "value"], [[k, f"{v:.4g}"] for k, v in figures.items()])
    write_results(f"bf16_agreement_{spec.name}", {
        **header(1, "torch", "ale_py", "bellman"), "run_dir": str(args.run_dir),
        "env": config.env, "checkpoint_step": meta["step"], "states": len(states), **figures,
    })  # fmt: skip


if __name__ == "__main__":
    main()
