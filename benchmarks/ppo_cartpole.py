"""PPO on CartPole-v1 and Pendulum-v1: bellman against Stable-Baselines3, same settings, one run.

Both libraries train with bellman's tuned configs for each env (src/bellman/configs/
ppo-CartPole-v1.toml: RL Baselines3 Zoo's CartPole settings, the ones SB3 is benchmarked with;
ppo-Pendulum-v1.toml: bellman's Pendulum settings), translated field by field into SB3's PPO
arguments by `sb3_arguments`, for several seeds each. Every `--eval-every` env steps (at the
end of the iteration that crosses a multiple, in both libraries) the deterministic policy (the
argmax, or the Gaussian mean clipped to the bounds) plays `--eval-episodes` seeded episodes
through the same `bellman.evaluation.evaluate` call with the same seeds for both libraries;
evaluation time is excluded from the clocks.

The settings, for both (CartPole / Pendulum): N = 8 actors x T = 32 / 256 steps, minibatches of
256, K = 20 / 10 epochs, gamma 0.98 / 0.95, GAE lambda 0.8 / 0.95, learning rate 1e-3 / 2e-3
and clip range 0.2 both annealed linearly to 0, no entropy bonus, value coefficient 0.5, gradient
norm 0.5, Adam epsilon 1e-5, advantages standardised per minibatch, no value clipping, no KL
early stop, separate 64x64 tanh MLPs for the policy and the value with orthogonal initialisation
(gain sqrt 2, 0.01 on the policy head, 1 on the value head), state-independent log sigma starting
at 0 (Pendulum), time-limit truncation bootstrapped with V(final observation); Pendulum's rewards
are scaled by the running std of the discounted return (SB3: VecNormalize(norm_obs=False)).
Differences that cannot be removed, or that are only notation:
    - Value loss: bellman's is vf_coef * 0.5 (V - R)^2, SB3's vf_coef * (V - R)^2, so SB3 gets
      vf_coef / 2 (the same loss, the same gradients).
    - Annealing: bellman's iteration uses the learning rate and clip range of the step it starts
      at, SB3's those of the step it ends at (one iteration further down the schedule: smaller
      by 0.26% (CartPole) / 2.5% (Pendulum) of the initial value).
    - Reward scaling: gymnasium's NormalizeReward (bellman) carries the running discounted
      return across a time-limit reset, SB3's VecNormalize zeroes it at every episode end, so
      their estimates of its std differ slightly; neither clips (VecNormalize's clip of 10 is
      set to infinity here).
    - Random streams: each library seeds its own envs, networks and samples, so seed s is not
      the same run in both; the comparison is over seeds.
    - Clocks: bellman's starts before `bellman.train` (config, envs, network, run directory);
      SB3's before its vec env and model are built. Both stop at the last evaluation row.

Reported per env and library: seeds whose evaluation mean reached the bar (CartPole 475, its
reward threshold; Pendulum -250), env steps and wall-clock seconds until the first such
evaluation (median over seeds; a seed that never gets there counts as infinite), env steps per
second of training (median), and the final evaluation. Targets (issue 4): bellman needs no more
steps than SB3 (median) and at most half of SB3's wall-clock time. Both libraries run with
torch.set_num_threads(1) on the CPU; seeds alternate between libraries (ABBA) so that machine
load hits both alike.

    python benchmarks/ppo_cartpole.py                      # 3 seeds, both envs, ~12 minutes
    python benchmarks/ppo_cartpole.py --quick              # a smoke run, under a minute
    python benchmarks/ppo_cartpole.py --envs CartPole-v1 --seeds $(seq 0 20) --stop-at-bar

With --stop-at-bar a CartPole run ends at its first evaluation at or above the bar (bellman:
`stop_when_solved`, gymnasium's reward threshold 475; SB3: a callback that ends `learn`), which
makes many seeds cheap; the steps and seconds to the bar are the same as in a full run, the
final evaluation is the bar's. Pendulum has no gymnasium reward threshold, so its runs always go
the whole budget.

Run it as a script from the repository root (it imports benchmarks/common.py as `common`);
needs `pip install -e .[bench]`. Writes benchmarks/results/ppo_cartpole.json
(ppo_cartpole_stop_at_bar.json with --stop-at-bar).
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from common import header, median, print_table, processor, ratio, today, write_results

import bellman
from bellman.algos.ppo import PPOConfig
from bellman.config import resolve
from bellman.envs import make_env
from bellman.evaluation import evaluate

#: The evaluation mean that counts as reaching the bar, per env.
BARS = {"CartPole-v1": 475.0, "Pendulum-v1": -250.0}
LIBRARIES = ("bellman", "sb3")


# ---- the settings -----------------------------------------------------------------------------
def overrides(env_id: str, seed: int, steps: int | None, args) -> list[str]:
    """bellman's --set overrides on top of its tuned config: seed, budget, evaluation, CPU."""
    items = [
        f"seed={seed}",
        f"eval_every={args.eval_every}",
        f"eval_episodes={args.eval_episodes}",
        "device=cpu",
        "torch_threads=1",
    ]
    if steps is not None:
        items.append(f"steps={steps}")
    if stops_at_bar(env_id, args):
        items.append("stop_when_solved=true")
    return items


