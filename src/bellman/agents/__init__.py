"""Trained agents that ship inside the package, each with a model card.

    names()        the shipped agents, sorted
    resolve(name)  the agent's directory: a read-only run directory (config.toml,
                   checkpoints/latest and its checkpoint) that the run loaders read as they read
                   any run: `bellman.zero.play.load_agent`, `bellman.api.load_policy`,
                   `bellman.api.evaluate_run`, `bellman.lm.runs.load_lm`
    card(name)     its model card (card.json): algorithm, env, config, the command that trained
                   it, its measured evaluation, the date and the machine

`bellman agents` lists them; `--agent NAME` stands for `--checkpoint RUN_DIR` (or RUN_DIR) in
`bellman play`, `move`, `gtp`, `eval` and `serve`.

A shipped checkpoint holds only what acting needs: `pack` copies a run's config.toml (and its
tokenizer.json, for a language model) and its latest checkpoint without the training state
(optimizer moments, replay memory, target networks, the arena's best network, lm ppo's value
model, RNG tensors: the arrays under `TRAINING_ONLY`). The JSON half keeps its counters and the
sha256 of the new tensors file, so the checkpoint loaders check a shipped agent as they check
any run (sha256, schema, shapes), and a corrupt shipped file is a CheckpointError, not a
traceback. A stripped checkpoint cannot be resumed (`bellman train --resume` needs the
optimizer state), only played and evaluated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bellman import checkpoint
from bellman.errors import CheckpointError, ConfigError, did_you_mean
from bellman.run import read_run_config

#: Where the agents live: one directory per agent, named after it.
AGENTS_DIR = Path(__file__).resolve().parent

#: Array-name prefixes of training state that acting never reads (dropped by `pack`).
TRAINING_ONLY = ("optim/", "replay/", "target/", "best/", "critic/",
                 "torch_rng", "cuda_rng", "sample_rng")  # fmt: skip

#: Files of a run besides its checkpoint that loading reads (a language model's tokenizer).
RUN_FILES = ("config.toml", "tokenizer.json")

#: What every card.json holds (`card` checks it).
CARD_KEYS = ("name", "algorithm", "env", "headline", "command", "evaluation", "config", "date",
             "machine")  # fmt: skip


def names() -> list[str]:
    """The shipped agents (the directories here with a card.json), sorted."""
    return sorted(path.parent.name for path in AGENTS_DIR.glob("*/card.json"))


def resolve(name: str) -> Path:
    """The directory of shipped agent `name`.

    Raises:
        ConfigError: no agent of that name ("unknown agent 'x'; shipped agents: a, b").
    """
    shipped = names()
    if name not in shipped:
        raise ConfigError(
            f"unknown agent '{name}'{did_you_mean(name, shipped)}; shipped agents: "
            f"{', '.join(shipped) or 'none'} (see `bellman agents`)"
        )
    return AGENTS_DIR / name


def card(name: str) -> dict[str, Any]:
    """The model card of shipped agent `name` (its card.json).

    Raises:
        ConfigError: an unknown agent.
        CheckpointError: a card that is missing, corrupt or lacks one of CARD_KEYS.
    """
    path = resolve(name) / "card.json"
    values = checkpoint.read_json(path, what=f"model card '{path}'")
    missing = [key for key in CARD_KEYS if not isinstance(values, dict) or key not in values]
    if missing:
        raise CheckpointError(f"model card '{path}' has no {', '.join(missing)}")
    return values


def pack(run_dir: Path, destination: Path) -> Path:
    """Copy run `run_dir` into `destination` as a shipped agent: its RUN_FILES and its latest
    checkpoint without the TRAINING_ONLY arrays (same name, same JSON, a new sha256).

    Returns:
        `destination`.

    Raises:
        CheckpointError: `run_dir` is not a run or its checkpoint does not load.
        ConfigError: `destination` exists and is not empty.
    """
    run_dir, destination = Path(run_dir), Path(destination)
    read_run_config(run_dir)  # a run, naming its algorithm
    source = run_dir / "checkpoints"
    name = checkpoint.latest_name(source)
    arrays, meta = checkpoint.load(source, name)
    if destination.exists() and any(destination.iterdir()):
        raise ConfigError(f"'{destination}' exists and is not empty; give a new directory")
    destination.mkdir(parents=True, exist_ok=True)
    for file in RUN_FILES:
        if (run_dir / file).is_file():
            shutil.copyfile(run_dir / file, destination / file)
    kept = {key: value for key, value in arrays.items() if not key.startswith(TRAINING_ONLY)}
    meta = {key: value for key, value in meta.items() if key not in ("schema_version", "sha256")}
    checkpoint.save(destination / "checkpoints", name, kept, meta)
    return destination


def write_card(name: str, values: dict[str, Any], directory: Path = AGENTS_DIR) -> Path:
    """Write `directory/name/card.json` (atomically) after checking it has every CARD_KEYS."""
    missing = [key for key in CARD_KEYS if key not in values]
    if missing:
        raise ConfigError(f"model card of '{name}' has no {', '.join(missing)}")
    path = Path(directory) / name / "card.json"
    checkpoint.atomic_write_text(path, json.dumps(values, indent=1) + "\n")
    return path
