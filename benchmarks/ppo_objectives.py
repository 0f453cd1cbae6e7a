"""PPO's surrogate objectives compared: Table 1 of the PPO paper in miniature, with bellman's PPO.

Schulman et al. 2017, "Proximal Policy Optimization Algorithms", section 6.1 and Table 1: each
objective setting trained on 7 MuJoCo envs x 3 seeds; a run scores the mean total reward of its
last 100 training episodes; per env the scores are shifted and scaled so that a random policy
gives 0 and the best result 1; a setting's number is the average over the 21 runs:

    no clipping or penalty  -0.39      clipping eps = 0.1 / 0.2 / 0.3   0.76 / 0.82 / 0.70
    adaptive KL d_targ = 0.003 / 0.01 / 0.03                            0.68 / 0.74 / 0.71
    fixed KL beta = 0.3 / 1 / 3 / 10                                    0.62 / 0.71 / 0.72 / 0.69

The PPO paper compares against TRPO in its Figure 3 (learning curves, not Table 1); the last row
here is bellman's TRPO (`bellman train trpo`, delta = 0.01, its tuned config where one exists)
with the same batches (N x T), discount, GAE lambda and normalisation as the PPO settings of each
env, scored and normalised like them (it can be the best setting of an env).

Here each setting is a bellman PPO config (`objective`, `clip_range`, `kl_target`, `kl_beta`;
adaptive KL starts at beta = 1, as in the paper) trained on the two continuous-control envs of
gymnasium's classic control, over `--seeds` (3 by default), with the learning rate held constant
(`anneal = false`: the paper anneals nothing on MuJoCo, and annealing would also shrink eps):
    - Pendulum-v1: bellman's tuned settings (ppo-Pendulum-v1.toml: 8 actors x 256 steps,
      minibatches of 256, 10 epochs, gamma 0.95, lambda 0.95, lr 2e-3, reward scaling) for
      40,960 env steps, half its tuned budget: far enough that the good settings swing the
      pendulum up, short enough that they do not all reach the same optimum (about -150).
    - MountainCarContinuous-v0: the same settings with gamma 0.99 and observation
      normalisation, for 61,440 env steps. A run either finds the hill top (about +94) or
      learns to stand still (about 0; the random policy scores -33), so its scores are noisy.
    - MuJoCo envs (only with --envs, and only where `import mujoco` works): bellman's defaults,
      which are the paper's Table 3 settings (one actor x 2048 steps, minibatches of 64, 10
      epochs, Adam 3e-4, gamma 0.99, lambda 0.95), for 1M steps as in the paper.
A run's score is the mean return of its last training episodes (raw returns, before reward
scaling): 20 on Pendulum (its last 4,000 env steps; the paper's last 100 episodes were about the
last 10% of a 1M-step MuJoCo run), 10 on MountainCarContinuous (`--last-episodes` sets one
number for all). A run that stops on a non-finite loss scores as the random policy. The random
policy's score is measured on each env with `bellman.evaluation.evaluate` and uniformly random
actions (`--random-episodes` seeded episodes); the best result is the best setting's mean over
seeds on that env. The paper's column averages 7 MuJoCo envs at 1M steps, so only the order of
the settings is comparable, not the numbers.

    python benchmarks/ppo_objectives.py              # 2 envs x 11 settings x 3 seeds, ~12 min
    python benchmarks/ppo_objectives.py --quick      # a smoke run, well under a minute
    python benchmarks/ppo_objectives.py --settings trpo \
        --reuse benchmarks/results/ppo_objectives.json   # rerun one row, score it with the rest

Run it as a script from the repository root (it imports benchmarks/common.py as `common`).
Runs go to `--jobs` worker processes (each with one torch thread; a run's result does not depend
on which). Writes benchmarks/results/ppo_objectives.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from common import header, print_table, processor, today, write_results

import bellman
from bellman.envs import make_env
from bellman.errors import BellmanError
from bellman.evaluation import evaluate

#: (key, the paper's row name, bellman overrides, the paper's Table 1 score).
SETTINGS = [
    ("none", "No clipping or penalty", ["objective=none"], -0.39),
    *[(f"clip-{eps}", f"Clipping, eps = {eps}", ["objective=clip", f"clip_range={eps}"], paper)
      for eps, paper in ((0.1, 0.76), (0.2, 0.82), (0.3, 0.70))],
    *[(f"akl-{d}", f"Adaptive KL, d_targ = {d}", ["objective=adaptive_kl", f"kl_target={d}"],
       paper) for d, paper in ((0.003, 0.68), (0.01, 0.74), (0.03, 0.71))],
    *[(f"fkl-{beta}", f"Fixed KL, beta = {beta}", ["objective=fixed_kl", f"kl_beta={beta}"],
       paper) for beta, paper in ((0.3, 0.62), (1, 0.71), (3, 0.72), (10, 0.69))],
    ("trpo", "TRPO, delta = 0.01 (bellman train trpo)", ["max_kl=0.01"], None),
]  # fmt: skip
#: The fields of the env settings below that TRPO shares with PPO (the rest are PPO's own).
TRPO_SHARED = ("anneal", "n_envs", "n_steps", "gamma", "gae_lambda", "normalize_observations",
               "normalize_rewards")  # fmt: skip
#: Per env: the default budget, the episodes a run scores, overrides of bellman's config.
ENVS = {
    "Pendulum-v1": {"steps": 40_960, "last": 20, "set": ["anneal=false"]},
    "MountainCarContinuous-v0": {
        "steps": 61_440,
        "last": 10,
        "set": [
            "anneal=false",
            "n_envs=8",
            "n_steps=256",
            "minibatch_size=256",
            "n_epochs=10",
            "learning_rate=2e-3",
            "gamma=0.99",
            "normalize_observations=true",
            "normalize_rewards=true",
        ],
    },  # fmt: skip
}
#: The paper's seven MuJoCo envs (gymnasium's v5), run with bellman's defaults for 1M steps.
MUJOCO = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Swimmer-v5", "InvertedPendulum-v5",
          "InvertedDoublePendulum-v5", "Reacher-v5")  # fmt: skip


def run_one(env_id: str, key: str, seed: int, steps: int, last: int) -> dict:
    """Train one setting on one env with one seed; its score and what it took."""
    settings = next(items for name, _, items, _ in SETTINGS if name == key)
    extra = ENVS.get(env_id, {"set": []})["set"]
    algo = "trpo" if key == "trpo" else "ppo"
    if algo == "trpo":  # the same batches, discount and normalisation; TRPO's own step rule
        extra = [item for item in extra if item.partition("=")[0] in TRPO_SHARED]
    overrides = [*extra, *settings, f"seed={seed}", f"steps={steps}", "eval_every=0",
                 f"checkpoint_every={steps}", "device=cpu", "torch_threads=1"]  # fmt: skip
    started = time.perf_counter()
    error = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            bellman.train(algo, env_id, overrides=overrides, run_dir=Path(tmp) / "run", quiet=True)
        except BellmanError as caught:  # a diverged run (non-finite loss)
            error = str(caught)
        episodes = Path(tmp) / "run" / "episodes.csv"  # written at the first finished episode
        with open(episodes, encoding="utf-8") if episodes.exists() else open(os.devnull) as handle:
            returns = [float(row["return"]) for row in csv.DictReader(handle)]
    tail = returns[-last:]
    if not tail and error is None:
        error = f"no episode finished in {steps} env steps"
    return {
        "env": env_id,
        "setting": key,
        "seed": seed,
        "steps": steps,
        "episodes": len(returns),
        "score": float(np.mean(tail)) if tail and error is None else math.nan,
        "last_episodes": len(tail),
        "seconds": time.perf_counter() - started,
        "error": error,
    }


def random_score(env_id: str, episodes: int) -> float:
    """Mean return of uniformly random actions over `episodes` seeded episodes."""
    env = make_env(env_id)
    env.action_space.seed(0)
    result = evaluate(lambda obs: env.action_space.sample(), env, episodes=episodes, seed=0)
    env.close()
    return result["mean"]


def normalise(runs: list[dict], randoms: dict[str, float]) -> dict[str, dict]:
    """Per env: random = 0, the best setting's mean over seeds = 1; per setting: the average of
    its runs' normalised scores over envs and seeds (a diverged run scores 0, random's)."""
    raw: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        raw.setdefault(run["env"], {}).setdefault(run["setting"], []).append(run["score"])
    means = {
        env_id: {key: _mean(scores) for key, scores in by_setting.items()}
        for env_id, by_setting in raw.items()
    }
    best = {env_id: np.nanmax(list(by_key.values())) for env_id, by_key in means.items()}
    table: dict[str, dict] = {}
    for key, *_ in SETTINGS:
        normalised, per_env = [], {}
        for env_id, by_setting in raw.items():
            if key not in by_setting:
                continue
            zero, one = randoms[env_id], best[env_id]
            values = [0.0 if math.isnan(s) else (s - zero) / (one - zero) for s in by_setting[key]]
            normalised += values
            per_env[env_id] = {
                "raw_mean": means[env_id][key], "raw": by_setting[key], "normalised": values
            }  # fmt: skip
        if normalised:
            table[key] = {"normalised": float(np.mean(normalised)), "envs": per_env}
    return {"settings": table, "best": best}


def _mean(scores: list[float]) -> float:
    """The mean of the finite scores (NaN when every run diverged)."""
    finite = [s for s in scores if math.isfinite(s)]
    return float(np.mean(finite)) if finite else math.nan


def reused_runs(args, new_runs: list[dict]) -> list[dict]:
    """The runs of `--reuse` for settings not run now, after checking that the record was made
    with the same envs, seeds, budgets and random-policy episodes."""
    import json

    record = json.loads(args.reuse.read_text(encoding="utf-8"))
    old = record["args"]
    same = {name: old.get(name) == getattr(args, name)
            for name in ("envs", "seeds", "steps", "last_episodes", "random_episodes")}  # fmt: skip
    if not all(same.values()):
        differ = ", ".join(name for name, ok in same.items() if not ok)
        raise SystemExit(f"--reuse {args.reuse}: its {differ} differ from this run's")
    ran = {run["setting"] for run in new_runs}
    kept = [run for run in record["runs"] if run["setting"] not in ran]
    print(f"reused {len(kept)} runs of {args.reuse} (made {record['date']})")
    return kept


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=[*ENVS, *MUJOCO])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (all envs)")
    parser.add_argument(
        "--last-episodes", type=int, default=None, help="episodes a run scores (all envs)"
    )
    parser.add_argument("--random-episodes", type=int, default=100)
    parser.add_argument("--settings", nargs="+", default=[key for key, *_ in SETTINGS],
                        choices=[key for key, *_ in SETTINGS])  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--reuse", type=Path, default=None,
        help="a previous record (JSON) whose runs of the settings not run now are scored with "
             "these (same envs, seeds, budgets and random episodes required)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 8,192 steps")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.last_episodes, args.random_episodes = [0], 8192, 5, 5
    for env_id in args.envs:
        if env_id in MUJOCO and importlib.util.find_spec("mujoco") is None:
            parser.error(f"{env_id} needs MuJoCo, and `import mujoco` fails here")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    randoms = {env_id: random_score(env_id, args.random_episodes) for env_id in args.envs}
    for env_id, score in randoms.items():
        print(f"random policy on {env_id}: {score:.1f} over {args.random_episodes} episodes")
    jobs = [
        (env_id, key, seed, args.steps or ENVS.get(env_id, {}).get("steps", 1_000_000),
         args.last_episodes or ENVS.get(env_id, {}).get("last", 100))
        for env_id in args.envs for key in args.settings for seed in args.seeds
    ]  # fmt: skip
    runs = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        for run in pool.map(run_one, *zip(*jobs, strict=True)):
            runs.append(run)
            print(
                f"[{time.perf_counter() - started:5.0f} s] {run['env']} {run['setting']:9s} "
                f"seed {run['seed']}: score {run['score']:.1f} over the last "
                f"{run['last_episodes']} of {run['episodes']} episodes ({run['seconds']:.0f} s)"
                + (f"; {run['error']}" if run["error"] else ""),
                flush=True,
            )
    if args.reuse is not None:
        runs += reused_runs(args, runs)
    summary = normalise(runs, randoms)
    print()
    steps = {job[0]: job[3] for job in jobs}
    last = {job[0]: job[4] for job in jobs}
    print(
        "PPO surrogate objectives (Schulman et al. 2017, Table 1) with bellman: "
        + ", ".join(f"{env_id} {n:,} steps" for env_id, n in steps.items())
        + f"; {len(args.seeds)} seeds; score = mean of the last "
        + ", ".join(f"{n} ({env_id})" for env_id, n in last.items())
        + " training episodes, random policy = 0, best setting = 1; torch threads 1, "
        + f"{processor()}, {today()}"
    )
    columns = ["setting", "paper (7 MuJoCo envs)", "bellman (normalised)"]
    columns += [f"{env_id} raw mean" for env_id in args.envs]
    rows = []
    for key, name, _, paper in SETTINGS:
        if key in summary["settings"]:
            row = summary["settings"][key]
            paper_cell = "not in Table 1 (Figure 3)" if paper is None else f"{paper:.2f}"
            rows.append([name, paper_cell, f"{row['normalised']:.2f}"] + [
                f"{row['envs'][env_id]['raw_mean']:.1f}" for env_id in args.envs
            ])  # fmt: skip
    print_table(columns, rows)
    print("random policy: " + ", ".join(f"{e} {s:.1f}" for e, s in randoms.items()))
    record = {
        **header(1, "torch", "numpy", "gymnasium", "bellman"),
        "args": {**vars(args), "reuse": str(args.reuse) if args.reuse else None},
        "paper_table_1": {key: paper for key, _, _, paper in SETTINGS},
        "settings": {key: items for key, _, items, _ in SETTINGS},
        "env_overrides": {env_id: ENVS.get(env_id, {}).get("set", []) for env_id in args.envs},
        "random_scores": randoms,
        "summary": summary,
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }
    write_results("ppo_objectives", record)


if __name__ == "__main__":
    main()
