"""`python -m bellman` processes forked from a parent that has imported bellman's dependencies
once, for the tests that need a process of their own (a signal, a kill, two processes on one run
directory, an exit status and what the interpreter prints).

Why: a fresh `python -m bellman train dqn ...` spends about 4 s of a core importing before its
first step (measured with `-X importtime` on 2026-12-07: torch 2.3-2.5 s, and torch._dynamo
1.8 s, which the first optimizer's `add_param_group` imports), and the suite starts about 250
such processes. Here one server process per pytest worker (`python tests/forked.py SOCKET`)
imports them once, then forks a child for each command, which runs `bellman` exactly as
`python -m bellman` does (`runpy`, `__main__`, sys.argv, the working directory, the
environment, the three standard streams) and ends as that interpreter ends (its exit status, its
traceback, a signal's death); the server reports the child's exit status back.

What could differ from a fresh interpreter, and how it is kept out:
- an import that prints (a warning): the server refuses to start if its imports print anything;
- a variable read when the interpreter starts or a library is imported (PYTHON*, locale,
  OMP_NUM_THREADS, HF_*, TMPDIR, ...): a command whose environment differs from the server's in
  one of those runs as a fresh process instead (`start`);
- the server forks with one thread (it runs no torch code; it refuses to start otherwise).
`python -c CODE` runs the same way (`tests.conftest.run_in_one_process`); tests of the installed
console script, of the first seconds of a fresh interpreter and of other programs start real
processes.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading

#: Variables read when the interpreter starts or a library is imported: a command whose
#: environment differs from the server's in one of these is started fresh.
STARTUP_PREFIXES = ("PYTHON", "LANG", "LC_", "OMP_", "MKL_", "OPENBLAS", "HF_", "TORCH_",
                    "CUDA", "TRANSFORMERS", "TMPDIR", "TEMP", "TMP", "HOME", "XDG_", "MPL",
                    "RAY_")  # fmt: skip


# ---- the server ---------------------------------------------------------------------------
def _preload() -> None:
    """What a `bellman` command imports (torch._dynamo: the first optimizer imports it)."""
    import matplotlib.pyplot  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401

    import bellman.api  # noqa: F401
    import bellman.cli.main  # noqa: F401
    import bellman.lm.model  # noqa: F401  (transformers, after the variables it sets)

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def serve(path: str) -> dict:
    """Accept commands on the Unix socket `path`, fork a child for each, send back its process
    id and then its exit status (as subprocess reports it: -N for a signal). Returns only in a
    child, with its command; ends when its standard input closes (the pytest worker is gone)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(16)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    print("ready", flush=True)
    children: dict[int, socket.socket] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj is sys.stdin:
                if not sys.stdin.buffer.read1(4096):
                    os._exit(0)
            elif key.fileobj is listener:
                connection, _ = listener.accept()
                message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    for closing in (listener, connection, *children.values()):
                        closing.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_read)
                    os.close(wake_write)
                    for fd, standard in zip(fds, (0, 1, 2), strict=True):
                        os.dup2(fd, standard)
                        os.close(fd)
                    return json.loads(message)
                for fd in fds:
                    os.close(fd)
                children[pid] = connection
                _tell(connection, pid)
            else:
                os.read(wake_read, 4096)
                while children:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    connection = children.pop(pid)
                    _tell(connection, os.waitstatus_to_exitcode(status))
                    connection.close()


def _tell(connection: socket.socket, number: int) -> None:
    """Send `number` to a test, which may have stopped listening (a timeout): the server goes on."""
    try:
        connection.send(str(number).encode())
    except OSError:
        pass


def _run_command(command: dict) -> None:
    """In the child: become `python -m bellman ARGS` (or `python -c CODE ARGS`) in the command's
    directory and environment."""
    import runpy

    os.chdir(command["cwd"])
    os.environ.clear()
    os.environ.update(command["env"])
    if command["code"] is None:
        sys.path[0] = os.getcwd()
        sys.argv = ["-m", *command["args"]]
        runpy.run_module("bellman", run_name="__main__", alter_sys=True)
    else:
        sys.path[0] = ""
        sys.argv = ["-c", *command["args"]]
        exec(compile(command["code"], "<string>", "exec"), {"__name__": "__main__"})


# ---- the client (in the pytest worker) ----------------------------------------------------
_SERVER: dict[str, object] = {}


def _server_env() -> dict[str, str]:
    """This process's variables with PYTHONHASHSEED=0: the server's, and a command's default."""
    return {**os.environ, "PYTHONHASHSEED": "0"}


