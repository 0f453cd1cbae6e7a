"""The library's front door: which algorithms exist, and train / resume / load / evaluate a run.

`ALGORITHMS` is the one registry: every `bellman train` algorithm and every `bellman lm` training
step, each module satisfying a Protocol written below (`AlgorithmModule`, `LMStepModule`). This
module looks them up by name and does the plumbing every algorithm shares (resolving the config,
making the env and the run directory, resuming), so the CLI stays a thin layer over these
functions. Algorithm modules are imported only when used, so `bellman plan` never pays for torch.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bellman import checkpoint, evaluation
from bellman import config as configs
from bellman.errors import CheckpointError, ConfigError, unknown
from bellman.run import Run, ctrl_c_deferred, read_run_config


class AlgorithmModule(Protocol):
    """What the module of a `bellman train` algorithm provides: exactly what this module calls.

    `env` is what the algorithm trains and evaluates on: a gymnasium env, a vector env, or (for
    AlphaZero) a game; hence `Any`. `train` may close it when it has a `close()`.
    """

    Config: type
    """The algorithm's config dataclass (a `TrainConfig`)."""

    def make_train_env(self, config: Any) -> Any:
        """The environment(s) `train` runs on."""
        ...

    def make_eval_env(self, config: Any, render_mode: str | None = None) -> Any:
        """One environment for evaluating (and recording) the trained policy."""
        ...

    def check_env(self, env: Any, config: Any) -> Any:
        """Raise ConfigError when the algorithm cannot train on `env` (space types, sizes)."""
        ...

    def check_checkpoint(self, arrays: dict[str, Any], env: Any, config: Any) -> None:
        """Raise CheckpointError when a checkpoint's arrays do not fit `env` and `config`."""
        ...

    def train(self, config: Any, env: Any, run: Run) -> Any:
        """Train in `run` (new or resumed) until `config.steps` or a stop request."""
        ...

    def load_policy(self, arrays: dict[str, Any], env: Any, config: Any, seed: int) -> Any:
        """The evaluation policy (observation -> action) of a checkpoint's arrays."""
        ...


class LMStepModule(Protocol):
    """What the module of a `bellman lm` training step provides (`bellman.cli.lm` calls it)."""

    ALGO: str
    """The step's name in run directories: "lm-pretrain", "lm-sft", ..."""
    Config: type
    """The step's config dataclass (a `TrainConfig`)."""

    def prepare(self, config: Any) -> Any:
        """Read and check everything the step needs, before its run directory exists."""
        ...

    def train(self, config: Any, run: Run, prepared: Any = None) -> Any:
        """Train in `run` (new, or resumed when `prepared` is None)."""
        ...


def _protocol_members(protocol: type) -> list[str]:
    """The attributes and functions a module must define to satisfy `protocol`."""
    functions = [name for name, value in vars(protocol).items()
                 if callable(value) and not name.startswith("_")]  # fmt: skip
    return [*protocol.__annotations__, *functions]


@dataclass(frozen=True)
class Algorithm:
    """An entry of the registry: its command-line name, its module and a one-line summary.

    `bellman train NAME` algorithms have modules that satisfy `AlgorithmModule`; the language
    model steps, named "lm STEP" (`bellman lm STEP`), have modules that satisfy `LMStepModule`.
    """

    name: str
    module: str
    summary: str

    @property
    def is_lm_step(self) -> bool:
        """True for a `bellman lm STEP` training step."""
        return self.name.startswith("lm ")

    @property
    def protocol(self) -> type:
        """The Protocol its module satisfies."""
        return LMStepModule if self.is_lm_step else AlgorithmModule

    def load(self) -> Any:
        """The algorithm's module (imported on first use, Ctrl-C held until the import ends),
        checked against its Protocol."""
        with ctrl_c_deferred():
            module = importlib.import_module(self.module)
        missing = [name for name in _protocol_members(self.protocol) if not hasattr(module, name)]
        if missing:
            raise TypeError(
                f"{self.module} does not satisfy {self.protocol.__name__}: it lacks "
                f"{', '.join(missing)}"
            )
        return module

    @property
    def config_class(self) -> type:
        return self.load().Config


