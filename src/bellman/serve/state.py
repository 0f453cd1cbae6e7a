"""What `bellman serve` was started with (`ServeState`), checked before the server starts, and
the small bounded cache of the agents and policies its pages have loaded.

The server only ever reads the run directories and shipped agents named here, looked up by
name: no page joins a path it was sent onto a directory, so a request cannot reach any other
file (`/runs/..%2F..%2Fetc` is an unknown name, 404).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bellman.errors import CheckpointError, ConfigError
from bellman.run import check_writable_path, read_run_config


class LoadedCache:
    """At most `size` loaded objects (agents, policies) by key, least recently used dropped
    first; each entry comes with a lock, since a search tree or an env serves one request at a
    time.

    Args:
        size: how many objects to keep.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._entries: OrderedDict[Any, tuple[Any, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], Any]) -> tuple[Any, threading.Lock]:
        """(object, its lock): the cached one, or `load()` now (outside the cache's lock, so a
        slow load does not hold up other keys; two loads of one key at once keep the first)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        loaded = (load(), threading.Lock())
        with self._lock:
            entry = self._entries.setdefault(key, loaded)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return entry

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class ServeState:
    """The server's inputs, by name.

    Attributes:
        runs: name -> run directory the server was started with (names are the directories'
            base names, made unique with `-2`, `-3`, ...).
        agents: name -> directory of a shipped agent asked for with `--agent NAME`.
        labels: the JSONL file preference labels are appended to (`--labels FILE`), or None.
        cache: the agents and policies loaded so far (bounded).
    """

    runs: dict[str, Path]
    agents: dict[str, Path] = field(default_factory=dict)
    labels: Path | None = None
    cache: LoadedCache = field(default_factory=LoadedCache, compare=False, repr=False)

    def sources(self) -> dict[str, Path]:
        """Every run and agent by name (agents first; the names never collide)."""
        return {**self.agents, **self.runs}

    def algo(self, name: str) -> str:
        """The algorithm that trained run or agent `name` (its config.toml's `algo`)."""
        return str(read_run_config(self.sources()[name])["algo"])

    def config(self, name: str) -> dict[str, Any]:
        """The raw config.toml of run or agent `name`."""
        return read_run_config(self.sources()[name])


def make_state(
    run_dirs: Iterable[Path] = (), agent_names: Iterable[str] = (), labels: Path | None = None
) -> ServeState:
    """Check what `bellman serve` was given and name it.

    Raises:
        CheckpointError: a run directory that does not exist or has no readable config.toml.
        ConfigError: an unknown shipped agent, or a labels file whose directory cannot be
            written (or that is a directory).
    """
    agents: dict[str, Path] = {}
    for name in agent_names:
        if name not in agents:
            agents[name] = _resolve_agent(name)
    runs: dict[str, Path] = {}
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        read_run_config(run_dir)  # exists, is a run, names its algorithm
        resolved = run_dir.resolve()
        if resolved in runs.values():
            continue
        name, n = run_dir.resolve().name, 1
        while name in runs or name in agents:
            n += 1
            name = f"{resolved.name}-{n}"
        runs[name] = resolved
    if labels is not None:
        labels = Path(labels)
        if labels.is_dir():
            raise ConfigError(f"--labels '{labels}' is a directory; give a JSONL file")
        check_writable_path(labels.parent if str(labels.parent) else Path("."), "--labels")
    return ServeState(runs=runs, agents=agents, labels=labels)


def _resolve_agent(name: str) -> Path:
    """The directory of shipped agent `name` (`bellman.agents.resolve`)."""
    try:
        from bellman import agents
    except ImportError:  # pragma: no cover - the agents package ships with bellman
        raise ConfigError(f"unknown agent '{name}': this bellman ships no agents") from None
    path = Path(agents.resolve(name))
    if not (path / "config.toml").is_file():
        raise CheckpointError(f"shipped agent '{name}' has no config.toml at '{path}'")
    return path