def _socket_path() -> str:
    """The server's socket, the server started on first use."""
    if "path" not in _SERVER:
        import tempfile

        path = os.path.join(tempfile.mkdtemp(prefix="bellman-forked-"), "socket")
        server = subprocess.Popen(
            [sys.executable, __file__, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=_server_env(), cwd=os.path.dirname(__file__),
        )  # fmt: skip
        first = server.stdout.readline()
        if first != b"ready\n":
            server.kill()
            raise RuntimeError(f"the forking server did not start: {first!r} "
                               f"{server.stderr.read().decode()[-2000:]}")  # fmt: skip
        _SERVER.update(path=path, server=server, env=_server_env())
        atexit.register(_stop_server)
    return _SERVER["path"]


def _stop_server() -> None:
    """Close the server's standard input (it ends there) and remove its socket's folder."""
    import shutil

    _SERVER["server"].stdin.close()
    _SERVER["server"].wait(30)
    shutil.rmtree(os.path.dirname(_SERVER["path"]), ignore_errors=True)


#: The variables bellman.lm.model sets (where unset) before it imports transformers: a process
#: that imported it once (this one, or the pytest worker) carries them, with the same effect.
LM_DEFAULTS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip


def server_environment() -> dict[str, str]:
    """The variables the server started with (a command with these is always forked; a Ray
    driver in the pytest worker adds RAY_* and PYTHONBREAKPOINT to its own, and the commands
    after it then start fresh)."""
    _socket_path()
    return dict(_SERVER["env"])


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    return {**LM_DEFAULTS, **{k: v for k, v in env.items() if k.startswith(STARTUP_PREFIXES)}}


class ForkedProcess:
    """The subprocess.Popen calls the tests use (pid, stdin/stdout/stderr, poll, wait,
    communicate, send_signal, terminate, kill, returncode) for a child of the server."""

    def __init__(self, args, cwd, env, stdin, stdout, stderr, text: bool, code=None):
        self.args, self.returncode = args, None
        ends, mine = [], []
        for index, spec in enumerate((stdin, stdout, stderr)):
            if spec == subprocess.PIPE:
                read, write = os.pipe()
                child, parent = (read, write) if index == 0 else (write, read)
                ends.append(child)
                mine.append(child)
                mode = ("w" if index == 0 else "r") + ("" if text else "b")
                setattr(self, ("stdin", "stdout", "stderr")[index], open(parent, mode))
            else:
                if spec is None or spec == subprocess.DEVNULL:
                    fd = os.open(os.devnull, os.O_RDWR)
                    mine.append(fd)
                else:
                    fd = spec if isinstance(spec, int) else spec.fileno()
                ends.append(fd)
                setattr(self, ("stdin", "stdout", "stderr")[index], None)
        self._connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._connection.connect(_socket_path())
        command = {"args": [*map(str, args)], "cwd": str(cwd), "env": env, "code": code}
        socket.send_fds(self._connection, [json.dumps(command).encode()], ends)
        for fd in mine:
            os.close(fd)
        self.pid = int(self._connection.recv(64))

    def _status(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            self._connection.settimeout(timeout)
            try:
                self.returncode = int(self._connection.recv(64))
            except (TimeoutError, BlockingIOError):
                return None
            self._connection.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._status(0)

    def wait(self, timeout: float | None = None) -> int:
        if self._status(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, input=None, timeout: float | None = None):
        """Write `input`, read both outputs to their ends, wait: as Popen.communicate."""
        found: dict[str, object] = {}

        def read(name):
            found[name] = getattr(self, name).read()
            getattr(self, name).close()

        threads = [threading.Thread(target=read, args=(n,), daemon=True)
                   for n in ("stdout", "stderr") if getattr(self, n) is not None]  # fmt: skip
        for thread in threads:
            thread.start()
        if self.stdin is not None:
            try:
                if input:
                    self.stdin.write(input)
                self.stdin.close()
            except BrokenPipeError:
                pass
        self.wait(timeout)
        for thread in threads:
            thread.join(timeout)
        return found.get("stdout"), found.get("stderr")

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(args, cwd, env=None, stdin=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
          text: bool = True, code: str | None = None):  # fmt: skip
    """`python -m bellman ARGS` (or `python -c CODE ARGS`) in `cwd`: a child of the forking
    server, or a fresh process where `env` changes what the interpreter reads at start-up (see
    STARTUP_PREFIXES). `env` defaults to this process's variables with PYTHONHASHSEED=0."""
    env = _server_env() if env is None else dict(env)
    if "path" not in _SERVER:
        _socket_path()
    if _startup_env(env) != _startup_env(_SERVER["env"]):
        program = ["-m", "bellman"] if code is None else ["-c", code]
        return subprocess.Popen([sys.executable, *program, *map(str, args)], cwd=cwd, env=env,
                                stdin=stdin, stdout=stdout, stderr=stderr, text=text)  # fmt: skip
    return ForkedProcess(args, cwd, env, stdin, stdout, stderr, text, code)


if __name__ == "__main__":
    import contextlib
    import gc
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        _preload()
    if printed.getvalue():
        sys.exit(f"importing printed: {printed.getvalue()[:2000]}")
    # the imported objects out of the collector's sight: a child's exit (the interpreter's own
    # finalisation, kept) took 0.96 s with torch and transformers loaded, 0.29 s after this
    gc.freeze()
    if len(os.listdir("/proc/self/task")) != 1:  # a fork copies only the thread that forks
        sys.exit("the forking server has threads after its imports (OMP_NUM_THREADS unset?)")
    _run_command(serve(sys.argv[1]))
