"""Operating-system errors and odd numbers at the front door: each is one `error:` line on
stderr, exit status 2, no traceback, and every file that existed is byte for byte as it was.

Before (issue 17, A7) these were tracebacks with exit status 1: a run directory under a file or
under /proc, a name over 255 bytes, `eval --record /proc/x.gif` (after overwriting eval.json),
`plot --out` to a place that takes no files, unreadable or read-only run directories,
`lm demos --out /nonexistent/x`, a full disk, /dev/full as stdout, a closed pipe; a seed past
2**63 failed after the run directory existed and 9007199254740993 was stored as ...992 (parsed
through a float); `--set $'gam\\nma=0.5'` gave a two-line error; `lm demos PT --out
PT/config.toml` replaced the run's config; `--prompt-words 0`, `--response-words -3` and
`--max-new-tokens 0` exited 0 with empty output. A Ctrl-C while Python shuts down printed a
traceback and exited 0.

Permission cases need a process that permissions bind: as root they run under `setpriv` with
every capability dropped (skipped without it); the full-disk case mounts a tiny tmpfs in a user
namespace (`unshare`, skipped where that is not allowed); "file too large" (RLIMIT_FSIZE) runs
everywhere.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from subprocess import PIPE

import pytest

from tests import forked
from tests.conftest import CliResult, assert_user_error, run_process
from tests.test_cli_errors import STEPS, TRAIN_RUN, _cli, snapshot

TRAIN = ("train", "q-learning", "--env", "bellman/Corridor-v0", "--steps", "100", "--quiet")
#: A GPT small enough to pretrain in two steps: only its run directory matters here.
TINY_LM = [
    "vocab_size=300", "context=32", "width=16", "heads=2", "layers=1", "batch_size=4", "steps=2",
    "log_every=1", "checkpoint_every=2", "warmup_steps=1", "eval_tokens=512", "device=cpu",
]  # fmt: skip
ENV = {**os.environ, "PYTHONHASHSEED": "0", "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
BELLMAN = [sys.executable, "-m", "bellman"]


def _run(argv: list[str], cwd: Path, **kwargs) -> CliResult:
    if argv[: len(BELLMAN)] == BELLMAN and set(kwargs) <= {"stdout"}:  # no wrapper, no limits
        return run_process(argv[len(BELLMAN) :], cwd, env=ENV, stdout=kwargs.get("stdout", PIPE))
    if "stdout" not in kwargs:
        kwargs["capture_output"] = True
    completed = subprocess.run(argv, cwd=cwd, text=True, timeout=300, env=ENV, **kwargs)
    return CliResult(completed)


def assert_refused(result: CliResult, root: Path, before: dict[str, str], *fragments: str):
    """One `error:` line naming `fragments`, exit 2, and no file under `root` added or changed."""
    assert_user_error(result, *fragments)
    assert snapshot(root) == before


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    result = _cli(root, *TRAIN_RUN, "--run-dir", "run")
    assert result.returncode == 0, result
    return root / "run"


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished q-learning run at tmp_path/run, with an eval.json."""
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    (run / "eval.json").write_text('{"sentinel": true}\n')
    return run


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    """A two-step `lm pretrain` run on pydoc topics (read-only by convention: copy to damage)."""
    root = tmp_path_factory.mktemp("lm")
    sets = [item for pair in (("--set", s) for s in TINY_LM) for item in pair]
    result = _cli(root, "lm", "pretrain", "--corpus", "pydoc", *sets, "--run-dir", "PT", "--quiet")
    assert result.returncode == 0, result
    return root / "PT"


@pytest.fixture
def lm_copy(lm_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(lm_run, tmp_path / "PT"))


