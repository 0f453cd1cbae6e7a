"""`python -m bellman` is the `bellman` command."""

import os
import signal
import sys

# A Ctrl-C while the command is still importing (a second or two with torch) ends it at once
# with 130, before anything is written. os._exit, not an exception: a SystemExit raised while
# numpy's C code imports came out as numpy's "could not import module datetime" ImportError,
# or was swallowed and the command ran on. The command then installs its own handling.
signal.signal(signal.SIGINT, lambda _signum, _frame: os._exit(130))

from bellman.cli import main  # noqa: E402

signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(main())
