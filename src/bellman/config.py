"""Configs: typed dataclasses with defaults, TOML files, `--set key=value` overrides, validation.

Every algorithm has one frozen dataclass, `XConfig(TrainConfig)`, whose fields carry their default
and, in the line under them, a docstring that is also the help text of `bellman algos NAME`.
A field's valid range or choices live in its metadata (`field(default=..., metadata=interval("(0,
1]"))`), so every algorithm gets the same checks and the same messages for free.

Resolution order, later wins:
    1. the dataclass defaults (the paper's values),
    2. the tuned defaults shipped in `bellman/configs/<algo>-<env>.toml`, when that file exists,
    3. `--config FILE.toml`,
    4. `--set key=value` (repeatable), then `--seed` and `--steps`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

from bellman.errors import ConfigError, did_you_mean

_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]*?)\s*,\s*([^,]*?)\s*([\])])\s*$")


def interval(spec: str) -> dict[str, Any]:
    """Field metadata for a numeric range in interval notation: "(0, 1]", "[1, inf)"."""
    if not _INTERVAL.match(spec):
        raise ValueError(f"bad interval {spec!r}")
    return {"interval": spec}


def choices(*names: str) -> dict[str, Any]:
    """Field metadata for a string field that takes one of a few names."""
    return {"choices": tuple(names)}


def _in_interval(value: float, spec: str) -> bool:
    low_bracket, low, high, high_bracket = _INTERVAL.match(spec).groups()
    low_value = -math.inf if low in ("", "-inf") else float(low)
    high_value = math.inf if high in ("", "inf") else float(high)
    above = value >= low_value if low_bracket == "[" else value > low_value
    below = value <= high_value if high_bracket == "]" else value < high_value
    return above and below


@dataclass(frozen=True)
class TrainConfig:
    """Fields every training run has, whatever the algorithm."""

    env: str = ""
    """Environment id, e.g. Taxi-v4 or bellman/Recycling-v0 (see `bellman envs`)."""
    seed: int = field(default=0, metadata=interval("[0, inf)"))
    """Seed of every random number generator of the run (agent, environment, network)."""
    steps: int = field(default=100_000, metadata=interval("[1, inf)"))
    """Total number of environment steps of the run (a resumed run continues to this target)."""
    log_every: int = field(default=1_000, metadata=interval("[1, inf)"))
    """Environment steps between two rows of metrics.csv."""
    checkpoint_every: int = field(default=50_000, metadata=interval("[1, inf)"))
    """Environment steps between two checkpoints (taken at the next safe point)."""
    keep_checkpoints: int = field(default=3, metadata=interval("[1, inf)"))
    """How many of the newest checkpoints to keep on disk; older ones are deleted."""

    def validate(self) -> None:
        """Check cross-field rules; single-field ranges are checked by `check_fields`."""


@dataclass(frozen=True)
class DeepConfig(TrainConfig):
    """Family base of the deep algorithms that need no more (DQN, REINFORCE): evaluation during
    training, Atari frames, torch. A2C and PPO's family base, `algos.onpolicy.
    ActorCriticConfig`, has the same fields and rules (`check_deep_fields`)."""

    eval_every: int = field(default=0, metadata=interval("[0, inf)"))
    """Env steps between evaluations during training (0: none); logged as eval_return_mean."""
    eval_episodes: int = field(default=10, metadata=interval("[1, inf)"))
    """Episodes per evaluation during training."""
    stop_when_solved: bool = False
    """Stop once an evaluation's mean return reaches the env's reward_threshold (CartPole: 475)."""
    frame_stack: int = field(default=4, metadata=interval("[1, 16]"))
    """Atari only: frames stacked into one observation."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the networks run: auto uses CUDA when present."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch (1 is fastest on small, shared machines)."""
    env_threads: int = field(default=0, metadata=interval("[0, 1024]"))
    """Atari backend: emulator threads of ale-py's vector env (0: one per core)."""
    atari_backend: str = field(default="ale_vector", metadata=choices("ale_vector", "gymnasium"))
    """ALE ids: ale_vector (ale-py's AtariVectorEnv, C++ threads) or gymnasium (one wrapped env
    per game, stepped in turn: the readable reference)."""
    channels_last: bool = True
    """Nature-CNN networks take their image batches in channels-last memory order (faster
    convolutions on CPUs; the same numbers up to float rounding). false: the plain layout."""
    bf16_autocast: bool = False
    """Nature-CNN networks compute their convolutions and fully connected layer under bfloat16
    autocast, the features back in float32 for the heads (`nets.fast.bf16_convolutions`;
    parameters, optimizer and checkpoints stay float32). Pays where the hardware has bfloat16
    arithmetic (CPUs with AVX512-BF16 or AMX, GPUs; on a CPU batches under 8 frames stay
    float32); rounds to 8 significant bits, so not the float32 run bit for bit. false: the plain
    float32 path."""
    backend: str = field(default="local", metadata=choices("local", "ray"))
    """local: one process, exactly as before; ray: actors on a Ray cluster (see ray_address)."""
    workers: int = field(default=0, metadata=interval("[0, 1024]"))
    """backend = ray: Ray actors the work is spread over (0: one per environment, n_envs)."""
    ray_address: str = ""
    """backend = ray: HOST:PORT of a running cluster (`ray start --head`); empty: a local Ray on
    this machine's cores."""

    def validate(self) -> None:
        check_deep_fields(self)


def check_deep_fields(config) -> None:
    """The cross-field rules of DeepConfig's fields (evaluation, device), for every config that
    has them."""
    if config.stop_when_solved and not config.eval_every:
        raise ConfigError("stop_when_solved needs evaluations: set eval_every > 0")
    if config.bf16_autocast:
        from bellman.envs.atari import is_atari

        network = getattr(config, "network", "auto")
        if not (network == "cnn" or (network == "auto" and is_atari(config.env))):
            raise ConfigError(
                f"bf16_autocast runs the Nature CNN in bfloat16, and {config.env} with network = "
                f"{network} gets an MLP; valid: an ALE/... game, or network = cnn for "
                "image observations"
            )
    if config.device == "cuda":
        import torch  # only the deep algorithms pay for it

        if not torch.cuda.is_available():
            raise ConfigError("device = cuda but no CUDA GPU is visible; use device = auto or cpu")


#: The algorithms with a Ray path (`backend = ray`); every other one refuses it.
RAY_ALGORITHMS = ("a2c", "alphazero", "dqn", "ppo")


def check_backend(config, algo: str) -> None:
    """ConfigError when `backend = ray` is asked of an algorithm without a Ray path."""
    if getattr(config, "backend", "local") == "ray" and algo not in RAY_ALGORITHMS:
        raise ConfigError(
            f"{algo} has no Ray path (backend = ray); the algorithms with one: "
            f"{', '.join(RAY_ALGORITHMS)}; set backend = local"
        )


def add_training_arguments(parser, steps_help: str) -> None:
    """The options every training command takes (`bellman train`, `bellman lm ...`): the config
    sources in resolution order and the run directory."""
    parser.add_argument("--config", type=Path, help="TOML file of config values")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    parser.add_argument("--seed", type=int, help="seed of the run (same as --set seed=S)")
    parser.add_argument("--steps", type=int, help=steps_help)
    parser.add_argument("--run-dir", type=Path, help="where to write the run (default runs/...)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field, for the whole class hierarchy."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(klass)))
        body = tree.body[0].body
        for node, following in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def field_types(cls: type) -> dict[str, type]:
    """Field name -> its runtime type (int, float, bool or str)."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_value(key: str, text: str, kind: type) -> Any:
    """Parse the text of `--set key=text` as the field's type, or say what was expected."""
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            digits = text.strip().replace("_", "")
            if re.fullmatch(r"[+-]?[0-9]+", digits):  # exact however long: never through a float
                return int(digits)
            number = float(digits)  # 1e6 is an integer too
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"config key '{key}' expects {kind.__name__}, got '{text}'") from None


def _coerce(key: str, value: Any, kind: type, source: str) -> Any:
    """Check a value read from TOML against the field's type (ints are accepted for floats)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ConfigError(
        f"config key '{key}' in {source} expects {kind.__name__}, "
        f"got {type(value).__name__} {value!r}"
    )


def check_fields(config: TrainConfig, origins: dict[str, str] | None = None) -> None:
    """Validate every field against its type, its interval or choices, then cross-field rules.

    Args:
        config: the config to check.
        origins: key -> where its value came from ("config file 'x.toml'"), named in errors.
    """
    origins = origins or {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        where = f" (from {origins[f.name]})" if f.name in origins else ""
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key '{f.name}' must be a finite number, got {value}{where}")
        spec = f.metadata.get("interval")
        if spec is not None and not _in_interval(value, spec):
            raise ConfigError(f"config key '{f.name}' must be in {spec}, got {value}{where}")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:  # TOML, numpy, torch: int64
            raise ConfigError(f"config key '{f.name}' must be below 2**63, got {value}{where}")
        names = f.metadata.get("choices")
        if names is not None and value not in names:
            raise ConfigError(
                f"config key '{f.name}' must be one of {', '.join(names)}, "
                f"got '{value}'{did_you_mean(str(value), names)}{where}"
            )
    if not config.env:
        raise ConfigError("no environment given; pass --env ID (see `bellman envs`)")
    config.validate()


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file, or raise ConfigError saying why it can't be read."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file '{path}' is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"config file '{path}' cannot be read: {error.strerror}") from None


def tuned_defaults_name(algo: str, env_id: str) -> str:
    """File name of the shipped tuned defaults for a pair: `dqn-CartPole-v1.toml`."""
    return f"{algo}-{env_id.replace('/', '-')}.toml"


def tuned_defaults(algo: str, env_id: str) -> tuple[dict[str, Any], str] | None:
    """The tuned defaults shipped for (algo, env), with their file name, if any."""
    name = tuned_defaults_name(algo, env_id)
    resource = resources.files("bellman.configs").joinpath(name)
    if not resource.is_file():
        return None
    return tomllib.loads(resource.read_text(encoding="utf-8")), f"bellman/configs/{name}"


def apply(
    values: dict[str, Any],
    updates: dict[str, Any],
    cls: type,
    algo: str,
    source: str,
    origins: dict[str, str] | None = None,
):
    """Merge `updates` (from TOML) into `values`, checking keys and types; note each origin."""
    types = field_types(cls)
    for key, value in updates.items():
        if key == "algo":
            if value != algo:
                raise ConfigError(f"{source} is a config for '{value}', not for '{algo}'")
            continue
        if key not in types:
            raise ConfigError(
                f"unknown config key '{key}' in {source}{did_you_mean(key, types)}; "
                f"valid keys for {algo}: {', '.join(types)}"
            )
        values[key] = _coerce(key, value, types[key], source)
        if origins is not None:
            origins[key] = source


def resolve(
    cls: type,
    algo: str,
    env_id: str,
    config_file: Path | None = None,
    overrides: list[str] = (),
) -> tuple[TrainConfig, list[str]]:
    """Build the config of a run from defaults, tuned file, --config and --set, and validate it.

    Returns:
        The validated config and the list of sources applied, for the run's log.
    """
    values: dict[str, Any] = {"env": env_id}
    origins: dict[str, str] = {}
    sources = ["defaults"]
    shipped = tuned_defaults(algo, env_id)
    if shipped is not None:
        apply(values, shipped[0], cls, algo, shipped[1], origins)
        sources.append(shipped[1])
    if config_file is not None:
        from_file = read_toml(Path(config_file))
        if from_file.get("env", env_id) != env_id:
            raise ConfigError(
                f"config file '{config_file}' is for env '{from_file['env']}', "
                f"but --env is '{env_id}'"
            )
        apply(values, from_file, cls, algo, f"config file '{config_file}'", origins)
        sources.append(str(config_file))
    types = field_types(cls)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        if key not in types:
            raise ConfigError(
                f"unknown config key '{key}'{did_you_mean(key, types)}; "
                f"valid keys for {algo}: {', '.join(types)}"
            )
        if key == "env":
            raise ConfigError("the environment is chosen with --env, not --set env=...")
        values[key] = parse_value(key, text, types[key])
        origins.pop(key, None)
        sources.append(f"--set {key}")
    config = cls(**values)
    check_fields(config, origins)
    check_backend(config, algo)
    return config, sources


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as a flat dict of TOML-safe scalars."""
    return dataclasses.asdict(config)


def from_dict(cls: type, algo: str, values: dict[str, Any], source: str) -> TrainConfig:
    """Rebuild a config saved in a run directory, checking it as strictly as a user's file."""
    checked: dict[str, Any] = {}
    origins: dict[str, str] = {}
    apply(checked, values, cls, algo, source, origins)
    config = cls(**checked)
    check_fields(config, origins)
    check_backend(config, algo)
    return config
