"""TRPO on CartPole-v1 and Pendulum-v1: bellman against sb3-contrib's TRPO, same settings, one run.

Both libraries train with bellman's tuned TRPO configs (src/bellman/configs/trpo-CartPole-v1.toml,
trpo-Pendulum-v1.toml), translated field by field into sb3-contrib's TRPO arguments by
`contrib_arguments`, for several seeds each. Evaluation is that of benchmarks/ppo_cartpole.py
(its helpers are imported): every `--eval-every` env steps, at the end of the iteration that
crosses a multiple, the deterministic policy plays `--eval-episodes` seeded episodes through the
same `bellman.evaluation.evaluate` call with the same seeds for both libraries; evaluation time
is excluded from the clocks.

The settings, for both (CartPole / Pendulum): N = 4 / 8 actors x T = 256 steps, delta (max KL)
0.02 / 0.03, conjugate gradient 10 iterations with damping 0.1, line search of 10 tries
shrinking by 0.8, advantages standardised over the batch, gamma 0.99 / 0.95, GAE lambda 0.95,
the value regressed with Adam (lr 1e-3) for 5 / 10 epochs in minibatches of 64, separate 64x64
tanh MLPs with orthogonal initialisation, log sigma starting at 0 (Pendulum), time-limit
truncation bootstrapped; Pendulum's rewards scaled by the running std of the discounted return
(sb3-contrib: VecNormalize(norm_obs=False)). Differences that remain:
    - Value regression: bellman minimises 0.5 (V - R)^2 with the gradient norm clipped at 0.5,
      sb3-contrib (V - R)^2 without clipping (Adam makes the factor 2 nearly irrelevant).
    - The line search: bellman accepts KL <= delta, sb3-contrib KL < delta.
    - Random streams: each library seeds its own envs, networks and samples, so seed s is not
      the same run in both; the comparison is over seeds.
    - Clocks: bellman's starts before `bellman.train`, sb3-contrib's before its vec env and model
      are built. Both stop at the last evaluation.

Reported per env and library: seeds whose evaluation mean reached the bar (CartPole 475,
Pendulum -250), env steps and seconds until the first such evaluation (median over seeds; a
seed that never gets there counts as infinite), env steps per second and the final evaluation.
Targets (issue 22): bellman's seconds to the bar at most 0.5x sb3-contrib's, steps at parity or
better. Both run with torch.set_num_threads(1); seeds alternate between libraries (ABBA).

    python benchmarks/trpo.py                         # 3 seeds, both envs
    python benchmarks/trpo.py --quick                 # a smoke run
    python benchmarks/trpo.py --stop-at-bar --seeds 0 1 2 3 4

Run it as a script from the repository root; needs `pip install -e .[bench]` (sb3-contrib).
Writes benchmarks/results/trpo.json (trpo_stop_at_bar.json with --stop-at-bar).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict

import torch
from common import header, print_table, processor, today, write_results
from ppo_cartpole import (
    BARS,
    overrides,
    run_interleaved,
    summarise_env,
    train_bellman,
    train_peer,
)

from bellman.algos.trpo import TRPOConfig
from bellman.config import resolve

LIBRARIES = ("bellman", "sb3")  # "sb3" is sb3-contrib's TRPO (ppo_cartpole's table names it)


def bellman_config(env_id: str, seed: int, steps: int | None, args) -> TRPOConfig:
    return resolve(TRPOConfig, "trpo", env_id, None, overrides(env_id, seed, steps, args))[0]


def contrib_arguments(config: TRPOConfig) -> dict:
    """sb3-contrib's TRPO keyword arguments equivalent to a bellman TRPOConfig."""
    from torch import nn

    def annealed(value: float):
        return (lambda progress_remaining: progress_remaining * value) if config.anneal else value

    hidden = list(config.hidden)
    return {
        "learning_rate": annealed(config.learning_rate),
        "n_steps": config.n_steps,
        "batch_size": config.value_minibatch_size,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "cg_max_steps": config.cg_iterations,
        "cg_damping": config.cg_damping,
        "line_search_shrinking_factor": config.line_search_shrink,
        "line_search_max_iter": config.line_search_steps,
        "n_critic_updates": config.value_epochs,
        "normalize_advantage": config.normalize_advantages,
        "target_kl": config.max_kl,
        "sub_sampling_factor": 1,
        "policy_kwargs": {
            "net_arch": {"pi": hidden, "vf": hidden},
            "activation_fn": nn.Tanh,
            "ortho_init": True,
            "log_std_init": config.log_std_init,
        },
    }


