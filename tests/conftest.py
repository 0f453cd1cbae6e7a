"""Shared fixtures: a `bellman` CLI runner and single-threaded torch for bit-exact comparisons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import forked

os.environ.setdefault("PYTHONHASHSEED", "0")
# every `bellman` subprocess a test starts computes on one thread too: two pytest workers whose
# subprocesses each ran torch on 2 threads oversubscribed CI's 2 cores, and a Pong evaluation
# took 35 s instead of 3 s (convolutions 30x slower)
os.environ.setdefault("OMP_NUM_THREADS", "1")
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


def run_process(
    args,
    cwd: Path,
    timeout: float = 300,
    input: str | None = None,
    env: dict[str, str] | None = None,
    stdout=subprocess.PIPE,
) -> CliResult:
    """`bellman ARGS` as a process of its own (`tests.forked.start`), in `cwd`: `input` on its
    standard input, `env` over the suite's variables, `stdout` where its output goes."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "COLUMNS": "200", **(env or {})}
    stdin = subprocess.PIPE if input is not None else None
    process = forked.start(args, cwd, env, stdin=stdin, stdout=stdout)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return CliResult(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))


@pytest.fixture
def bellman(tmp_path: Path):
    """Run `bellman ARGS...` in a subprocess with tmp_path as working directory."""

    def run(*args: str, timeout: float = 300, cwd: Path | None = None) -> CliResult:
        return run_process(args, cwd or tmp_path, timeout)

    return run


def run_here(args: list[str], cwd: Path) -> CliResult:
    """`bellman ARGS` in `cwd` through `bellman.cli.main` in this process: the command's code,
    output and exit status without a new interpreter, whose imports (torch, torch._dynamo,
    matplotlib) cost about 3 s of a core each time. A traceback counts as exit status 1 and a
    SystemExit as its code, as the command's would. What needs a process of its own (a signal,
    a kill, the interpreter's own output) starts `python -m bellman`; so does everything when
    this process hashes strings with a random seed (PYTHONHASHSEED unset), which a `bellman`
    subprocess never does here.
    """
    if sys.flags.hash_randomization:
        return run_process(args, cwd)
    import contextlib
    import io
    import traceback

    import torch

    from bellman.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    here, threads, columns = Path.cwd(), torch.get_num_threads(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "200"
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([*map(str, args)])
            except SystemExit as exit:  # as the interpreter ends on it
                status = exit.code if isinstance(exit.code, int) else 1
            except Exception:
                traceback.print_exc()
                status = 1
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return CliResult(subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue()))


#: Runs the `bellman` commands of the JSON file argv[1] ([[cwd, [args...]], ...]) one after
#: another with `run_here` and writes [[status, stdout, stderr], ...] to argv[2].
MAIN_EACH = """
import json, sys
from tests.conftest import run_here
with open(sys.argv[1]) as handle:
    results = [run_here(args, cwd) for cwd, args in json.load(handle)]
with open(sys.argv[2], "w") as handle:
    json.dump([[r.returncode, r.stdout, r.stderr] for r in results], handle)
"""