# ---- run directories that cannot be made -----------------------------------------------------
@pytest.mark.parametrize(
    ("run_dir", "fragments"),
    [
        ("afile/run", ("'afile'", "not a directory")),
        ("afile/deeper/run", ("'afile'", "not a directory")),
        ("/proc/bellman-run", ("/proc", "cannot create files")),
        ("a" * 256, ("256 bytes", "255")),
        ("runs/" + "é" * 128, ("256 bytes", "255")),  # 128 characters, 256 bytes in UTF-8
    ],
    ids=["under-a-file", "under-a-file-deeper", "under-proc", "name-256", "name-256-bytes"],
)
def test_run_dir_that_cannot_be_made(tmp_path, run_dir, fragments):
    if run_dir.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    (tmp_path / "afile").write_text("precious\n")
    before = snapshot(tmp_path)
    assert_refused(_run([*BELLMAN, *TRAIN, "--run-dir", run_dir], tmp_path), tmp_path, before,
                   "--run-dir", *fragments)  # fmt: skip


def test_lm_run_dir_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("precious\n")
    before = snapshot(tmp_path)
    result = _run([*BELLMAN, "lm", "pretrain", "--corpus", "pydoc", "--run-dir", "afile/x"],
                  tmp_path)  # fmt: skip
    assert_refused(result, tmp_path, before, "'afile'", "not a directory")


# ---- outputs that cannot be written, checked before any work ---------------------------------
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["eval", "run", "--episodes", "2", "--record", "/proc/x.gif"], ("--record", "/proc")),
        (["eval", "run", "--episodes", "2", "--record", "run/checkpoints/x.gif"],
         ("--record", "file of run directory")),
        (["plot", "run", "--out", "/proc/x.png"], ("--out", "/proc")),
        (["plot", "run", "--out", "run/checkpoints/plot.png"], ("--out", "file of run directory")),
        (["plot", "run", "--out", "a" * 300 + ".png"], ("--out", "304 bytes", "255")),
    ],
    ids=["record-proc", "record-into-checkpoints", "plot-proc", "plot-into-checkpoints",
         "plot-name-too-long"],
)  # fmt: skip
def test_unwritable_output_is_refused_before_any_work(run_copy, tmp_path, args, fragments):
    before = snapshot(tmp_path)
    assert_refused(_run([*BELLMAN, *args], tmp_path), tmp_path, before, *fragments)


def test_record_of_an_env_without_frames_is_refused_before_eval(run_copy, tmp_path):
    """The lectures' MDPs render text only: --record is refused before eval.json is replaced
    (it was a ValueError traceback after eval.json had been written)."""
    before = snapshot(tmp_path)
    result = _run([*BELLMAN, "eval", "run", "--episodes", "2", "--record", "x.gif"], tmp_path)
    assert_refused(result, tmp_path, before, "--record", "rgb_array")


def test_lm_demos_out_into_a_missing_directory(lm_copy, tmp_path):
    before = snapshot(tmp_path)
    result = _run([*BELLMAN, "lm", "demos", "PT", "--out", "/nonexistent/x"], tmp_path)
    assert_refused(result, tmp_path, before, "--out", "/nonexistent")


@pytest.mark.parametrize("name", ["config.toml", "metrics.csv", "tokenizer.json",
                                  "checkpoints/latest", "checkpoints/step-2.json"])  # fmt: skip
def test_lm_output_never_replaces_a_run_file(lm_copy, tmp_path, name):
    before = snapshot(tmp_path)
    for command in ("demos", "label"):
        result = _run([*BELLMAN, "lm", command, "PT", "--out", f"PT/{name}"], tmp_path)
        assert_refused(result, tmp_path, before, "--out", "file of run directory")


# ---- numbers that used to slip through -------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["lm", "demos", "PT", "--prompt-words", "0", "--out", "d.jsonl"],
        ["lm", "demos", "PT", "--response-words", "-3", "--out", "d.jsonl"],
        ["lm", "label", "PT", "--max-new-tokens", "0", "--prompts", "2", "--out", "r.jsonl"],
        ["lm", "label", "PT", "--prompt-words", "0", "--prompts", "2", "--out", "r.jsonl"],
    ],
    ids=["demos-prompt-words-0", "demos-response-words--3", "label-max-new-tokens-0",
         "label-prompt-words-0"],
)  # fmt: skip
def test_lm_counts_below_one(lm_copy, tmp_path, args):
    before = snapshot(tmp_path)
    result = _run([*BELLMAN, *args], tmp_path)
    assert_refused(result, tmp_path, before, "at least 1")
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        [*TRAIN, "--seed", "99999999999999999999999", "--run-dir", "big"],
        [*TRAIN, "--seed", str(2**63), "--run-dir", "big"],
        [*TRAIN, "--set", "seed=99999999999999999999999", "--run-dir", "big"],
        ["train", "ppo", "--env", "CartPole-v1", "--steps", "64", "--seed", str(2**64),
         "--run-dir", "big", "--quiet"],
    ],
    ids=["seed-1e23", "seed-2**63", "set-seed-1e23", "ppo-seed-2**64"],
)  # fmt: skip
def test_seed_out_of_range_is_refused_before_the_run_directory(tmp_path, args):
    before = snapshot(tmp_path)
    assert_refused(_run([*BELLMAN, *args], tmp_path), tmp_path, before, "'seed'", "2**63")
    assert not (tmp_path / "big").exists()


