"""What every benchmark repeats: the machine and versions it ran on, medians over seeds where a
failed seed counts as infinite, bellman / peer ratios, a Markdown table, and the JSON record.

The benchmarks are scripts, run from the repository root as `python benchmarks/NAME.py`; Python
puts the script's directory first on sys.path, so they `import common` (this file) directly.

Results go to benchmarks/results/NAME.json, written atomically (a temp file in the same
directory, then os.replace), so an interrupted benchmark never leaves half a file. Set
BELLMAN_BENCH_RESULTS=DIR to write them elsewhere (smoke runs that must not replace the
recorded results).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def results_path(name: str) -> Path:
    """Where the benchmark NAME writes its record (see the module docstring)."""
    return Path(os.environ.get("BELLMAN_BENCH_RESULTS") or RESULTS_DIR) / f"{name}.json"


def today() -> str:
    return time.strftime("%Y-%m-%d")


def processor() -> str:
    """The CPU as platform names it (its architecture where it has no better name)."""
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The platform, the processor and the number of CPUs the OS shows."""
    return {"platform": platform.platform(), "processor": processor(), "cpu_count": os.cpu_count()}


def versions(*modules: str) -> dict:
    """Python's version and each module's `__version__` (None for one that is not installed)."""
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in modules:
        try:
            found[name] = getattr(importlib.import_module(name), "__version__", "unknown")
        except ImportError:
            found[name] = None
    return found


def header(torch_threads: int | None = None, *modules: str) -> dict:
    """The first fields of every record: date, machine, versions and torch's thread count."""
    record = {"date": today(), "machine": machine(), "versions": versions(*modules)}
    if torch_threads is not None:
        record["torch_threads"] = torch_threads
    return record


def median(values: Iterable[float]) -> float:
    """The median, where a failed seed is math.inf (so more than half failing gives inf)."""
    values = list(values)
    return statistics.median(values) if values else math.nan


def ratio(ours: float, theirs: float) -> float:
    """ours / theirs; NaN when it means nothing (both infinite, or 0 / 0), inf for x / 0."""
    if (math.isinf(ours) and math.isinf(theirs)) or (ours == 0 and theirs == 0):
        return math.nan
    if theirs == 0:
        return math.inf
    return ours / theirs


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A Markdown table: `| a | b |`, the `|---|` line, then one line per row (cells as given)."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def write_results(name: str, record: dict, default=None) -> Path:
    """Write `record` as JSON to `results_path(name)`, atomically; print and return the path."""
    path = results_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1, default=default)
    handle = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{name}.", suffix=".tmp", delete=False, encoding="utf-8"
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # the temp file is private (0600); results are to share
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    print(f"wrote {path}")
    return path
