"""MuZero on CartPole-v1: evaluation return after a budget of env steps, median over seeds, and
how well the learned model predicts the real env.

Each seed trains `bellman train muzero --env CartPole-v1` with the shipped config
(src/bellman/configs/muzero-CartPole-v1.toml) for `--steps` env steps (an iteration finishes
its episodes, so a run may end a little past the budget), then the trained agent (search over
its model with `eval_simulations`, the most visited action) plays `--eval-episodes` episodes
from seeds it never trained on (10_000 + i). Target (issue 19): 500 on 20 unseen episodes within
50,000 env steps, median of 5 seeds.

The model diagnostic: on the evaluation episodes' real trajectories, from every position t the
model is unrolled k = 1..K steps along the actions really played (s^0 = h(o_t), r^k, s^k =
g(s^{k-1}, a_{t+k-1})) and compared with the real env: the mean absolute error of the predicted
reward r^k against the real reward (1 while the pole stands, 0 past the end), and of the
predicted value v^k against the real discounted return from t + k (truncated at the episode's
end, so positions near a 500-step cut see a shorter return than the model predicts; the table
says how many positions were at least 100 steps before the end, whose returns are within
0.997^100 = 74% of an endless one, and reports the value error on those).

    python benchmarks/muzero_cartpole.py                  # 5 seeds, 50k steps each
    python benchmarks/muzero_cartpole.py --quick          # a smoke run, 1 seed, 2k steps

Writes benchmarks/results/muzero_cartpole.json (set BELLMAN_BENCH_RESULTS=DIR for scratch).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch

from bellman import api, checkpoint
from bellman.zero import muzero


def model_errors(run_dir: Path, episodes: int, unroll: int) -> dict:
    """The learned model's k-step reward and value errors on the agent's own real episodes."""
    _, config = api.load_run_config(run_dir)
    arrays, _ = checkpoint.load(run_dir / "checkpoints")
    env = muzero.make_eval_env(config)
    network = muzero.load_network(arrays, config, env)
    act = muzero.agent_act(config, env, network, config.eval_simulations)
    reward_errors = [[] for _ in range(unroll)]
    value_errors = [[] for _ in range(unroll)]
    far_errors = [[] for _ in range(unroll)]
    for episode in range(episodes):
        obs, _ = env.reset(seed=20_000 + episode)
        observations, actions, rewards = [], [], []
        done = False
        while not done:
            action = act(obs)
            observations.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            done = terminated or truncated
        length = len(actions)
        returns = np.zeros(length + unroll + 1)
        for t in range(length - 1, -1, -1):
            returns[t] = rewards[t] + config.discount * returns[t + 1]
        padded = actions + [0] * unroll
        with torch.inference_mode():
            hidden, _, _, _ = network.initial_inference(torch.as_tensor(np.stack(observations)))
            for k in range(1, unroll + 1):
                moves = torch.as_tensor([padded[t + k - 1] for t in range(length)])
                hidden, reward, _, value = network.recurrent_inference(hidden, moves)
                predicted_r = network.reward_scalar(reward).numpy()
                predicted_v = network.scalar(value).numpy()
                for t in range(length):
                    real_r = rewards[t + k - 1] if t + k - 1 < length else 0.0
                    reward_errors[k - 1].append(abs(predicted_r[t] - real_r))
                    error = abs(predicted_v[t] - returns[t + k])
                    value_errors[k - 1].append(error)
                    if t + k + 100 <= length:
                        far_errors[k - 1].append(error)
    env.close()
    return {
        "reward_mae": [float(np.mean(e)) for e in reward_errors],
        "value_mae": [float(np.mean(e)) for e in value_errors],
        "value_mae_far_from_end": [float(np.mean(e)) if e else math.nan for e in far_errors],
        "positions_far_from_end": [len(e) for e in far_errors],
    }


def run_seed(seed: int, steps: int, eval_episodes: int, root: Path, overrides: list[str]):
    run_dir = root / f"seed{seed}"
    started = time.perf_counter()
    api.train("muzero", "CartPole-v1", run_dir=run_dir, quiet=True,
              overrides=[f"seed={seed}", f"steps={steps}", *overrides])  # fmt: skip
    seconds = time.perf_counter() - started
    _, meta = checkpoint.load(run_dir / "checkpoints")
    report = api.evaluate_run(run_dir, episodes=eval_episodes, seed=10_000)
    errors = model_errors(run_dir, episodes=3, unroll=5)
    return {
        "seed": seed, "env_steps": meta["step"], "seconds": round(seconds, 1),
        "eval_mean": report["mean"], "eval_min": report["min"], "eval_returns": report["returns"],
        **errors,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2,000 steps, 3 episodes")
    parser.add_argument("--name", default="muzero_cartpole")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.eval_episodes = [0], 2_000, 3
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            row = run_seed(seed, args.steps, args.eval_episodes, Path(root), args.overrides)
            rows.append(row)
            print(f"seed {seed}: {row['env_steps']} env steps, {row['seconds']} s, evaluation "
                  f"{row['eval_mean']:.1f} (min {row['eval_min']:.0f})", flush=True)  # fmt: skip
    print()
    common.print_table(
        ["seed", "env steps", "seconds", "eval mean (20 unseen)", "eval min"],
        [
            [
                r["seed"],
                r["env_steps"],
                r["seconds"],
                f"{r['eval_mean']:.1f}",
                f"{r['eval_min']:.0f}",
            ]
            for r in rows
        ],  # fmt: skip
    )
    median = common.median(r["eval_mean"] for r in rows)
    print(f"\nmedian evaluation over {len(rows)} seeds: {median:.1f} (target 500)\n")
    common.print_table(
        ["seed", "k", "reward MAE", "value MAE", "value MAE (>= 100 steps from the end)"],
        [
            [
                r["seed"],
                k + 1,
                f"{r['reward_mae'][k]:.3f}",
                f"{r['value_mae'][k]:.2f}",
                f"{r['value_mae_far_from_end'][k]:.2f} ({r['positions_far_from_end'][k]})",
            ]
            for r in rows
            for k in range(len(r["reward_mae"]))
        ],  # fmt: skip
    )
    record = {
        **common.header(1, "torch", "gymnasium"), "steps": args.steps, "seeds": args.seeds,
        "eval_episodes": args.eval_episodes, "overrides": args.overrides,
        "median_eval_mean": median, "runs": rows,
        "note": "measured on 2 shared, busy CPU cores",
    }  # fmt: skip
    common.write_results(args.name, record)


if __name__ == "__main__":
    main()
