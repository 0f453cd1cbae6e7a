"""Scale-out on Ray (`backend = ray`): the connection (`cluster`), the actors that step A2C and
PPO's environments (`rollout`), and the distributed algorithms built on them.

Nothing here imports ray at import time: `cluster.connect` does, when a run asks for
`backend = ray`, so the local path (the default) never pays for it.
"""

from bellman.distributed.cluster import connect, shutdown

__all__ = ["connect", "shutdown"]
