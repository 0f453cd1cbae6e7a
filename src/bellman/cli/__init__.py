"""The command line: `bellman` (`main.py`), `bellman lm ...` (`lm.py`), the terminal I/O of
`bellman play` and `bellman move` (`play.py`), and what they share (`common.py`).

Each subcommand is a thin call into the library: `bellman.api` for training, resuming and
evaluating runs, `bellman.lm` for the language-model steps.
"""

from bellman.cli.main import main

__all__ = ["main"]
