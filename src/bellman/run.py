"""The run directory: where a training run writes everything, and how it is resumed.

    runs/<algo>-<env>-<YYYYmmdd-HHMMSS>/
        config.toml         the resolved config (algo, env and every field), enough to rerun
        metrics.csv         one row per log step: step, wall_time, episode_return_mean, ...
        episodes.csv        one row per finished episode: episode, step, return, length
        events.out.tfevents.*   TensorBoard events with the same scalars
        checkpoints/        step-N.safetensors + step-N.json, and `latest`
        plot.png            learning curves, written when training ends

A `Run` is what an algorithm's `train(config, env, run)` talks to: `run.log(...)` for metrics,
`run.log_episode(...)` at the end of each episode, `run.checkpoint_due(step)` and `run.save(...)`
at safe points, `run.stop_requested` to honour Ctrl-C. It owns the episode statistics (the window
behind `episode_return_mean`) and the row counts of the CSV files, and stores them in every
checkpoint, so that a resumed run truncates its files to the checkpoint and then writes exactly
the rows the uninterrupted run would have written.

Ctrl-C (SIGINT) and SIGTERM only set a flag; the algorithm saves at its next safe point and the
CLI exits 130/143 with a line telling how to resume. A second Ctrl-C aborts at once, which is safe
because every write is atomic.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from bellman import checkpoint
from bellman.config import TrainConfig, to_dict
from bellman.errors import CheckpointError, ConfigError, NonFiniteError

#: Episodes behind `episode_return_mean` and `episode_length_mean`.
EPISODE_WINDOW = 100
#: Columns that measure the machine, not the algorithm: they differ between identical runs.
TIMING_COLUMNS = ("wall_time", "steps_per_second", "eval_seconds")


def default_run_dir(algo: str, env_id: str, root: Path = Path("runs")) -> Path:
    """`runs/<algo>-<env>-<YYYYmmdd-HHMMSS>`, with a suffix if that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{algo}-{env_id.replace('/', '-')}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The raw `config.toml` of a run directory, or a CheckpointError saying what is missing."""
    import tomllib

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory '{run_dir}' does not exist")
    path = run_dir / "config.toml"
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"'{run_dir}' is not a run directory: it has no config.toml"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"'{path}' is corrupt: {error}") from None
    if not isinstance(values.get("algo"), str):
        raise CheckpointError(f"'{path}' does not say which algorithm trained the run (no algo)")
    return values


def _next_multiple(step: int, every: int) -> int:
    """The first multiple of `every` after `step`."""
    return (step // every + 1) * every


def _truncate_csv(path: Path, rows: int) -> None:
    """Keep the header and the first `rows` data rows of a CSV file (atomically)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    checkpoint.atomic_write_text(path, "".join(lines[: rows + 1]) if rows else "")


class _CsvLog:
    """An append-only CSV file whose columns are fixed by its first row."""

    def __init__(self, path: Path, rows: int = 0):
        self.path = path
        self.rows = rows
        self.columns: list[str] | None = None
        self._handle = None
        self._writer = None
        if rows and path.exists():
            with open(path, encoding="utf-8", newline="") as handle:
                self.columns = next(csv.reader(handle))

    def write(self, row: dict[str, Any]) -> None:
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        missing = set(row) - set(self.columns)
        if missing:
            raise ValueError(f"{self.path.name}: new columns {sorted(missing)} after the header")
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8", newline="")
            self._writer = csv.writer(self._handle, lineterminator="\n")
        if new_file:
            self._writer.writerow(self.columns)
        self._writer.writerow([_format(row.get(column, "")) for column in self.columns])
        self.rows += 1

    def flush(self) -> None:
        """Push buffered rows to disk (before a checkpoint records the row count)."""
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _format(value: Any) -> str:
    """CSV text of a value: floats with repr (round-trips exactly), NaN as empty."""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


