"""Crafted or damaged checkpoint JSON: every resume (and eval) refuses it with one `error:` line,
exit status 2, and the run directory byte for byte as it was (logs, config.toml, checkpoints).

Before the schema, removing `run` (or a garbage `state`, `"step": "abc"`, `metrics_rows: -1`)
gave a traceback after metrics.csv and episodes.csv had been truncated to 0 bytes, and a
100,000-deep JSON line was a RecursionError.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import assert_user_error, run_in_one_process
from tests.test_cli_errors import STEPS, TRAIN_RUN, _cli, assert_unchanged, snapshot

LAST = f"step-{STEPS // 2}"  # resume from the middle checkpoint: its logs get truncated


def _edit(run: Path, change) -> None:
    """Point `latest` at the middle checkpoint and apply `change` to its JSON text."""
    checkpoints = run / "checkpoints"
    (checkpoints / "latest").write_text(LAST + "\n")
    path = checkpoints / f"{LAST}.json"
    path.write_text(change(path.read_text()))


def _set(*keys_and_value):
    """A change that sets meta[k1][k2]... = value (or deletes the key when value is DELETE)."""
    *keys, value = keys_and_value

    def change(text: str) -> str:
        meta = json.loads(text)
        target = meta
        for key in keys[:-1]:
            target = target[key]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
        return json.dumps(meta)

    return change


DELETE = object()
DEEP = 100_000

CRAFTED = {
    "no-run": (_set("run", DELETE), ("'run'",)),
    "no-state": (_set("state", DELETE), ("'state'",)),
    "state-is-a-string": (_set("state", "abc"), ("'state'", "object")),
    "step-is-a-string": (_set("step", "abc"), ("'step'", "integer >= 0")),
    "step-negative": (_set("step", -5), ("'step'", "integer >= 0")),
    "step-a-bool": (_set("step", True), ("'step'",)),
    "metrics-rows-negative": (_set("run", "metrics_rows", -1), ("run.metrics_rows",)),
    "metrics-rows-beyond-file": (_set("run", "metrics_rows", 10**6), ("metrics.csv", "1000000")),
    "episode-rows-a-float": (_set("run", "episode_rows", 1.5), ("run.episode_rows",)),
    "returns-with-nan": (_set("run", "recent_returns", [1.0, float("nan")]), ("finite",)),
    "returns-not-a-list": (_set("run", "recent_returns", "x"), ("recent_returns",)),
    "window-too-long": (_set("run", "recent_lengths", [1] * 101), ("recent_lengths", "100")),
    "algo-not-a-string": (_set("algo", 7), ("'algo'",)),
    "no-sha256": (_set("sha256", DELETE), ("'sha256'",)),
    "deep-nesting": (
        lambda text: text.replace('"config": {', f'"config": {{"x": {"[" * DEEP}{"]" * DEEP},', 1),
        ("nested deeper",),
    ),
    "huge-integer": (
        lambda text: re.sub(r'"step": \d+', '"step": ' + "9" * 5000, text),
        ("corrupt",),
    ),  # fmt: skip
    "top-level-list": (lambda text: "[" + text + "]", ("schema version",)),
    "state-of-another-algorithm": (_set("state", {"iterations": 3}), ("python_rng",)),
    "garbage-agent-rng": (
        _set("state", "agent_rng", {"bit_generator": "PCG64", "state": 5}),
        ("agent_rng", "numpy's PCG64"),
    ),  # fmt: skip
    "env-rng-of-another-generator": (
        _set("state", "env_rng", {"bit_generator": "MT19937", "state": {}}),
        ("env_rng", "numpy's PCG64"),
    ),
    "no-python-rng": (_set("state", "python_rng", DELETE), ("python_rng",)),
    "not-json": (lambda text: text[: len(text) // 2], ("corrupt",)),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tabular run with checkpoints at STEPS/2 and STEPS (read-only: copy it)."""
    root = tmp_path_factory.mktemp("crafted")
    result = _cli(root, *TRAIN_RUN, "--run-dir", "run")
    assert result.returncode == 0, result
    return root / "run"


def _command(verb: str) -> list[str]:
    if verb == "eval":
        return ["eval", "run", "--episodes", "1"]
    return ["train", "--resume", "run", "--steps", str(2 * STEPS)]


@pytest.fixture(scope="module")
def refused(finished, tmp_path_factory) -> dict:
    """(name, verb) -> (result, working directory, its snapshot before): every crafted copy's
    resume and eval, all in one process of their own (`run_in_one_process`)."""
    cases, commands = {}, []
    for name, (change, _) in CRAFTED.items():
        for verb in ("resume", "eval"):
            cwd = tmp_path_factory.mktemp(f"{name}-{verb}")
            _edit(Path(shutil.copytree(finished, cwd / "run")), change)
            cases[name, verb] = (cwd, snapshot(cwd))
            commands.append((cwd, _command(verb)))
    results = run_in_one_process(commands)
    return {
        key: (result, *case) for (key, case), result in zip(cases.items(), results, strict=True)
    }


@pytest.mark.parametrize("verb", ["resume", "eval"])
@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_checkpoint_json_is_refused_and_changes_nothing(refused, name, verb):
    result, cwd, before = refused[name, verb]
    fragments = CRAFTED[name][1]
    if verb == "eval" and name in EVAL_LENIENT:  # eval reads only the weights: it may succeed
        assert result.returncode in (0, 2), result
        assert "Traceback" not in result.stderr, result
        return
    assert_user_error(result, *fragments)
    assert_unchanged(cwd, before)


#: Damage that only a resume meets (eval does not restore the learner's state or the logs).
EVAL_LENIENT = {
    "metrics-rows-beyond-file",
    "window-too-long",
    "state-of-another-algorithm",
    "garbage-agent-rng",
    "env-rng-of-another-generator",
    "no-python-rng",
}


def test_a_refused_resume_then_a_good_one_continues_the_run(
    bellman, bellman_here, finished, tmp_path
):
    """The logs a refused resume left alone are the ones the good resume continues (that one
    in this process)."""
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    good = (run / "checkpoints" / f"{LAST}.json").read_text()
    _edit(run, _set("run", DELETE))
    assert bellman("train", "--resume", "run").returncode == 2
    (run / "checkpoints" / f"{LAST}.json").write_text(good)
    result = bellman_here("train", "--resume", "run")
    assert result.returncode == 0, result
    rows = (run / "metrics.csv").read_text().splitlines()
    steps = [int(line.split(",")[0]) for line in rows[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS, steps