def run_bellman(env_id: str, seed: int, steps: int | None, args) -> dict:
    """bellman.train with the tuned TRPO config (`ppo_cartpole.train_bellman`)."""
    return train_bellman(
        "trpo", env_id, seed, steps, args, bellman_config(env_id, seed, steps, args)
    )


def run_contrib(env_id: str, seed: int, steps: int | None, args) -> dict:
    """sb3-contrib's TRPO with the same settings (`ppo_cartpole.train_peer`: the same vec env,
    normalisation, evaluation callback and clocks as SB3's PPO there)."""
    from sb3_contrib import TRPO

    config = bellman_config(env_id, seed, steps, args)

    def make_model(envs):
        return TRPO("MlpPolicy", envs, seed=seed, device="cpu", verbose=0,
                    **contrib_arguments(config))  # fmt: skip

    return train_peer(env_id, seed, args, config, make_model)


RUNNERS = {"bellman": run_bellman, "sb3": run_contrib}


def print_summary(summaries: dict[str, dict], args) -> None:
    print(
        f"\nTRPO, {len(args.seeds)} seeds, evaluation every {args.eval_every} env steps on "
        f"{args.eval_episodes} episodes, CPU, torch {torch.__version__}, 1 thread in both "
        f"libraries, {processor()}, {today()}"
    )
    rows = []
    for env_id, summary in summaries.items():
        for library, name in (("bellman", "bellman"), ("sb3", "sb3-contrib")):
            if library in summary:
                row = summary[library]
                rows.append([
                    env_id, name, f"{BARS[env_id]:g}", f"{row['reached']}/{row['seeds']}",
                    f"{row['median_steps_to_bar']:,.0f}" if math.isfinite(
                        row["median_steps_to_bar"]) else "inf",
                    f"{row['median_seconds_to_bar']:.1f}",
                    f"{row['median_steps_per_second']:,.0f}", f"{row['median_final_eval']:.1f}",
                ])  # fmt: skip
    columns = ["env", "library", "bar", "seeds reaching bar", "median env steps to bar",
               "median seconds to bar", "median env steps/s", "median final eval"]  # fmt: skip
    print_table(columns, rows)
    for env_id, summary in summaries.items():
        if "ratios" in summary:
            r = summary["ratios"]
            print(
                f"{env_id} bellman / sb3-contrib: env steps to bar x{r['steps_to_bar']:.2f} "
                f"(target <= 1), seconds to bar x{r['seconds_to_bar']:.2f} (target <= 0.5), "
                f"env steps/s x{r['steps_per_second']:.2f}"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(BARS), choices=list(BARS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="env steps per run")
    parser.add_argument("--eval-every", type=int, default=4096)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    parser.add_argument(
        "--stop-at-bar",
        action="store_true",
        help="end CartPole runs at the first evaluation at or above the bar",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: seed 0, 4,096 steps")
    args = parser.parse_args()  # fmt: skip
    if args.quick:
        args.seeds, args.steps, args.eval_episodes = [0], 4096, 2
    if args.eval_every < 1:
        parser.error("--eval-every must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    for library in args.libraries:  # untimed warm-up: imports and first calls off the clocks
        RUNNERS[library]("CartPole-v1", 0, 1024, args)
    started = time.perf_counter()
    runs = run_interleaved(RUNNERS, args, started)
    summaries = {env_id: summarise_env(by_library, len(args.seeds)) for env_id, by_library in
                 runs.items()}  # fmt: skip
    print_summary(summaries, args)
    record = {
        **header(1, "torch", "numpy", "gymnasium", "stable_baselines3", "sb3_contrib", "bellman"),
        "args": vars(args),
        "bars": BARS,
        "bellman_configs": {env: asdict(bellman_config(env, 0, args.steps, args)) for env in runs},
        "sb3_contrib_arguments": {
            env: contrib_arguments(bellman_config(env, 0, args.steps, args)) for env in runs
        },
        "summary": summaries,
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }
    write_results("trpo_stop_at_bar" if args.stop_at_bar else "trpo", record, default=_readable)


def _readable(value) -> str:
    """Schedules (lambdas) and classes as readable text."""
    if callable(value) and getattr(value, "__name__", "") == "<lambda>":
        return f"linear schedule from {value(1.0):g} to 0"
    return getattr(value, "__name__", str(value))


if __name__ == "__main__":
    main()
