"""Shared fixtures: a `bellman` CLI runner and single-threaded torch for bit-exact comparisons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("PYTHONHASHSEED", "0")
if "torch" in sys.modules:  # pragma: no cover - tabular tests never import torch
    sys.modules["torch"].set_num_threads(1)


class CliResult:
    """What a `bellman` subprocess printed and returned."""

    def __init__(self, completed: subprocess.CompletedProcess):
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr

    def __repr__(self) -> str:
        return f"rc={self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


@pytest.fixture
def bellman(tmp_path: Path):
    """Run `bellman ARGS...` in a subprocess with tmp_path as working directory."""

    def run(*args: str, timeout: float = 300, cwd: Path | None = None) -> CliResult:
        env = {**os.environ, "PYTHONHASHSEED": "0", "COLUMNS": "200"}
        completed = subprocess.run(
            [sys.executable, "-m", "bellman", *map(str, args)],
            cwd=cwd or tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        return CliResult(completed)

    return run


def assert_user_error(result: CliResult, *fragments: str) -> None:
    """Exit status 2, exactly one `error:` line on stderr naming every fragment, no traceback."""
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("error: "), result
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
