"""The library's front door: which algorithms exist, and train / resume / load / evaluate a run.

Each algorithm module exposes `Config` (its dataclass), `train(config, env, run)` and a way to
build a policy from a checkpoint; this module looks them up by name and does the plumbing every
algorithm shares (resolving the config, making the env and the run directory, resuming), so the
CLI stays a thin layer over these functions. Algorithm modules are imported only when used, so
`bellman plan` never pays for torch.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellman import checkpoint, evaluation
from bellman import config as configs
from bellman.errors import CheckpointError, ConfigError, unknown
from bellman.run import Run, read_run_config, write_run_config


@dataclass(frozen=True)
class Algorithm:
    """An entry of the algorithm table: its CLI name, module and a one-line summary.

    The module provides `Config`, `make_train_env(config)`, `make_eval_env(config, render_mode)`,
    `check_env(env, config)`, `check_checkpoint(arrays, env, config)`,
    `train(config, env, run)` and `load_policy(arrays, env, config, seed)`.
    """

    name: str
    module: str
    summary: str

    def load(self):
        """The algorithm's module (imported on first use)."""
        return importlib.import_module(self.module)

    @property
    def config_class(self) -> type:
        return self.load().Config


ALGORITHMS = {
    algo.name: algo
    for algo in (
        Algorithm(
            "q-learning",
            "bellman.tabular.q_learning",
            "off-policy TD control with a Q-table (Watkins 1989)",
        ),
        Algorithm(
            "sarsa",
            "bellman.tabular.sarsa",
            "on-policy TD control with a Q-table (Rummery & Niranjan 1994)",
        ),
        Algorithm(
            "dqn",
            "bellman.algos.dqn",
            "deep Q-network with replay memory and a target network (Mnih et al. 2015)",
        ),
        Algorithm(
            "reinforce",
            "bellman.algos.reinforce",
            "Monte-Carlo policy gradient with an optional learned baseline (Williams 1992)",
        ),
        Algorithm(
            "a2c",
            "bellman.algos.a2c",
            "synchronous advantage actor-critic with n-step returns (Mnih et al. 2016)",
        ),
        Algorithm(
            "ppo",
            "bellman.algos.ppo",
            "proximal policy optimization, clipped or KL-penalised (Schulman et al. 2017)",
        ),
        Algorithm(
            "alphazero",
            "bellman.zero.alphazero",
            "self-play with PUCT search, one residual policy-value net (Silver et al. 2017/2018)",
        ),
    )
}


def algorithm(name: str) -> Algorithm:
    """Look an algorithm up by name, with a "did you mean" for typos."""
    if name not in ALGORITHMS:
        raise unknown("algorithm", name, ALGORITHMS, hint="see `bellman algos`")
    return ALGORITHMS[name]


def train(
    algo: str,
    env_id: str,
    *,
    config_file: Path | None = None,
    overrides: list[str] = (),
    run_dir: Path | None = None,
    quiet: bool = False,
) -> Run:
    """Train `algo` on `env_id` in a new run directory; returns the finished (or stopped) run."""
    spec = algorithm(algo)
    config, _ = configs.resolve(spec.config_class, algo, env_id, config_file, list(overrides))
    module = spec.load()
    env = module.make_train_env(config)
    module.check_env(env, config)
    run = Run.create(algo, config, run_dir, quiet=quiet)
    return _train(spec, config, env, run)


def resume(run_dir: Path, *, algo: str | None = None, steps: int | None = None, quiet=False):
    """Continue a run from its latest checkpoint to its own target (or to `steps`).

    Everything is checked (algorithm, env, checkpoint integrity and shapes, target) before the
    first byte is written, so a refused resume leaves the run directory exactly as it was.
    """
    run_dir = Path(run_dir)
    spec, config = load_run_config(run_dir)
    if algo is not None and algo != spec.name:
        raise CheckpointError(f"run '{run_dir}' was trained with '{spec.name}', not '{algo}'")
    if steps is not None:
        config = configs.from_dict(
            spec.config_class, spec.name, {**configs.to_dict(config), "steps": steps}, "--steps"
        )
    arrays, meta = _load_checkpoint(run_dir, spec, config)
    done = int(meta["step"])
    if done >= config.steps:
        raise ConfigError(
            f"run '{run_dir}' already reached its target of {config.steps} steps "
            f"(it is at step {done}); pass --steps N with N > {done} to train it further"
        )
    module = spec.load()
    env = module.make_train_env(config)
    module.check_env(env, config)
    module.check_checkpoint(arrays, env, config)
    if steps is not None:
        write_run_config(run_dir, spec.name, config)
    run = Run.resume(run_dir, spec.name, config, (arrays, meta), quiet=quiet)
    return _train(spec, config, env, run)


def _train(spec: Algorithm, config, env, run: Run) -> Run:
    try:
        spec.load().train(config, env, run)
    finally:
        env.close()
    if not run.stop_requested:
        from bellman.plots import plot_runs

        try:
            plot_runs([run.dir], run.dir / "plot.png")
        except CheckpointError as error:  # a run too short to have a curve is still a run
            run.notes.append(f"no plot: {error}")
    return run


def load_run_config(run_dir: Path):
    """(algorithm, config) of a run directory, checked like a user's config file."""
    values = read_run_config(run_dir)
    spec = algorithm(values.pop("algo"))
    config = configs.from_dict(
        spec.config_class, spec.name, values, f"'{Path(run_dir) / 'config.toml'}'"
    )
    return spec, config


def _load_checkpoint(run_dir: Path, spec: Algorithm, config):
    """The run's latest checkpoint, checked against the algorithm and env of its config."""
    arrays, meta = checkpoint.load(Path(run_dir) / "checkpoints", algo=spec.name)
    if meta.get("env") != config.env:
        raise CheckpointError(
            f"run '{run_dir}': its checkpoint was trained on '{meta.get('env')}' but its "
            f"config.toml says env = '{config.env}'"
        )
    return arrays, meta


def load_policy(run_dir: Path, seed: int = 0, render_mode: str | None = None):
    """The evaluation policy of a run's latest checkpoint, with its config and env.

    Returns:
        (policy: obs -> action, config, env); `seed` seeds the policy's own exploration
        (DQN evaluates with epsilon = eval_epsilon).
    """
    spec, config = load_run_config(run_dir)
    arrays, _ = _load_checkpoint(run_dir, spec, config)
    module = spec.load()
    env = module.make_eval_env(config, render_mode=render_mode)
    policy = module.load_policy(arrays, env, config, seed)
    return policy, config, env


def record_run(run_dir: Path, path: Path, seed: int = 0, max_frames: int = 2000):
    """Write a GIF of the run's evaluation policy playing one episode from reset(seed)."""
    import os

    for variable in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):  # pygame renders off-screen
        os.environ.setdefault(variable, "dummy")
    policy, _, env = load_policy(run_dir, seed=seed, render_mode="rgb_array")
    try:
        return evaluation.record_gif(policy, env, path, seed=seed, max_frames=max_frames)
    finally:
        env.close()


def evaluate_run(run_dir: Path, episodes: int, seed: int) -> dict[str, Any]:
    """Evaluate a run's greedy policy on `episodes` seeded episodes and write `eval.json`."""
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    policy, config, env = load_policy(run_dir, seed=seed)
    try:
        result = evaluation.evaluate(policy, env, episodes=episodes, seed=seed)
    finally:
        env.close()
    result = {"env": config.env, **result}
    checkpoint.atomic_write_text(Path(run_dir) / "eval.json", json.dumps(result, indent=1))
    return result
