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
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        blob = tensor_path.read_bytes()
    except FileNotFoundError as error:
        raise CheckpointError(
            f"checkpoint '{name}' is missing {Path(error.filename).name}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint '{json_path}' is corrupt: {error}") from None
    if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
        found = meta.get("schema_version") if isinstance(meta, dict) else None
        raise CheckpointError(
            f"checkpoint '{json_path}' has schema version {found!r}; "
            f"this bellman reads version {SCHEMA_VERSION}"
        )
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