def run_in_one_process(commands: list[tuple[Path, list[str]]]) -> list[CliResult]:
    """`bellman ARGS` for each (cwd, args) of `commands`, one after another in one `python -c`
    process of their own (`tests.forked`; `run_here` there): a table of bad inputs goes through
    a real interpreter (its stdout, stderr and exit status; a crash fails the table, not the
    test process) and one process's start instead of one a case."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        listing, found = Path(scratch) / "commands.json", Path(scratch) / "results.json"
        listing.write_text(json.dumps([[str(cwd), [*map(str, args)]] for cwd, args in commands]))
        env = {**os.environ, "PYTHONHASHSEED": "0", "COLUMNS": "200"}
        process = forked.start([listing, found], Path(__file__).parent.parent, env, code=MAIN_EACH)
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, (process.returncode, stderr[-3000:])
        results = json.loads(found.read_text())
    return [CliResult(subprocess.CompletedProcess(args, *result))
            for (_, args), result in zip(commands, results, strict=True)]  # fmt: skip


def bad_train_input_tests(algo: str, table: list[tuple[list[str], list[str]]]):
    """(fixture, test) for a module: `bellman train ALGO ARGS --run-dir run` for each (ARGS,
    fragments) of `table` must print one `error:` line naming every fragment, exit with status 2
    and leave no run directory. The commands run each in a fresh directory, all in one process
    (`run_in_one_process`), on the first case's use.

    Usage: `bad_input, test_bad_ALGO_input_is_one_error_line = bad_train_input_tests(...)`."""

    @pytest.fixture(scope="module")
    def bad_input(tmp_path_factory) -> list[tuple[CliResult, Path]]:
        root = tmp_path_factory.mktemp("bad-input")
        cwds = [root / f"case-{i}" for i in range(len(table))]
        for cwd in cwds:
            cwd.mkdir()
        commands = [(cwd, ["train", algo, *args, "--run-dir", "run"])
                    for cwd, (args, _) in zip(cwds, table, strict=True)]  # fmt: skip
        return list(zip(run_in_one_process(commands), cwds, strict=True))

    @pytest.mark.parametrize("case", range(len(table)))
    def test(bad_input, case):
        result, cwd = bad_input[case]
        assert_user_error(result, *table[case][1])
        assert not (cwd / "run").exists()

    return bad_input, test


@pytest.fixture
def bellman_here(tmp_path: Path):
    """Run `bellman ARGS...` in this process (`run_here`) with tmp_path as working directory:
    for tests of what a command computes and writes, not of the process around it."""

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        return run_here(list(args), cwd or tmp_path)

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


def _final_state(run_dir: Path, step: int):
    """(arrays of checkpoint step-N, metrics rows without timing columns, episodes.csv text)."""
    import csv

    from safetensors.numpy import load_file

    from bellman.run import TIMING_COLUMNS

    arrays = load_file(run_dir / "checkpoints" / f"step-{step}.safetensors")
    with open(run_dir / "metrics.csv") as handle:
        metrics = [
            {k: v for k, v in row.items() if k not in TIMING_COLUMNS}
            for row in csv.DictReader(handle)
        ]
    return arrays, metrics, (run_dir / "episodes.csv").read_text()


def assert_killed_run_resumes_exactly(cwd: Path, train_args: list[str], steps: int):
    """Train `bellman *train_args` once in one go; start it again as a process of its own, SIGKILL
    it as soon as its first checkpoint exists, resume it, and check the two runs end bit for bit
    the same: every array of the final checkpoint `step-<steps>`, metrics.csv (timing columns
    aside), episodes.csv. The run in one go and the resume run in this process (`run_here`).

    Returns:
        The final checkpoint's arrays.
    """
    import json
    import time

    import numpy as np

    one_go = run_here([*train_args, "--run-dir", "one-go"], cwd)
    assert one_go.returncode == 0, one_go
    expected = _final_state(cwd / "one-go", steps)

    process = subprocess.Popen(
        [sys.executable, "-m", "bellman", *train_args, "--run-dir", "killed"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    latest = cwd / "killed" / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while not latest.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait()
    stopped = json.loads((latest.parent / f"{latest.read_text().strip()}.json").read_text())
    assert stopped["step"] < steps  # it really was stopped part-way

    resumed = run_here(["train", "--resume", "killed", "--quiet"], cwd)
    assert resumed.returncode == 0, resumed
    arrays, metrics, episodes = _final_state(cwd / "killed", steps)
    assert set(arrays) == set(expected[0])
    for key, value in expected[0].items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
    assert metrics == expected[1]
    assert episodes == expected[2]
    return arrays


class HashEvaluator:
    """Priors and values that depend on each state alone (never on the rest of the batch), so
    searches driven together must equal searches run one by one (and games played
    together, games played alone); records batch sizes."""

    def __init__(self, action_size: int, value_bound: float = 1.0):
        self.action_size, self.value_bound = action_size, value_bound
        self.batch_sizes: list[int] = []

    def evaluate(self, states):
        self.batch_sizes.append(len(states))
        priors, values = [], []
        for state in states:
            rng = np.random.default_rng(abs(hash(state)) % 2**32)
            priors.append(rng.dirichlet(np.ones(self.action_size)))
            values.append(rng.uniform(-self.value_bound, self.value_bound))
        return np.array(priors, np.float32), np.array(values, np.float32)


def train_fast_and_plain(algo: str, env_id: str, overrides: list[str], tmp_path: Path):
    """Train `algo` from one seed twice, with fast = true and fast = false (the speed path and
    the plain autograd path); returns ({fast: final checkpoint arrays}, {fast: metrics rows}).
    On CartPole the two draw the same actions, so their episodes must be the same to the bit:
    checked here."""
    import csv

    from safetensors.numpy import load_file

    import bellman as library

    arrays, rows = {}, {}
    for fast in ("true", "false"):
        run = library.train(algo, env_id, overrides=[*overrides, f"fast={fast}"],
                            run_dir=tmp_path / fast, quiet=True)  # fmt: skip
        (last,) = (run.dir / "checkpoints").glob("*.safetensors")
        with open(run.dir / "metrics.csv") as handle:
            arrays[fast], rows[fast] = load_file(last), list(csv.DictReader(handle))
    if env_id == "CartPole-v1":  # the same episodes, returns to the last digit
        returns = {fast: [row["episode_return_mean"] for row in rows[fast]] for fast in rows}
        assert returns["true"] == returns["false"] and any(returns["true"])
    return arrays, rows


# ---- scheduling under pytest-xdist (`make test`: two workers) ----------------------------------
def shared_fixture_scope(rootpath: Path, nodeid: str) -> str:
    """The unit of work a test belongs to: a directory whose conftest.py defines a session- or
    package-scoped fixture (tests/distributed: one local Ray; tests/lm: one pretrained GPT;
    tests/serve), else its module when that defines a module- or session-scoped fixture, else
    the test alone.
    pytest-xdist builds such a fixture once in every worker that runs one of its tests:
    AlphaZero's 23-second strength run was trained twice when its two tests went to both
    workers. (Its own `--dist loadgroup` cannot group them here: with pytest 9 it no longer
    marks the node ids it groups by.)"""
    module = nodeid.split("::", 1)[0]
    directory = Path(module).parent
    while directory.parts[1:]:  # up to, not including, tests/
        conftest = rootpath / directory / "conftest.py"
        text = conftest.read_text() if conftest.exists() else ""
        if 'scope="session"' in text or 'scope="package"' in text:
            return str(directory)
        directory = directory.parent
    text = (rootpath / module).read_text() if (rootpath / module).is_file() else ""
    if 'scope="module"' in text or 'scope="session"' in text:
        return module
    return nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n N` (load balancing, one test at a time) with the tests that share a fixture sent to
    one worker together (`shared_fixture_scope`), the largest such groups first."""
    if config.getvalue("dist") != "load":
        return None
    from functools import cache

    from xdist.scheduler import LoadScopeScheduling

    scope = cache(shared_fixture_scope)

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope(config.rootpath, nodeid)

    return SharedFixtureScheduling(config, log)