class _TensorBoard:
    """Scalars to a TensorBoard event file, with tensorboard's own record format (no torch).

    Written synchronously through a buffered file: tensorboard's asynchronous writer keeps a
    thread alive that halves the speed of a pure-Python training loop (GIL hand-offs).
    """

    def __init__(self, run_dir: Path, purge_step: int | None):
        import os
        import socket

        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = Event, Summary
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self._writer = RecordWriter(open(run_dir / name, "wb"))
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            # Tells TensorBoard to drop events at steps >= purge_step from earlier files: the
            # resumed run writes them again.
            start = SessionLog(status=SessionLog.START)
            self._write(Event(wall_time=time.time(), step=purge_step, session_log=start))

    def _write(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def scalars(self, step: int, values: dict[str, float], wall_time: float) -> None:
        summary = self._summary(
            value=[
                self._summary.Value(tag=tag, simple_value=float(value))
                for tag, value in values.items()
            ]
        )
        self._write(self._event(wall_time=wall_time, step=int(step), summary=summary))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class Run:
    """A run directory open for training (new or resumed). See the module docstring.

    Nothing is written when a `Run` is made: `create` and `resume` only check. The directory, its
    config.toml, the truncation of a resumed run's logs and the TensorBoard file all happen in
    `open()`, which the first write (or `session`) calls, after the algorithm has built its
    learner and restored the checkpoint into it. A crash, a refused checkpoint, an impossible
    allocation or a Ctrl-C before that leaves no directory behind, or an existing one untouched.
    """

    def __init__(
        self, run_dir: Path, algo: str, config: TrainConfig, restored=None, quiet=False, *,
        fresh: bool = True, write_config: bool = True, lock: RunLock | None = None,
    ):  # fmt: skip
        self.dir = Path(run_dir)
        self.algo = algo
        self.config = config
        self.quiet = quiet
        #: (arrays, meta) of the checkpoint this run resumes from, or None for a fresh run.
        self.restored: tuple[dict[str, np.ndarray], dict[str, Any]] | None = restored
        self.stop_requested = False
        self.stop_signal: int | None = None
        #: Lines the algorithm wants the CLI to print when training ends (e.g. why it stopped).
        self.notes: list[str] = []
        state = restored[1]["run"] if restored else {}
        self.episodes = int(state.get("episodes", 0))
        self._returns = deque(state.get("recent_returns", []), maxlen=EPISODE_WINDOW)
        self._lengths = deque(state.get("recent_lengths", []), maxlen=EPISODE_WINDOW)
        self._rows = int(state.get("metrics_rows", 0)), int(state.get("episode_rows", 0))
        self.start_step = int(restored[1]["step"]) if restored else 0
        self._next_checkpoint = (
            self.start_step // config.checkpoint_every + 1
        ) * config.checkpoint_every
        self._fresh, self._write_config, self._lock = fresh, write_config, lock
        self.opened = self._closed = self._saved = self._created = False
        #: Callables run by `open()` once the directory exists, for files an algorithm keeps
        #: beside its logs (a language model's tokenizer.json).
        self.on_open: list = []
        self._clock = time.perf_counter()
        self._clock_step = self.start_step
        self._progress = None

    # ---- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, algo: str, config: TrainConfig, run_dir: Path | None = None, quiet=False):
        """A new run in `run_dir` (default `runs/<algo>-<env>-<time>`), which must not exist or
        be empty; checked now, made by `open()`."""
        run_dir = Path(run_dir) if run_dir is not None else default_run_dir(algo, config.env)
        check_new_run_dir(run_dir, algo)
        return cls(run_dir, algo, config, quiet=quiet)

    @classmethod
    def resume(cls, run_dir: Path, algo: str, config: TrainConfig, restored, quiet=False,
               write_config: bool = False):  # fmt: skip
        """An existing run at a loaded checkpoint (`restored` = (arrays, meta) from
        `checkpoint.load`, or None to start a run that never saved one over). Takes the run's
        lock and checks the checkpoint's run state against the logs; `open()` then truncates
        the logs to the rows written before the checkpoint (and rewrites config.toml when
        `write_config`, for a new --steps)."""
        run_dir = Path(run_dir)
        lock = RunLock(run_dir)
        try:
            if restored is not None:
                check_run_state(run_dir, restored[1]["run"])
        except BaseException:
            lock.release()
            raise
        return cls(run_dir, algo, config, restored=restored, quiet=quiet, fresh=False,
                   write_config=write_config, lock=lock)  # fmt: skip

    def open(self) -> None:
        """Make the run directory real (see the class docstring); idempotent."""
        if self.opened:
            return
        if self._fresh:
            self._created = not self.dir.exists()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.dir)
            check_new_run_dir(self.dir, self.algo, locked=True)
        if self._fresh or self._write_config:
            write_run_config(self.dir, self.algo, self.config)
        metrics_rows, episode_rows = self._rows
        if not self._fresh:
            _truncate_csv(self.dir / "metrics.csv", metrics_rows)
            _truncate_csv(self.dir / "episodes.csv", episode_rows)
        self._metrics = _CsvLog(self.dir / "metrics.csv", metrics_rows)
        self._episode_log = _CsvLog(self.dir / "episodes.csv", episode_rows)
        self._tensorboard = _TensorBoard(
            self.dir, purge_step=None if self._fresh else self.start_step
        )
        self.opened = True
        for write in self.on_open:
            write()

    def abandon(self) -> None:
        """After a failure: a new run that never saved a checkpoint (a crash, a NaN, a second
        Ctrl-C before the first one) removes what it wrote, so the same command can simply be
        run again; a run with a checkpoint stays for `--resume`."""
        if not (self._fresh and self.opened) or self._saved or self._lock is None:
            return
        import shutil

        self.close_logs()
        paths = [self.dir] if self._created else list(self.dir.iterdir())
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def close_logs(self) -> None:
        """Close the logs (idempotent); the lock stays."""
        if self.opened and not self._closed:
            self._closed = True
            self._metrics.close()
            self._episode_log.close()
            self._tensorboard.close()

    def close(self) -> None:
        """Close the logs and release the run's lock (idempotent)."""
        self.close_logs()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---- logging --------------------------------------------------------------------------
    def log_episode(self, step: int, episode_return: float, length: int) -> None:
        """Record a finished episode (episodes.csv, the return window, TensorBoard)."""
        if not math.isfinite(episode_return):
            raise NonFiniteError(f"episode return is {episode_return} at step {step}")
        self.open()
        self.episodes += 1
        self._returns.append(float(episode_return))
        self._lengths.append(int(length))
        self._episode_log.write(
            {
                "episode": self.episodes,
                "step": step,
                "return": float(episode_return),
                "length": int(length),
            }
        )
        self._tensorboard.scalars(
            step, {"episode/return": episode_return, "episode/length": length}, time.time()
        )

    @property
    def episode_return_mean(self) -> float:
        """Mean return of the last EPISODE_WINDOW finished episodes (NaN before the first)."""
        return float(np.mean(self._returns)) if self._returns else math.nan

    def log(self, step: int, **scalars: float) -> dict[str, Any]:
        """Write one metrics row: step, timing, episode statistics, then the algorithm's scalars."""
        for name, value in scalars.items():
            if isinstance(value, float) and math.isnan(value) is False and not math.isfinite(value):
                raise NonFiniteError(f"{name} is {value} at step {step}")
        self.open()
        now = time.perf_counter()
        rate = (step - self._clock_step) / max(now - self._clock, 1e-9)
        self._clock, self._clock_step = now, step
        row = {
            "step": step,
            "wall_time": round(time.time(), 3),
            "steps_per_second": round(rate, 1),
            "episodes": self.episodes,
            "episode_return_mean": self.episode_return_mean,
            "episode_length_mean": float(np.mean(self._lengths)) if self._lengths else math.nan,
            **scalars,
        }
        self._metrics.write(row)
        finite = {
            key: value
            for key, value in row.items()
            if key not in ("step", "wall_time") and not math.isnan(float(value))
        }
        self._tensorboard.scalars(step, finite, row["wall_time"])
        if self._progress is not None:
            label, value = _headline(row)
            self._progress.update(self._task, completed=step, rate=rate, label=label, value=value)
        return row

    # ---- checkpoints ----------------------------------------------------------------------
    def checkpoint_due(self, step: int) -> bool:
        """True at the first safe point after each `checkpoint_every` steps, or when stopping."""
        return self.stop_requested or self.checkpoint_scheduled(step)

    def checkpoint_scheduled(self, step: int) -> bool:
        """True at the first safe point after each `checkpoint_every` steps (signals aside)."""
        return step >= self._next_checkpoint

    def save(self, step: int, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> Path:
        """Write checkpoint `step-N` with the algorithm's arrays and state plus the run's own."""
        self.open()
        self._metrics.flush()
        self._episode_log.flush()
        self._tensorboard.flush()
        meta = {
            "algo": self.algo,
            "env": self.config.env,
            "step": int(step),
            "config": to_dict(self.config),
            "state": state,
            "run": {
                "episodes": self.episodes,
                "recent_returns": list(self._returns),
                "recent_lengths": list(self._lengths),
                "metrics_rows": self._metrics.rows,
                "episode_rows": self._episode_log.rows,
            },
        }
        path = checkpoint.save(self.dir / "checkpoints", f"step-{step}", arrays, meta)
        self._saved = True
        checkpoint.prune(self.dir / "checkpoints", self.config.keep_checkpoints)
        self._next_checkpoint = _next_multiple(step, self.config.checkpoint_every)
        return path

    # ---- the training loop's context ------------------------------------------------------
    @contextmanager
    def session(self, start_step: int):
        """Progress bar and signal handlers around an algorithm's loop; closes the logs after."""
        previous = {}

        def request_stop(signum, _frame):
            if self.stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_requested, self.stop_signal = True, signum
            if not self.quiet:  # os.write: print() is not safe inside a signal handler
                os.write(2, (f"\nstopping at the next safe point (at the latest the checkpoint "
                             f"at step {self._next_checkpoint}); Ctrl-C again aborts at once and "
                             "the run resumes from its last checkpoint\n").encode())  # fmt: skip

        for signum in (signal.SIGINT, signal.SIGTERM):  # first, so no signal finds us half-open
            previous[signum] = signal.signal(signum, request_stop)
        progress = None if self.quiet else _progress_bar()
        try:
            self.open()
            if progress is not None:
                progress.start()
                self._progress = progress
                self._task = progress.add_task(
                    f"{self.algo} {self.config.env}",
                    total=self.config.steps,
                    completed=start_step,
                    rate=0.0,
                    label="return",
                    value=self.episode_return_mean,
                )
            yield self
            if self.stop_requested:  # stopped before its first checkpoint: as after a failure
                self.abandon()
        except BaseException:
            self.abandon()
            raise
        finally:
            if progress is not None:
                progress.stop()
                self._progress = None
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.close()


@contextmanager
def ctrl_c_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then act on it as the handler in place would
    have (a KeyboardInterrupt by default): for imports of native libraries. A KeyboardInterrupt
    raised while torch imports can run inside Python code that C++ called, and then aborts the
    process ("terminate called after throwing an instance of 'pybind11::error_already_set'",
    SIGABRT) or is swallowed by importlib ("Exception ignored in ... _get_module_lock"), and
    the command goes on as if no Ctrl-C came. Outside the main thread (where no handler can be
    set) the block runs as it is.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)
    elif received and previous == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)


