"""`python -m bellman` and the `bellman` console script: both start in `run`."""

import os
import signal
import sys


def run() -> None:
    """The `bellman` command. A Ctrl-C while it is still importing (a second or two with numpy
    and torch) ends it at once with 130, before anything is written. os._exit, not an
    exception: a SystemExit raised while numpy's C code imports came out as numpy's "could not
    import module datetime" ImportError, or was swallowed and the command ran on; a
    KeyboardInterrupt there printed a traceback. The command then installs its own handling."""
    signal.signal(signal.SIGINT, lambda _signum, _frame: os._exit(130))
    from bellman.cli import main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())


if __name__ == "__main__":
    run()
