"""`python -m bellman` is the `bellman` command."""

import signal
import sys

# A Ctrl-C while the command is still importing (a second or two with torch) ends it quietly
# with 130, before anything is written; the command then installs its own handling.
signal.signal(signal.SIGINT, lambda _signum, _frame: sys.exit(130))

from bellman.cli import main  # noqa: E402

signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(main())
