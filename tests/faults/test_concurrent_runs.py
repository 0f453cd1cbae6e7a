"""Two processes on one run directory: one of them trains, the other gets one `error:` line.

Before the lock, two `train --run-dir D` started together both exited 0 with their rows
interleaved in one metrics.csv, and two concurrent `--resume D` duplicated rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bellman.run import TIMING_COLUMNS, RunLock
from tests import forked

STEPS = 60_000
TRAIN = ["train", "q-learning", "--env", "bellman/Corridor-v0", "--steps", str(STEPS),
         "--set", "log_every=500", "--set", "checkpoint_every=20000", "--quiet"]  # fmt: skip


def _start(cwd: Path, *args: str) -> forked.ForkedProcess:
    return forked.start(args, cwd)


def _finish(process: forked.ForkedProcess) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS}
                for row in csv.DictReader(handle)]  # fmt: skip


def _assert_one_wins(results: list[tuple[int, str]]) -> None:
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(stderr for code, stderr in results if code == 2)
    lines = loser.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), loser
    assert "in use by another bellman process" in lines[0] or "already exists" in lines[0]


@pytest.fixture(scope="module")
def solo(tmp_path_factory) -> list[dict]:
    """The metrics of the same run trained alone."""
    root = tmp_path_factory.mktemp("solo")
    code, stderr = _finish(_start(root, *TRAIN, "--run-dir", "run"))
    assert code == 0, stderr
    return _rows(root / "run" / "metrics.csv")


@pytest.mark.parametrize("existing", [False, True], ids=["new", "empty-directory"])
def test_two_new_runs_in_one_directory(tmp_path, solo, existing):
    if existing:
        (tmp_path / "run").mkdir()
    first = _start(tmp_path, *TRAIN, "--run-dir", "run")
    second = _start(tmp_path, *TRAIN, "--run-dir", "run")
    _assert_one_wins([_finish(first), _finish(second)])
    assert _rows(tmp_path / "run" / "metrics.csv") == solo  # no row twice, none interleaved


RESUME = ["train", "--resume", "run", "--steps", str(STEPS), "--quiet"]


@pytest.fixture(scope="module")
def resumed_alone(tmp_path_factory) -> list[dict]:
    """The metrics of a run trained to 20,000 steps, then resumed alone to STEPS."""
    root = tmp_path_factory.mktemp("resumed")
    for args in ([*TRAIN, "--run-dir", "run", "--steps", "20000"], RESUME):
        code, stderr = _finish(_start(root, *args))
        assert code == 0, stderr
    return _rows(root / "run" / "metrics.csv")


def test_two_resumes_of_one_run(tmp_path, resumed_alone):
    code, stderr = _finish(_start(tmp_path, *TRAIN, "--run-dir", "run", "--steps", "20000"))
    assert code == 0, stderr
    results = [_finish(process) for process in [_start(tmp_path, *RESUME) for _ in range(2)]]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results  # (a late second one finds the target reached: also 2)
    assert _rows(tmp_path / "run" / "metrics.csv") == resumed_alone


def test_a_locked_directory_refuses_a_resume_until_released(bellman, tmp_path):
    assert bellman(*TRAIN, "--run-dir", "run", "--steps", "20000").returncode == 0
    before = (tmp_path / "run" / "metrics.csv").read_bytes()
    lock = RunLock(tmp_path / "run")  # as a training process holds it
    try:
        result = bellman("train", "--resume", "run", "--steps", "40000", "--quiet")
        assert result.returncode == 2, result
        assert result.stderr.startswith("error: ") and "in use" in result.stderr, result
        assert (tmp_path / "run" / "metrics.csv").read_bytes() == before
    finally:
        lock.release()
    assert bellman("train", "--resume", "run", "--steps", "40000", "--quiet").returncode == 0
