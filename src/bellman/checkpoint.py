"""Checkpoints: tensors in safetensors, everything else in JSON; atomic writes; never pickle.

A checkpoint named `step-N` is two files in a run's `checkpoints/` directory:
    step-N.safetensors   every array: Q-tables, network weights, optimizer state, replay memory
    step-N.json          algorithm, env, step, config, RNG states, counters, schema version and the
                         sha256 of the tensors file. Written last, so it is the commit marker.
and `checkpoints/latest` is a one-line text file naming the newest complete checkpoint.

Every file is written to a temporary file in the same directory, fsynced, then moved into place
with `os.replace`, so a crash at any moment leaves either the old or the new file, never half of
one. Loading checks the schema version, the algorithm and the sha256, and says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from bellman.errors import CheckpointError

SCHEMA_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same directory, fsync and os.replace."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except OSError as error:  # ENOSPC, EFBIG, EIO: name the file meant, not the temp file
        Path(temp_name).unlink(missing_ok=True)
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write` for text (UTF-8)."""
    atomic_write(path, text.encode("utf-8"))


def save(directory: Path, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Save a checkpoint `directory/name.{safetensors,json}` and point `latest` at it.

    Args:
        directory: the run's `checkpoints/` directory (created if missing).
        name: checkpoint name, `step-N`.
        arrays: name -> numpy array (contiguous copies are made where needed).
        meta: JSON-serialisable metadata; `schema_version` and `sha256` are added.

    Returns:
        Path of the JSON file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = save_arrays(
        {key: np.ascontiguousarray(value).reshape(np.shape(value)) for key, value in arrays.items()}
    )
    atomic_write(directory / f"{name}.safetensors", blob)
    record = {
        "schema_version": SCHEMA_VERSION,
        **meta,
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    json_path = directory / f"{name}.json"
    atomic_write_text(json_path, json.dumps(record, indent=1, sort_keys=True))
    atomic_write_text(directory / "latest", name + "\n")
    return json_path


def has_checkpoint(directory: Path) -> bool:
    """Whether `directory` (a run's `checkpoints/`) has a `latest` pointer: a run that died
    before its first checkpoint has none."""
    pointer = Path(directory) / "latest"
    return pointer.exists() or pointer.is_symlink()


def latest_name(directory: Path) -> str:
    """The name of the newest complete checkpoint in `directory`."""
    pointer = Path(directory) / "latest"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in '{directory}' (missing {pointer.name})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read '{pointer}': {error}") from None
    if not name or "/" in name or name.startswith("."):
        raise CheckpointError(f"'{pointer}' is corrupt: it names {name!r}")
    return name


def load(
    directory: Path, name: str | None = None, algo: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load checkpoint `name` (default: `latest`) and verify it.

    Args:
        directory: the `checkpoints/` directory.
        name: checkpoint name; the one `latest` names when None.
        algo: when given, the checkpoint must have been written by this algorithm.

    Returns:
        (arrays, meta).

    Raises:
        CheckpointError: missing files, bad JSON, wrong schema, wrong algorithm, sha256 mismatch.
    """
    directory = Path(directory)
    name = name or latest_name(directory)
    json_path = directory / f"{name}.json"
    tensor_path = directory / f"{name}.safetensors"
    try:
        meta = read_json(json_path, what=f"checkpoint '{json_path}'")
        blob = tensor_path.read_bytes()
    except FileNotFoundError as error:
        raise CheckpointError(
            f"checkpoint '{name}' is missing {Path(error.filename).name}"
        ) from None
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint '{name}': {error.strerror}") from None
    if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
        found = meta.get("schema_version") if isinstance(meta, dict) else None
        raise CheckpointError(
            f"checkpoint '{json_path}' has schema version {found!r}; "
            f"this bellman reads version {SCHEMA_VERSION}"
        )
    check_schema(meta, META_SCHEMA, f"checkpoint '{json_path}'")
    if algo is not None and meta.get("algo") != algo:
        raise CheckpointError(
            f"checkpoint '{json_path}' was written by '{meta.get('algo')}', not '{algo}'"
        )
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(
            f"checkpoint '{tensor_path}' is corrupt: its sha256 does not match {json_path.name}"
        )
    try:
        arrays = load_arrays(blob)
    except (SafetensorError, ValueError) as error:
        raise CheckpointError(f"checkpoint '{tensor_path}' is corrupt: {error}") from None
    return arrays, meta


#: Deepest nesting a checkpoint's JSON may have (configs and states are a few levels deep).
MAX_JSON_DEPTH = 32

#: What every checkpoint JSON holds: key -> type (a tuple of types), or a nested schema.
META_SCHEMA: dict[str, Any] = {
    "schema_version": int,
    "algo": str,
    "env": str,
    "step": "count",
    "config": dict,
    "state": dict,
    "run": {
        "episodes": "count",
        "recent_returns": "finite list",
        "recent_lengths": "count list",
        "metrics_rows": "count",
        "episode_rows": "count",
    },
    "sha256": str,
}


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file written by bellman, refusing nesting deeper than MAX_JSON_DEPTH before
    the parser recurses into it (a 100,000-deep line would exhaust Python's stack)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{what} is corrupt: {error}") from None
    depth = deepest = 0
    in_string = escaped = False
    for char in text:  # brackets outside strings: the nesting the parser would recurse into
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                raise CheckpointError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        elif char in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, int digit limits
        raise CheckpointError(f"{what} is corrupt: {error}") from None


def check_schema(values: dict, schema: dict, what: str, path: str = "") -> None:
    """Refuse a JSON object that lacks a key of `schema` or holds a value of the wrong kind.

    Kinds: a Python type; "count" (an int >= 0, not a bool); "finite list" (numbers, no NaN or
    infinity); "count list"; a nested dict schema.
    """
    for key, kind in schema.items():
        where = f"{path}{key}"
        if key not in values:
            raise CheckpointError(f"{what} has no '{where}'")
        value = values[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise CheckpointError(f"{what}: '{where}' must be an object, not {value!r:.40}")
            check_schema(value, kind, what, f"{where}.")
        elif not _is_kind(value, kind):
            raise CheckpointError(f"{what}: '{where}' must be {_KIND_NAMES.get(kind, kind)}, "
                                  f"not {value!r:.40}")  # fmt: skip


_KIND_NAMES = {int: "an integer", str: "a string", dict: "an object",
               "count": "an integer >= 0", "finite list": "a list of finite numbers",
               "count list": "a list of integers >= 0"}  # fmt: skip


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_kind(value: Any, kind) -> bool:
    if kind == "count":
        return _is_count(value)
    if kind == "finite list":
        return isinstance(value, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in value
        )
    if kind == "count list":
        return isinstance(value, list) and all(_is_count(x) for x in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def expect_array(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...], where: str):
    """Return `arrays[key]` after checking it exists and has `shape`."""
    if key not in arrays:
        raise CheckpointError(f"{where} has no tensor '{key}' (has: {', '.join(sorted(arrays))})")
    array = arrays[key]
    if tuple(array.shape) != tuple(shape):
        raise CheckpointError(
            f"{where}: tensor '{key}' has shape {tuple(array.shape)}, expected {tuple(shape)}"
        )
    return array


def prune(directory: Path, keep: int) -> None:
    """Delete all but the `keep` newest `step-N` checkpoints (never the one `latest` names)."""
    directory = Path(directory)
    current = latest_name(directory)
    steps = sorted(
        (int(path.stem.split("-")[1]), path.stem)
        for path in directory.glob("step-*.json")
        if path.stem.split("-")[1].isdigit()
    )
    for _, stem in steps[:-keep]:
        if stem == current:
            continue
        for suffix in (".json", ".safetensors"):
            (directory / f"{stem}{suffix}").unlink(missing_ok=True)