#: What the progress bar shows when a run has no episodes (language models, AlphaZero's
#: learner): the first of these its rows carry.
HEADLINES = ("reward", "held_out_perplexity", "held_out_accuracy", "loss")


def _headline(row: dict) -> tuple[str, float]:
    """(name, value) for the progress bar: the mean return, else a headline metric."""
    candidates = ("episode_return_mean", *HEADLINES)
    for key in candidates:
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return ("return" if key == "episode_return_mean" else key), float(value)
    return "return", math.nan


def _progress_bar():
    """A rich progress bar on stderr: steps, steps/s and the recent mean return (or, for runs
    without episodes, their headline metric)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} steps/s"),
        TextColumn("{task.fields[label]} {task.fields[value]:>9.2f}"),
        console=Console(stderr=True),
        transient=False,
    )


def check_new_run_dir(run_dir: Path, algo: str, locked: bool = False) -> None:
    """A new run may only go where nothing is: no file, or an empty directory (or, once
    `open()` holds the lock, a directory with no config.toml yet)."""
    run_dir = Path(run_dir)
    command = algo.replace("lm-", "bellman lm ") if algo.startswith("lm-") else "bellman train"
    taken = CheckpointError(
        f"run directory '{run_dir}' already exists; continue it with "
        f"`{command} --resume {run_dir}` or choose another --run-dir"
    )
    if locked:
        if (run_dir / "config.toml").exists():
            raise taken
        return
    if run_dir.exists() or run_dir.is_symlink():
        if not run_dir.is_dir() or any(run_dir.iterdir()):
            raise taken
    check_writable_path(run_dir, "--run-dir")


#: Longest file name (one path component) in bytes on Linux, macOS and Windows file systems.
NAME_MAX = 255


def check_writable_path(path: Path, what: str) -> None:
    """Refuse, before anything is written, a directory `path` that cannot be made or written in:
    a name longer than file systems allow, a regular file on the way, a place that takes no new
    files (read-only, /proc). The nearest existing directory is probed with an empty file."""
    path = Path(path)
    check_names(path, what)
    label = f"{what} '{shorten(str(path))}'"
    if path.exists():
        if path.is_dir():
            probe_directory(path, label)
        return
    ancestor = next(parent for parent in path.parents if os.path.lexists(parent))
    if not ancestor.is_dir():
        raise ConfigError(f"{label}: '{ancestor}' is a file, not a directory")
    probe_directory(ancestor, label)


def check_names(path: Path, what: str) -> None:
    """Every component of `path` fits in NAME_MAX bytes."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise ConfigError(
                f"{what} '{shorten(str(path))}': the name '{shorten(part)}' is {size} bytes; "
                f"file systems allow at most {NAME_MAX}"
            )