def test_eval_seed_out_of_range(run_copy, tmp_path):
    before = snapshot(tmp_path)
    result = _run([*BELLMAN, "eval", "run", "--seed", str(2**63)], tmp_path)
    assert_refused(result, tmp_path, before, "--seed", "2**63")


def test_a_large_seed_is_stored_exactly(tmp_path):
    seed = 2**53 + 1  # 9007199254740993: a float rounds it to ...992
    result = _cli(tmp_path, *TRAIN, "--seed", str(seed), "--run-dir", "run")
    assert result.returncode == 0, result
    assert tomllib.loads((tmp_path / "run" / "config.toml").read_text())["seed"] == seed
    result = _cli(tmp_path, *TRAIN, "--set", f"seed={2**63 - 1}", "--run-dir", "top")
    assert result.returncode == 0, result
    assert tomllib.loads((tmp_path / "top" / "config.toml").read_text())["seed"] == 2**63 - 1


# ---- control characters never break the error line -------------------------------------------
@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ([*TRAIN, "--set", "gam\nma=0.5"], "'gam\\nma'"),
        ([*TRAIN, "--set", "gamma=0.5\r\nalpha=1"], "0.5\\r\\nalpha=1"),
        (["train", "q-\nlearning", "--env", "Taxi-v4"], "'q-\\nlearning'"),
        (["train", "q-learning", "--env", "Taxi\x1b[2J-v4"], "Taxi\\x1b[2J-v4"),
        (["algos", "ppo\u2028x"], "ppo\\u2028x"),
    ],
    ids=["set-key-newline", "set-value-crlf", "algo-newline", "env-escape", "line-separator"],
)  # fmt: skip
def test_control_characters_are_escaped(tmp_path, args, shown):
    before = snapshot(tmp_path)
    assert_refused(_run([*BELLMAN, *args], tmp_path), tmp_path, before, shown)


