"""What the command modules share: argument types, the checks of paths a command will write,
one-line messages, the training report, and the console.

A command that writes checks first that it can, so that a typo, a full or read-only place, or a
path into a run directory's own files costs nothing and overwrites nothing: `new_run_dir` for a
run directory to create, `writable_dir` for one a command writes into, `output_file` for a file
it writes. Each raises ConfigError (one `error:` line, exit status 2). The checks are made before
any work; whatever the file system refuses later (a disk that fills up) is caught by `main`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import unicodedata
from pathlib import Path

from bellman.errors import ConfigError
from bellman.run import check_names, check_writable_path, probe_directory, shorten

#: Seeds are stored as TOML integers and fed to numpy and torch: signed 64-bit.
SEED_LIMIT = 2**63
#: Files a run directory keeps for itself: no command writes over them but the one that owns them.
RUN_FILES = ("config.toml", "metrics.csv", "episodes.csv", "tokenizer.json", "eval.json",
             "plot.png")  # fmt: skip


# ---- argument types --------------------------------------------------------------------------
def seed(text: str) -> int:
    """argparse type of a seed: an integer in [0, 2**63), parsed as an integer (never a float)."""
    value = _integer(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**63), got {text}")
    return value


def at_least_one(text: str) -> int:
    """argparse type of a count that must be >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects an integer, got '{text}'") from None


def one_line(text: str) -> str:
    """`text` with every control or line-breaking character escaped as Python writes it in a
    string literal (newline -> \\n, ESC -> \\x1b), so a message is one line and a terminal
    shows it as typed."""
    return "".join(
        repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text
    )


# ---- paths a command writes ------------------------------------------------------------------
def new_run_dir(path: Path | None, flag: str = "--run-dir") -> None:
    """Check that run directory `path` (None: the default under `runs/`) can be created.

    An existing `path` is left to the run's own check (it refuses a non-empty one).
    """
    check_writable_path(Path("runs") if path is None else Path(path), flag)


def writable_dir(path: Path, what: str) -> None:
    """Check that files can be written in the existing directory `path` (a run a command will
    write into). A missing `path` is left to the commands' own "does not exist" errors."""
    if Path(path).is_dir():
        probe_directory(Path(path), f"{what} '{path}'")


def output_file(path: Path, flag: str, *, may_replace: tuple[str, ...] = ()) -> None:
    """Check that file `path` can be written: its name fits, its directory exists and takes new
    files, it is not a directory, and it is none of a run directory's own files (config.toml,
    metrics.csv, the checkpoints, ...) except the names in `may_replace`."""
    path = Path(path)
    what = f"{flag} '{shorten(str(path))}'"
    check_names(path, flag)
    if path.is_dir():
        raise ConfigError(f"{what} is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {what}: directory '{parent}' does not exist")
    target = path.resolve()
    run_dir = _run_dir_of(target)
    replaceable = run_dir == target.parent and target.name in may_replace
    if run_dir is not None and not replaceable:
        raise ConfigError(
            f"{what} is a file of run directory '{run_dir}', which needs it; write somewhere else"
        )
    probe_directory(parent, what)


def _run_dir_of(target: Path) -> Path | None:
    """The run directory `target` (resolved) is one of the own files of, or None."""
    parent = target.parent
    if (parent / "config.toml").is_file() and (
        target.name in RUN_FILES or target.name.startswith("events.out.tfevents")
    ):
        return parent
    for above in target.parents:
        if above.name == "checkpoints" and (above.parent / "config.toml").is_file():
            return above.parent
    return None


# ---- after training --------------------------------------------------------------------------
def report_training(run, resume: str, *, episodes: bool = True) -> int:
    """Print what a finished run reached, or, for a stopped one, how to resume it (`resume` is
    the command, e.g. "bellman train"); return the exit status (130 SIGINT, 143 SIGTERM)."""
    from bellman import checkpoint

    status = 143 if run.stop_signal == signal.SIGTERM else 130
    if run.stop_requested and not (run.dir / "checkpoints" / "latest").exists():
        sys.stderr.write("interrupted before the first checkpoint; nothing was kept: run the "
                         "same command again\n")  # fmt: skip
        return status
    step = checkpoint.load(run.dir / "checkpoints")[1]["step"]
    if run.stop_requested:
        sys.stderr.write(
            f"interrupted at step {step}; checkpoint saved. Resume with: "
            f"{resume} --resume {run.dir}\n"
        )
        return status
    counted = f" ({run.episodes} episodes)" if episodes else ""
    print(f"trained {run.algo} on {run.config.env} for {step} steps{counted}")
    if episodes and run.episodes:
        mean = run.episode_return_mean
        print(f"episode_return_mean (last {min(run.episodes, 100)} episodes): {mean:.3f}")
    for note in run.notes:
        print(note)
    print(f"run directory: {run.dir}")
    if (run.dir / "plot.png").exists():
        print(f"plot: {run.dir / 'plot.png'}")
    return 0


def overrides(args: argparse.Namespace) -> list[str]:
    """The `--set` items of a training command, then `--seed` and `--steps` as overrides."""
    items = list(args.set)
    items += [f"seed={args.seed}"] if args.seed is not None else []
    items += [f"steps={args.steps}"] if args.steps is not None else []
    return items


def check_resume_flags(args: argparse.Namespace, extra: tuple[str, ...] = ()) -> None:
    """Refuse the options a `--resume` cannot honour (the run keeps its own config)."""
    flags = (*extra, "--config", "--set", "--seed", "--run-dir")
    values = {flag: getattr(args, flag.strip("-").replace("-", "_")) for flag in flags}
    given = [flag for flag, value in values.items() if value is not None and value != []]
    if given:
        raise ConfigError(
            f"--resume continues a run with its own config; drop {', '.join(given)} "
            "(only --steps may change the target)"
        )


def console():
    """A rich console on stdout whose broken pipe is a BrokenPipeError (rich exits 1 itself)."""
    from rich.console import Console

    class _PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    return _PipeConsole(highlight=False)
