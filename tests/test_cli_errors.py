"""Every bad-input path of the CLI: one `error:` line, exit status 2, and nothing saved is lost.

The rule (DESIGN.md, "Exact and safe"): unknown names, invalid values, missing or corrupt runs and
checkpoints, mismatched resumes are reported as ONE line on stderr that starts with `error: `,
names what is wrong and what is valid, exits 2, prints no traceback, and leaves every file that
was already saved byte-for-byte as it was.

One real run (q-learning on bellman/Corridor-v0, 2000 steps, checkpoints at 1000 and 2000) is
trained once for the module; a test that damages it works on a copy.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
from pathlib import Path

import pytest

from tests.conftest import CliResult, assert_user_error, run_here

STEPS = 2000
TRAIN_RUN = (
    "train",
    "q-learning",
    "--env",
    "bellman/Corridor-v0",
    "--steps",
    str(STEPS),
    "--set",
    "log_every=500",
    "--set",
    "checkpoint_every=1000",
    "--quiet",
)


def _cli(cwd: Path, *args: str) -> CliResult:
    """`bellman ARGS` in this process (`run_here`): the runs the tests start from."""
    return run_here(list(args), cwd)


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `root` (hidden and temp files included)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def cases(*rows: tuple[str, tuple[str, ...]]) -> list:
    """pytest params (argv, fragments) from (command line, fragments), the command as the id."""
    return [
        pytest.param(shlex.split(command), fragments, id=command or "(nothing)")
        for command, fragments in rows
    ]


def assert_unchanged(root: Path, before: dict[str, str]) -> None:
    """Every file under `root` is as `before` recorded it: none added, removed or changed."""
    after = snapshot(root)
    changes = {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
    }
    assert after == before, {kind: names for kind, names in changes.items() if names}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run directory (read-only by convention: copy it before damaging it)."""
    root = tmp_path_factory.mktemp("finished")
    result = _cli(root, *TRAIN_RUN, "--run-dir", "run")
    assert result.returncode == 0, result
    run = root / "run"
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step-{STEPS}"
    return run


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run at `tmp_path/run` (the CLI's cwd is tmp_path)."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


# ---- train: bad names and values, before any run directory exists ------------------------------

TRAIN = "train q-learning --env Taxi-v4"


@pytest.mark.parametrize(
    ("args", "fragments"),
    cases(
        ("train q-lerning --env Taxi-v4", ("'q-lerning'", "did you mean 'q-learning'", "sarsa")),
        ("train q-learning --env Taxii-v4", ("'Taxii-v4'", "did you mean 'Taxi-v4'")),
        ("train q-learning --env Taxi-v3", ("'Taxi-v3'", "deprecated", "Taxi-v4")),
        (f"{TRAIN} --set gama=0.9", ("'gama'", "did you mean 'gamma'", "valid keys")),
        (f"{TRAIN} --set gamma=1.5", ("'gamma'", "[0, 1]", "1.5")),
        (f"{TRAIN} --set gamma=-0.1", ("'gamma'", "[0, 1]", "-0.1")),
        (f"{TRAIN} --set alpha=0", ("'alpha'", "(0, 1]")),
        (f"{TRAIN} --steps -5", ("'steps'", "[1, inf)", "-5")),
        (f"{TRAIN} --seed -1", ("'seed'", "[0, inf)", "-1")),
        (f"{TRAIN} --set alpha=nan", ("'alpha'", "finite", "nan")),
        (f"{TRAIN} --set gamma=inf", ("'gamma'", "finite", "inf")),
        (f"{TRAIN} --set gamma=abc", ("'gamma'", "float", "'abc'")),
        (f"{TRAIN} --set log_every=2.5", ("'log_every'", "int", "'2.5'")),
        (f"{TRAIN} --set gamma", ("--set", "key=value", "'gamma'")),
        (f"{TRAIN} --set env=FrozenLake-v1", ("--env",)),
        (
            f"{TRAIN} --set epsilon_schedule=cosine",
            ("'epsilon_schedule'", "constant, linear, exponential", "'cosine'"),
        ),
        (f"{TRAIN} --set epsilon_schedule=linera", ("'linera'", "did you mean 'linear'")),
        (
            f"{TRAIN} --set epsilon_schedule=exponential --set epsilon_end=0",
            ("exponential", "epsilon_end", "linear"),
        ),
        ("train q-learning", ("--env",)),
        ("train", ("algorithm", "--resume")),
        ("train q-learning --env CartPole-v1", ("Discrete observation", "CartPole-v1")),
        (f"{TRAIN} --steps abc", ("--steps", "'abc'")),
    ),
)
def test_train_rejects_bad_input_before_creating_a_run(bellman, tmp_path, args, fragments):
    result = bellman(*args)
    assert_user_error(result, *fragments)
    assert result.stdout == ""
    assert not (tmp_path / "runs").exists(), sorted((tmp_path / "runs").iterdir())


def test_tabular_algorithm_on_a_continuous_env_leaves_no_run_dir(bellman, tmp_path):
    (tmp_path / "runs").mkdir()
    result = bellman("train", "sarsa", "--env", "CartPole-v1", "--run-dir", "runs/new")
    assert_user_error(result, "Discrete observation space", "CartPole-v1", "Taxi-v4")
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (None, ("does not exist",)),
        ("gamma = [\n", ("not valid TOML",)),
        ("gama = 0.9\n", ("'gama'", "did you mean 'gamma'", "valid keys")),
        ("gamma = 'high'\n", ("'gamma'", "float", "'high'")),
        ("gamma = 3.0\n", ("'gamma'", "[0, 1]", "3.0")),
        ('algo = "sarsa"\n', ("'sarsa'", "'q-learning'")),
        ('env = "FrozenLake-v1"\n', ("FrozenLake-v1", "Taxi-v4")),
        ("directory", ("cannot be read",)),
    ],
    ids=["missing", "not-toml", "unknown-key", "wrong-type", "out-of-range", "algo", "env", "dir"],
)
def test_bad_config_file(bellman, tmp_path, content, fragments):
    path = tmp_path / "my.toml"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    result = bellman(*shlex.split(TRAIN), "--config", "my.toml")
    assert_user_error(result, "'my.toml'", *fragments)
    assert not (tmp_path / "runs").exists()


