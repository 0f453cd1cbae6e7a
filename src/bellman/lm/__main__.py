"""`python -m bellman.lm ARGS` is `bellman lm ARGS` (until `bellman lm` is wired into the CLI)."""

import sys

from bellman.lm.cli import main

sys.exit(main())