def stops_at_bar(env_id: str, args) -> bool:
    """--stop-at-bar, for an env whose gymnasium reward threshold is the bar (CartPole)."""
    return args.stop_at_bar and gym.spec(env_id).reward_threshold == BARS[env_id]


def bellman_config(env_id: str, seed: int, steps: int | None, args) -> PPOConfig:
    """The resolved config bellman trains with (defaults, tuned file, overrides)."""
    return resolve(PPOConfig, "ppo", env_id, None, overrides(env_id, seed, steps, args))[0]


def sb3_arguments(config: PPOConfig) -> dict:
    """SB3's PPO keyword arguments equivalent to a bellman PPOConfig (see the docstring)."""
    from torch import nn

    unsupported = {
        "objective": config.objective != "clip",
        "shared_trunk": config.shared_trunk,
        "network": config.network not in ("auto", "mlp"),
    }
    if any(unsupported.values()):
        names = [name for name, bad in unsupported.items() if bad]
        raise SystemExit(f"SB3's PPO has no equivalent of bellman's {', '.join(names)} setting")

    def annealed(value: float):
        return (lambda progress_remaining: progress_remaining * value) if config.anneal else value

    hidden = list(config.hidden)
    return {
        "learning_rate": annealed(config.learning_rate),
        "n_steps": config.n_steps,
        "batch_size": config.minibatch_size,
        "n_epochs": config.n_epochs,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "clip_range": annealed(config.clip_range),
        "clip_range_vf": annealed(config.clip_range) if config.clip_value_loss else None,
        "normalize_advantage": config.normalize_advantages,
        "ent_coef": config.ent_coef,
        "vf_coef": config.vf_coef / 2,  # SB3's value loss has no factor 1/2
        "max_grad_norm": config.max_grad_norm,
        "target_kl": config.target_kl / 1.5 if config.target_kl else None,  # SB3 stops at 1.5x
        "policy_kwargs": {
            "net_arch": {"pi": hidden, "vf": hidden},
            "activation_fn": nn.Tanh,
            "ortho_init": True,
            "log_std_init": config.log_std_init,
            "optimizer_kwargs": {"eps": config.adam_epsilon},
        },
    }


# ---- the two libraries ----------------------------------------------------------------------
def run_bellman(env_id: str, seed: int, steps: int | None, args) -> dict:
    """bellman.train with the tuned config; evaluations and clocks from its metrics.csv."""
    return train_bellman(
        "ppo", env_id, seed, steps, args, bellman_config(env_id, seed, steps, args)
    )


def train_bellman(algo: str, env_id: str, seed: int, steps: int | None, args, config) -> dict:
    """`run_bellman` for any actor-critic `algo` whose resolved config is `config`
    (benchmarks/trpo.py runs TRPO through it)."""
    items = overrides(env_id, seed, steps, args) + [f"checkpoint_every={config.steps}"]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        bellman.train(algo, env_id, overrides=items, run_dir=Path(tmp) / "run", quiet=True)
        with open(Path(tmp) / "run" / "metrics.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    evals = [
        (int(row["step"]), float(row["eval_return_mean"]),
         float(row["wall_time"]) - started - float(row["eval_seconds"]))
        for row in rows
        if row["eval_return_mean"] and not math.isnan(float(row["eval_return_mean"]))
    ]  # fmt: skip
    train_seconds = float(rows[-1]["wall_time"]) - started - float(rows[-1]["eval_seconds"])
    return summarize(evals, int(rows[-1]["step"]), train_seconds, BARS[env_id])


def run_sb3(env_id: str, seed: int, steps: int | None, args) -> dict:
    """SB3's PPO with the same settings; a callback evaluates where bellman does."""
    from stable_baselines3 import PPO

    config = bellman_config(env_id, seed, steps, args)

    def make_model(envs):
        return PPO("MlpPolicy", envs, seed=seed, device="cpu", verbose=0, **sb3_arguments(config))

    return train_peer(env_id, seed, args, config, make_model)