def probe_directory(directory: Path, what: str) -> None:
    """Create and remove an empty file in `directory`: proof that files can be made there."""
    import tempfile

    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=".bellman-probe-")
    except OSError as error:
        reason = error.strerror
        raise ConfigError(f"{what}: cannot create files in '{directory}': {reason}") from None
    os.close(handle)
    os.unlink(name)


def shorten(text: str, keep: int = 40) -> str:
    """`text`, cut after `keep` characters for a one-line message."""
    return text if len(text) <= keep else f"{text[:keep]}...({len(text)} characters)"


def check_run_state(run_dir: Path, state: dict[str, Any]) -> None:
    """The logs hold at least the rows the checkpoint counts, and its episode window fits."""
    for key, name in (("metrics_rows", "metrics.csv"), ("episode_rows", "episodes.csv")):
        rows = state[key]
        found = _data_rows(Path(run_dir) / name)
        if rows > found:
            raise CheckpointError(
                f"run '{run_dir}': its checkpoint counts {rows} rows of {name} but the file "
                f"has {found}; the run directory is damaged"
            )
    for key in ("recent_returns", "recent_lengths"):
        if len(state[key]) > EPISODE_WINDOW:
            raise CheckpointError(
                f"run '{run_dir}': its checkpoint's {key} holds {len(state[key])} episodes, "
                f"at most {EPISODE_WINDOW}"
            )


def _data_rows(path: Path) -> int:
    """Data rows of a CSV log (lines after the header; 0 for a missing file)."""
    try:
        with open(path, "rb") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise CheckpointError(f"cannot read '{path}': {error.strerror}") from None


class RunLock:
    """An exclusive lock (fcntl.flock on the directory itself) held for the life of a run, so
    that a run directory has one writer at a time; a second process gets a CheckpointError."""

    def __init__(self, run_dir: Path):
        import fcntl

        try:
            self._fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise CheckpointError(
                f"cannot open run directory '{run_dir}': {error.strerror}"
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise CheckpointError(
                f"run directory '{run_dir}' is in use by another bellman process; wait for it "
                "to finish (or stop it) first"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def write_run_config(run_dir: Path, algo: str, config: TrainConfig) -> None:
    """Write `config.toml`: the algorithm's name and every resolved field."""
    text = tomli_w.dumps({"algo": algo, **to_dict(config)})
    checkpoint.atomic_write_text(Path(run_dir) / "config.toml", text)