# ---- permissions --------------------------------------------------------------------------------
def _bound_by_permissions() -> list[str]:
    """A command prefix under which file permissions apply (they do not bind root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root without setpriv: permissions cannot be tested")
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all"]


@pytest.mark.parametrize(
    ("mode", "args"),
    [
        (0o000, ["eval", "run", "--episodes", "2"]),
        (0o000, ["train", "--resume", "run", "--steps", str(2 * STEPS)]),
        (0o000, ["plot", "run"]),
        (0o555, ["eval", "run", "--episodes", "2"]),
        (0o555, ["train", "--resume", "run", "--steps", str(2 * STEPS)]),
        (0o555, ["plot", "run"]),
    ],
    ids=["unreadable-eval", "unreadable-resume", "unreadable-plot", "read-only-eval",
         "read-only-resume", "read-only-plot"],
)  # fmt: skip
def test_unreadable_or_read_only_run_directory(run_copy, tmp_path, mode, args):
    prefix = _bound_by_permissions()
    before = snapshot(tmp_path)
    run_copy.chmod(mode)
    try:
        result = _run([*prefix, *BELLMAN, *args], tmp_path)
    finally:
        run_copy.chmod(0o755)
    assert_refused(result, tmp_path, before, "run", "Permission denied")


def test_read_only_lm_run_for_demos(lm_copy, tmp_path):
    prefix = _bound_by_permissions()
    before = snapshot(tmp_path)
    lm_copy.chmod(0o555)
    try:
        result = _run([*prefix, *BELLMAN, "lm", "demos", "PT"], tmp_path)  # default PT/demos.jsonl
    finally:
        lm_copy.chmod(0o755)
    assert_refused(result, tmp_path, before, "PT", "Permission denied")


# ---- a full disk, a file size limit, /dev/full, a closed pipe ----------------------------------
def test_full_disk_is_one_error_line(run_copy, tmp_path):
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode:
        pytest.skip("no user namespaces: cannot mount a small tmpfs")
    full = tmp_path / "full"
    full.mkdir()
    before = snapshot(tmp_path)
    fill = 'cat /dev/zero > "$0/fill" 2>/dev/null'  # until the 64 kB are full
    script = f'mount -t tmpfs -o size=64k tmpfs "$0" && {fill}; exec "$@"'
    result = _run([unshare, "-rm", "sh", "-c", script, str(full), *BELLMAN, "plot", "run",
                   "--out", str(full / "plot.png")], tmp_path)  # fmt: skip
    assert_refused(result, tmp_path, before, "plot.png", "No space left on device")


def test_file_size_limit_is_one_error_line(run_copy, tmp_path):
    def limit():  # a PNG plot is tens of kB
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    before = snapshot(tmp_path)
    result = _run([*BELLMAN, "plot", "run", "--out", "plot.png"], tmp_path, preexec_fn=limit)
    assert_refused(result, tmp_path, before, "plot.png", "File too large")


@pytest.mark.parametrize(
    "args",
    [["envs"], ["algos"], ["algos", "dqn"], ["plan", "Taxi-v4"],
     ["plan", "Taxi-v4", "--format", "json"], ["plan", "bellman/Recycling-v0", "--format", "json"]],
    ids=["envs", "algos", "algos-dqn", "plan-table", "plan-json", "plan-json-small"],
)  # fmt: skip
def test_stdout_on_a_full_device(tmp_path, args):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        result = _run([*BELLMAN, *args], tmp_path, stdout=full, stderr=subprocess.PIPE)
    assert_user_error(result, "standard output", "No space left on device")


@pytest.mark.parametrize(
    "args",
    [["envs"], ["algos"], ["plan", "Taxi-v4"]],
    ids=["envs", "algos", "plan-table"],
)  # fmt: skip
def test_a_closed_pipe_ends_quietly(tmp_path, args):
    """rich's own handling of a closed pipe exited 1; every command now exits 0 and quietly."""
    process = forked.start(args, tmp_path, ENV)
    process.stdout.close()  # the reader has gone before the first line
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 0, stderr
    assert stderr == ""


# ---- Ctrl-C after the work is done -----------------------------------------------------------
# Each script first gives SIGINT Python's usual handler, as a terminal would (a job started in
# the background inherits it ignored).
AT_EXIT = """
import atexit, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))  # Ctrl-C while Python shuts down
from bellman.cli import main
sys.exit(main())
"""

DURING_PLOT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
import bellman.plots
plot_runs = bellman.plots.plot_runs
def interrupted(*args, **kwargs):  # Ctrl-C while the final plot is drawn
    os.kill(os.getpid(), signal.SIGINT)
    return plot_runs(*args, **kwargs)
bellman.plots.plot_runs = interrupted
from bellman.cli import main
sys.exit(main())
"""


@pytest.mark.parametrize(
    ("script", "args"),
    [
        (AT_EXIT, ["plan", "bellman/Recycling-v0", "--format", "json"]),
        (AT_EXIT, ["envs"]),
        (DURING_PLOT, [*TRAIN, "--run-dir", "run"]),  # already 130 before: kept as the issue asks
    ],
    ids=["at-exit-plan", "at-exit-envs", "during-final-plot"],
)
def test_ctrl_c_after_the_work_ends_quietly_with_130(tmp_path, script, args):
    (tmp_path / "cli.py").write_text(script)
    result = _run([sys.executable, "cli.py", *args], tmp_path)
    assert result.returncode == 130, result
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 1, result
    if args[0] == "train":  # the run itself was finished and saved before the plot
        assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-100\n"