def train_peer(env_id: str, seed: int, args, config, make_model) -> dict:
    """`run_sb3` for any Stable-Baselines3-style model: `make_model(vec env)` builds it (after
    the clock starts); its vec env has `config`'s actors and normalisation (benchmarks/trpo.py
    runs sb3-contrib's TRPO through it)."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    eval_env = make_env(env_id)
    evals: list[tuple[int, float, float]] = []
    clock = {"eval_seconds": 0.0, "evaluated_at": 0, "solved": False}
    stop_at_bar = stops_at_bar(env_id, args)

    def evaluate_now(model, step: int) -> None:
        """After the iteration that ends at `step`, when it crossed a multiple of eval_every."""
        if step // args.eval_every == clock["evaluated_at"] // args.eval_every:
            return
        clock["evaluated_at"] = step
        paused = time.perf_counter()
        elapsed = time.time() - clock["started"] - clock["eval_seconds"]
        mean = evaluate(
            sb3_policy(model, eval_env.action_space, normalizer),
            eval_env,
            episodes=args.eval_episodes,
            seed=1_000_000 + seed * 1000,  # bellman's evaluation seeds
        )["mean"]
        clock["eval_seconds"] += time.perf_counter() - paused
        evals.append((step, mean, elapsed))
        clock["solved"] = stop_at_bar and mean >= BARS[env_id]

    class Evaluate(BaseCallback):
        def _on_rollout_start(self) -> None:  # the previous iteration's update is done
            evaluate_now(self.model, self.num_timesteps)

        def _on_training_end(self) -> None:
            clock["stopped"] = time.time()
            evaluate_now(self.model, self.num_timesteps)

        def _on_step(self) -> bool:  # False ends learn (--stop-at-bar, once solved)
            return not clock["solved"]

    clock["started"] = time.time()
    envs = make_vec_env(env_id, n_envs=config.n_envs, seed=seed)
    normalizer = None
    if config.normalize_observations or config.normalize_rewards:
        envs = normalizer = VecNormalize(
            envs,
            norm_obs=config.normalize_observations,
            norm_reward=config.normalize_rewards,
            gamma=config.gamma,
            clip_obs=math.inf,
            clip_reward=math.inf,
        )
    model = make_model(envs)
    model.learn(total_timesteps=config.steps, callback=Evaluate())
    train_seconds = clock["stopped"] - clock["started"] - clock["eval_seconds"]
    envs.close()
    return summarize(evals, model.num_timesteps, train_seconds, BARS[env_id])


def sb3_policy(model, action_space: gym.Space, normalizer):
    """obs -> SB3's deterministic action (the mode, clipped to the bounds) as the env takes it."""
    discrete = isinstance(action_space, gym.spaces.Discrete)

    def policy(obs):
        if normalizer is not None and normalizer.norm_obs:
            obs = normalizer.normalize_obs(obs)
        action, _ = model.policy.predict(np.asarray(obs), deterministic=True)
        return int(action) if discrete else action

    return policy


def summarize(evals: list, steps: int, train_seconds: float, bar: float) -> dict:
    """The first evaluation at or above the bar, the speed and the final evaluation of a run."""
    reached = [(step, seconds) for step, mean, seconds in evals if mean >= bar]
    return {
        "steps_to_bar": reached[0][0] if reached else math.inf,
        "seconds_to_bar": reached[0][1] if reached else math.inf,
        "steps_per_second": steps / train_seconds,
        "train_seconds": train_seconds,
        "final_eval": evals[-1][1] if evals else math.nan,
        "evals": evals,
    }


RUNNERS = {"bellman": run_bellman, "sb3": run_sb3}


# ---- the benchmark ----------------------------------------------------------------------------
def warm_up(args) -> None:
    """One iteration of each library, untimed: imports and first-call costs off the clocks."""
    for library in LIBRARIES:
        RUNNERS[library]("CartPole-v1", 0, 256, args)


def summarise_env(runs: dict[str, list[dict]], seeds: int) -> dict:
    """Per library: seeds reaching the bar and the medians; then the bellman / SB3 ratios."""
    summary: dict[str, dict] = {
        library: {
            "reached": sum(math.isfinite(r["steps_to_bar"]) for r in rows),
            "seeds": seeds,
            "median_steps_to_bar": median(r["steps_to_bar"] for r in rows),
            "median_seconds_to_bar": median(r["seconds_to_bar"] for r in rows),
            "median_steps_per_second": median(r["steps_per_second"] for r in rows),
            "median_final_eval": median(r["final_eval"] for r in rows),
        }
        for library, rows in runs.items()
    }
    if set(LIBRARIES) <= summary.keys():
        ours, theirs = summary["bellman"], summary["sb3"]
        summary["ratios"] = {
            name: ratio(ours[f"median_{name}"], theirs[f"median_{name}"])
            for name in ("steps_to_bar", "seconds_to_bar", "steps_per_second")
        }
    return summary