# ---- eval / plot / resume on things that are not (intact) runs --------------------------------


VERBS = {
    "eval": ("eval",),
    "plot": ("plot",),
    "resume": ("train", "--resume"),
}


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("target", ["missing", "not-a-run"])
def test_path_that_is_not_a_run(bellman, tmp_path, verb, target):
    if target == "not-a-run":
        (tmp_path / "some-dir").mkdir()
        (tmp_path / "some-dir" / "notes.txt").write_text("hello\n")
    path = "no-such-run" if target == "missing" else "some-dir"
    before = snapshot(tmp_path)
    result = bellman(*VERBS[verb], path)
    expected = {
        ("missing", False): "does not exist",
        ("not-a-run", False): "config.toml",
        ("missing", True): "metrics.csv",
        ("not-a-run", True): "metrics.csv",
    }[target, verb == "plot"]
    assert_user_error(result, f"'{path}'", expected)
    assert_unchanged(tmp_path, before)


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in (-1, -9, len(data) // 2):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_config(run: Path, key: str, value: str) -> None:
    path = run / "config.toml"
    lines = path.read_text().splitlines()
    edited = [f"{key} = {value}" if line.split(" = ")[0] == key else line for line in lines]
    assert edited != lines
    path.write_text("\n".join(edited) + "\n")


LAST = f"step-{STEPS}"
DAMAGES = {
    "no-latest": (lambda run: (run / "checkpoints" / "latest").unlink(), ("latest",)),
    "dangling-latest": (
        lambda run: (run / "checkpoints" / "latest").write_text("step-999\n"),
        ("step-999",),
    ),
    "no-checkpoints": (lambda run: shutil.rmtree(run / "checkpoints"), ("no checkpoint",)),
    "tensors-corrupt": (
        lambda run: _flip_bytes(run / "checkpoints" / f"{LAST}.safetensors"),
        (f"{LAST}.safetensors", "sha256"),
    ),
    "tensors-missing": (
        lambda run: (run / "checkpoints" / f"{LAST}.safetensors").unlink(),
        (f"{LAST}.safetensors", "missing"),
    ),
    "json-not-json": (
        lambda run: (run / "checkpoints" / f"{LAST}.json").write_text("{not json"),
        (f"{LAST}.json", "corrupt"),
    ),
    "config-not-toml": (
        lambda run: (run / "config.toml").write_text("gamma = [\n"),
        ("config.toml", "corrupt"),
    ),
    "config-unknown-algo": (
        lambda run: _edit_config(run, "algo", '"deep-sarsa"'),
        ("'deep-sarsa'", "q-learning", "sarsa"),
    ),
    # A hand-edited value must be reported as coming from the run's config.toml: the user typed
    # no gamma on this command line.
    "config-invalid-value": (
        lambda run: _edit_config(run, "gamma", "5.0"),
        ("'gamma'", "[0, 1]", "config.toml"),
    ),
    # config.toml now names another env than the one the checkpoint was trained on.
    "config-other-env": (
        lambda run: _edit_config(run, "env", '"bellman/Recycling-v0"'),
        ("bellman/Corridor-v0", "bellman/Recycling-v0"),
    ),
}


@pytest.mark.parametrize("verb", ["eval", "resume"])
@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_run_is_reported_and_left_alone(bellman, run_copy, verb, damage):
    apply_damage, fragments = DAMAGES[damage]
    apply_damage(run_copy)
    before = snapshot(run_copy)
    args = ("eval", "run") if verb == "eval" else ("train", "--resume", "run", "--steps", "4000")
    result = bellman(*args)
    assert_user_error(result, *fragments)
    assert_unchanged(run_copy, before)


# ---- resume: mismatches must fail before anything is written ----------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    cases(
        ("train sarsa --resume run", ("'q-learning'", "'sarsa'")),
        ("train sarsa --resume run --steps 4000", ("'q-learning'", "'sarsa'")),
        ("train q-learning --resume run --set gamma=0.5", ("--set",)),
        ("train --resume run --env Taxi-v4", ("--env",)),
        ("train --resume run --seed 3", ("--seed",)),
        ("train --resume run --run-dir other", ("--run-dir",)),
        ("train --resume run", (f"{STEPS}", "--steps")),
        ("train --resume run --steps 1000", (f"{STEPS}", "--steps")),
        ("train --resume run --steps 0", ("'steps'", "[1, inf)")),
    ),
)
def test_failed_resume_changes_nothing(bellman, run_copy, tmp_path, args, fragments):
    before = snapshot(tmp_path)
    result = bellman(*args)
    assert_user_error(result, *fragments)
    assert_unchanged(tmp_path, before)


