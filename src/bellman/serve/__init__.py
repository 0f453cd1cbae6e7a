"""`bellman serve`: the browser arena, the env watcher, the run browser, and (part B) the RLHF
chat and preference-labelling pages, as one Starlette app on uvicorn.

    from bellman.serve import create_app, make_state
    app = create_app(make_state([Path("runs/alphazero-connect4-...")], ["connect4"]))

The server reads only the runs and shipped agents it was started with (by name) and writes
only the labels file it was given.
"""

from bellman.serve.app import create_app, serve
from bellman.serve.state import ServeState, make_state

__all__ = ["ServeState", "create_app", "make_state", "serve"]
