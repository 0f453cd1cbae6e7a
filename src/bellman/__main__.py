"""`python -m bellman` is the `bellman` command."""

import sys

from bellman.cli import main

sys.exit(main())