def print_summary(summaries: dict[str, dict], args) -> None:
    print()
    print(
        f"PPO, {len(args.seeds)} seeds, evaluation every {args.eval_every} env steps on "
        f"{args.eval_episodes} episodes, CPU, torch {torch.__version__} with "
        f"torch.set_num_threads(1) in both libraries, {processor()}, {today()}"
    )
    rows = []
    for env_id, summary in summaries.items():
        for library in LIBRARIES:
            if library in summary:
                row = summary[library]
                rows.append([
                    env_id, library, f"{BARS[env_id]:g}", f"{row['reached']}/{row['seeds']}",
                    _number(row["median_steps_to_bar"], "{:,.0f}"),
                    _number(row["median_seconds_to_bar"], "{:.1f}"),
                    f"{row['median_steps_per_second']:,.0f}",
                    f"{row['median_final_eval']:.1f}",
                ])  # fmt: skip
    print_table(
        ["env", "library", "bar", "seeds reaching bar", "median env steps to bar",
         "median seconds to bar", "median env steps/s", "median final eval"],
        rows,
    )  # fmt: skip
    for env_id, summary in summaries.items():
        if "ratios" in summary:
            r = summary["ratios"]
            print(
                f"{env_id} bellman / SB3: env steps to bar x{r['steps_to_bar']:.2f} "
                f"(target <= 1), seconds to bar x{r['seconds_to_bar']:.2f} (target <= 0.5), "
                f"env steps/s x{r['steps_per_second']:.2f}"
            )


def _number(value: float, spec: str) -> str:
    return spec.format(value) if math.isfinite(value) else str(value)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(BARS), choices=list(BARS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--steps", type=int, default=None, help="env steps per run (default: the tuned config's)"
    )
    parser.add_argument("--eval-every", type=int, default=2048)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    parser.add_argument(
        "--stop-at-bar", action="store_true",
        help="end CartPole runs at the first evaluation at or above the bar (both libraries)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: seed 0, 4,096 steps, 2 eval episodes"
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.eval_episodes = [0], 4096, 2
    if args.eval_every < 1:
        parser.error("--eval-every must be at least 1")
    return args


def run_interleaved(runners: dict, args, started: float) -> dict[str, dict[str, list[dict]]]:
    """Every (env, seed) run of each library, the libraries' order alternating from seed to seed
    (ABBA, so that drift in the machine's speed falls on both); runs[env_id][library] lists
    each seed's result."""
    runs: dict[str, dict[str, list[dict]]] = {}
    for env_id in args.envs:
        for index, seed in enumerate(args.seeds):
            order = args.libraries if index % 2 == 0 else args.libraries[::-1]  # ABBA
            for library in order:
                result = runners[library](env_id, seed, args.steps, args)
                runs.setdefault(env_id, {}).setdefault(library, []).append({"seed": seed, **result})
                print(
                    f"[{time.perf_counter() - started:5.0f} s] {env_id} {library:7s} seed {seed}:"
                    f" steps to {BARS[env_id]:g} {result['steps_to_bar']}, seconds "
                    f"{result['seconds_to_bar']:.1f}, {result['steps_per_second']:.0f} steps/s,"
                    f" final eval {result['final_eval']:.1f}",
                    flush=True,
                )
    return runs


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    warm_up(args)
    started = time.perf_counter()
    runs = run_interleaved(RUNNERS, args, started)
    summaries = {env_id: summarise_env(by_library, len(args.seeds)) for env_id, by_library in
                 runs.items()}  # fmt: skip
    print_summary(summaries, args)
    configs = {env_id: asdict(bellman_config(env_id, 0, args.steps, args)) for env_id in runs}
    record = {
        **header(1, "torch", "numpy", "gymnasium", "stable_baselines3", "bellman"),
        "args": vars(args),
        "bars": BARS,
        "bellman_configs": configs,
        "sb3_arguments": {
            env_id: sb3_arguments(bellman_config(env_id, 0, args.steps, args)) for env_id in runs
        },
        "summary": summaries,
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }
    name = "ppo_cartpole_stop_at_bar" if args.stop_at_bar else "ppo_cartpole"
    write_results(name, record, default=_json_default)


def _json_default(value) -> str:
    """Schedules (lambdas) and classes as readable text."""
    if callable(value) and getattr(value, "__name__", "") == "<lambda>":
        return f"linear schedule from {value(1.0):g} to 0"
    return getattr(value, "__name__", str(value))


if __name__ == "__main__":
    main()