# ---- a new run never overwrites an existing one ------------------------------------------------


@pytest.mark.parametrize("algo", ["q-learning", "sarsa"])
def test_train_into_an_existing_run_dir_changes_nothing(bellman, run_copy, algo):
    before = snapshot(run_copy)
    result = bellman(
        "train", algo, "--env", "bellman/Corridor-v0", "--steps", "10", "--run-dir", "run"
    )
    assert_user_error(result, "'run'", "already exists", "--resume")
    assert_unchanged(run_copy, before)


def test_train_into_an_existing_file_changes_nothing(bellman, tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("do not touch\n")
    result = bellman(*shlex.split(TRAIN), "--steps", "10", "--run-dir", "precious.txt")
    assert_user_error(result, "'precious.txt'", "already exists")
    assert target.read_text() == "do not touch\n"


# ---- eval / plot arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    cases(
        ("eval run --episodes 0", ("--episodes", ">= 1", "0")),
        ("eval run --episodes -3", ("--episodes", ">= 1", "-3")),
        ("eval run --seed -1", ("--seed", "-1")),
        ("eval run --episodes many", ("--episodes", "'many'")),
        ("plot run --out x.jpg", ("--out", ".png", "x.jpg")),
        ("plot run --out no-such-dir/x.png", ("no-such-dir",)),
        ("plot run no-such-run", ("'no-such-run'",)),
    ),
)
def test_bad_eval_and_plot_arguments_change_nothing(bellman, run_copy, tmp_path, args, fragments):
    before = snapshot(tmp_path)
    result = bellman(*args)
    assert_user_error(result, *fragments)
    assert_unchanged(tmp_path, before)


def test_plot_of_a_corrupt_metrics_csv(bellman, run_copy):
    (run_copy / "metrics.csv").write_text("step,episode_return_mean\n500,abc\n")
    before = snapshot(run_copy)
    result = bellman("plot", "run")
    assert_user_error(result, "metrics.csv")
    assert_unchanged(run_copy, before)


# ---- plan, algos, argparse ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    cases(
        ("plan CartPole-v1", ("'CartPole-v1'", "transition table", "Taxi-v4")),
        ("plan Taxi-v4 --gamma 2", ("gamma", "[0, 1]", "2")),
        ("plan Taxi-v4 --gamma nan", ("gamma", "[0, 1]", "nan")),
        ("plan Taxi-v3", ("'Taxi-v3'", "deprecated", "Taxi-v4")),
        ("plan Taxi-v4 --format xml", ("'xml'", "table", "json")),
        ("algos nosuch", ("'nosuch'", "q-learning", "sarsa")),
        ("algos q-lerning", ("did you mean 'q-learning'",)),
        ("algos lm ppx", ("'lm ppx'", "did you mean 'lm ppo'", "lm pretrain")),
        ("train lm-ppo --env Taxi-v4", ("'lm-ppo'", "language-model step", "`bellman lm ppo`")),
        ("nosuch", ("'nosuch'", "train")),
        ("", ("command",)),
    ),
)
def test_other_commands(bellman, args, fragments):
    result = bellman(*args)
    assert_user_error(result, *fragments)
    assert result.stdout == ""