#: Every algorithm and language-model step, by the name the command line uses.
ALGORITHMS: dict[str, Algorithm] = {
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
            "trpo",
            "bellman.algos.trpo",
            "trust region policy optimization: conjugate gradient, KL-bounded line search "
            "(Schulman et al. 2015)",
        ),
        Algorithm(
            "alphazero",
            "bellman.zero.alphazero",
            "self-play with PUCT search, one residual policy-value net (Silver et al. 2017/2018)",
        ),
        Algorithm(
            "muzero",
            "bellman.zero.muzero",
            "planning with a learned model h, g, f searched by MCTS (Schrittwieser et al. 2020)",
        ),
        Algorithm(
            "alphago",
            "bellman.zero.alphago",
            "SL and RL policy nets, a value net, rollouts; lambda-mixed tree search "
            "(Silver et al. 2016)",
        ),
        Algorithm(
            "lm pretrain",
            "bellman.lm.pretrain",
            "a BPE tokenizer and a small GPT by next-token prediction (Radford et al. 2018)",
        ),
        Algorithm(
            "lm sft",
            "bellman.lm.sft",
            "supervised fine-tuning on demonstrations, loss on responses (Ouyang et al. 2022)",
        ),
        Algorithm(
            "lm reward",
            "bellman.lm.reward_model",
            "reward model on K ranked responses, all C(K, 2) pairs (Ouyang et al. 2022)",
        ),
        Algorithm(
            "lm ppo",
            "bellman.lm.rlhf_ppo",
            "RLHF: PPO with a per-token KL penalty to the SFT model; PPO-ptx, GRPO, RLOO "
            "(Ouyang et al. 2022)",
        ),
        Algorithm(
            "lm dpo",
            "bellman.lm.dpo",
            "direct preference optimization on ranked responses (Rafailov et al. 2023)",
        ),
    )
}


def _registry_name(name: str) -> str:
    """`name` as the registry spells it: "lm ppo" for "lm ppo", "lm-ppo" (the `algo` of its run
    directories) or "lm  ppo"; other names unchanged."""
    if name.startswith("lm"):
        return " ".join(name.replace("-", " ", 1).split())
    return name


def lookup(name: str) -> Algorithm:
    """Any registry entry (algorithm or lm step) by name, with a "did you mean" for typos."""
    key = _registry_name(name)
    if key not in ALGORITHMS:
        raise unknown("algorithm", name, ALGORITHMS, hint="see `bellman algos`")
    return ALGORITHMS[key]


def algorithm(name: str) -> Algorithm:
    """A `bellman train` algorithm by name, with a "did you mean" for typos; an lm step's name
    gets the command that trains it."""
    spec = ALGORITHMS.get(_registry_name(name))
    if spec is not None and spec.is_lm_step:
        raise ConfigError(
            f"'{name}' is a language-model step: it is trained with `bellman {spec.name}` "
            "and its runs are used by the `bellman lm` commands"
        )
    trainable = [key for key, entry in ALGORITHMS.items() if not entry.is_lm_step]
    if spec is None:
        raise unknown("algorithm", name, trainable, hint="see `bellman algos`")
    return spec


def lm_step(name: str) -> Algorithm:
    """A `bellman lm` training step by name ("lm ppo" or "lm-ppo")."""
    spec = ALGORITHMS.get(_registry_name(name))
    if spec is None or not spec.is_lm_step:
        steps = [key for key, entry in ALGORITHMS.items() if entry.is_lm_step]
        raise unknown("language-model step", name, steps, hint="see `bellman algos`")
    return spec


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
    run = Run.resume(
        run_dir, spec.name, config, (arrays, meta), quiet=quiet, write_config=steps is not None
    )
    return _train(spec, config, env, run)


#: What a learner's restore raises when a checkpoint's state has the right envelope but not
#: the contents this algorithm saved (a crafted or damaged file).
_RESTORE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError)


def _train(spec: Algorithm, config, env, run: Run) -> Run:
    from bellman.torch_state import flush_denormals  # (torch: imported when a run trains)

    flush_denormals(True)  # (subnormal weights slow training ~100x; off again when it ends)
    try:
        spec.load().train(config, env, run)
    except BaseException as error:
        run.abandon()  # a new run that never saved a checkpoint leaves nothing behind
        if isinstance(error, _RESTORE_ERRORS) and run.restored is not None and not run.opened:
            raise CheckpointError(
                f"run '{run.dir}': its checkpoint does not fit {spec.name} "
                f"({type(error).__name__}: {error}); nothing was written"
            ) from None
        raise
    finally:
        flush_denormals(False)
        run.close()
        if hasattr(env, "close"):
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


def check_recordable(run_dir: Path) -> None:
    """Refuse `--record` for a run whose env cannot render frames (the lectures' MDPs and the
    board games render text), before anything is evaluated or written."""
    import warnings

    spec, config = load_run_config(run_dir)
    try:
        with warnings.catch_warnings():  # gymnasium warns of the mode this asks about
            warnings.simplefilter("ignore")
            env = spec.load().make_eval_env(config, render_mode="rgb_array")
    except ValueError:
        env = None
    modes = env.metadata.get("render_modes", []) if env is not None else []
    if env is not None and hasattr(env, "close"):
        env.close()
    if "rgb_array" not in modes:
        raise ConfigError(
            f"--record needs an env that renders frames (rgb_array); '{config.env}' does not"
        )


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


def evaluate_run(
    run_dir: Path, episodes: int, seed: int, out: Path | None = None, write: bool = True
) -> dict[str, Any]:
    """Evaluate a run's greedy policy on `episodes` seeded episodes and write the result to
    `out` (default: the run's `eval.json`); with `write` false, write nothing (a shipped agent's
    directory is part of the installed package)."""
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
    if write:
        out = Path(run_dir) / "eval.json" if out is None else Path(out)
        checkpoint.atomic_write_text(out, json.dumps(result, indent=1))
    return result
