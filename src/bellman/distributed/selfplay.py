"""AlphaZero's self-play on Ray actors (`--set backend=ray`): the process pool's job, on a cluster.

`SelfPlayActors` stands where `bellman.zero.selfplay.start_workers`'s process pool stands: the
loop hands it an iteration's groups of games (`play_groups` calls `map_async`, polls, collects)
and an actor plays a group by calling THE SAME function the pool's processes call, the one the
loop passes (`zero.selfplay.self_play_games`: the group's games played together, one network
call per wave for the leaves of all their trees). What changes is the transport:

    - the weights go through Ray's object store once per version: one `ray.put` of the
      safetensors bytes (the bytes the pool sends with every task); every task of that version
      carries only the reference, which Ray resolves in the actor's process (no pickled module);
    - a group goes to the actor with the fewest groups not yet collected; groups are cut by game
      number, as for the pool, so a game does not depend on which actor plays it;
    - an actor whose process dies is restarted by Ray and its groups are played again
      (`max_restarts`, `max_task_retries`): a game's seed comes from its number, so the group
      played again is the same group;
    - the policy lag is bounded by `max_policy_lag` = L. With L = 0 an iteration's games are
      submitted when the iteration starts and all use the latest best net: the run is the
      process pool's run and the one-worker run, game for game. With L > 0 the loop also
      submits the games of the next L iterations (`prefetch`) with the best net of that moment,
      before it trains, so the actors play while the learner trains (asynchronous), and a game
      of iteration i uses the net of iteration i - k, k <= L. What a game sees is fixed by when
      its group was submitted, so such a run is reproducible too, but it is another run than
      L = 0, and a resumed run submits the prefetched games again with the net it resumed with
      (a resume is exact only with L = 0).

The local path never imports ray: `bellman.zero.alphazero` imports this module only for
`backend = ray`, and ray is imported inside the functions here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

#: A self-play task, as `zero.selfplay.self_play_games` takes it: (weights as safetensors bytes,
#: settings, the run's seed, the numbers of the group's games).
Task = tuple[bytes, Any, int, list[int]]


#: The `SelfPlayActors` of the run in progress in this process, if any (for monitoring and the
#: fault test, which kills one of its actors).
RUNNING: list = []


class SelfPlayWorker:
    """The body of one self-play actor."""

    def play_group(self, play: Callable[[Task], list], weights: bytes, *rest) -> list:
        """One group of games: `play((weights, settings, seed, numbers))`; Ray has resolved the
        weights' reference into the bytes in this process. Subnormal floats are flushed to zero
        as in the learner (on the thread that plays: actor methods may run on any of its)."""
        from bellman.torch_state import flush_denormals

        flush_denormals(True)
        return play((weights, *rest))

    def pid(self) -> int:
        """The actor's process id (for monitoring; the fault test kills it). It runs in the
        actor's "monitor" thread, so it answers while a group is being played."""
        return os.getpid()


class SelfPlayActors:
    """`workers` Ray self-play actors behind the interface of the pool that `play_groups`
    drives (`map_async`, `terminate`, `join`), plus `prefetch` for a policy lag.

    Args:
        workers: number of actors, one CPU each.
        max_policy_lag: L of the module docstring.
    """

    def __init__(self, workers: int, max_policy_lag: int = 0):
        import ray

        remote = ray.remote(
            num_cpus=1, max_restarts=-1, max_task_retries=-1, concurrency_groups={"monitor": 1}
        )(SelfPlayWorker)
        self.actors = [remote.remote() for _ in range(workers)]
        self.groups_sent = 0  # for monitoring (the fault test kills in the first iteration)
        self.max_policy_lag = max_policy_lag
        self.versions: list[tuple[bytes, Any]] = []  # (weights, object reference), newest last
        self.submitted: dict[tuple, tuple[Any, int]] = {}  # task key -> (reference, actor)
        self.outstanding = [0] * workers
        RUNNING[:] = [self]

    def publish(self, weights: bytes):
        """The object reference of these weights: `ray.put` once per version (the loop hands
        the same bytes object until the best net changes)."""
        import ray

        for blob, reference in self.versions:
            if blob is weights:
                return reference
        reference = ray.put(weights)
        lag = self.max_policy_lag  # keep the L versions before this one ([-0:] would keep all)
        self.versions = [*(self.versions[-lag:] if lag else []), (weights, reference)]
        return reference

    def _submit(self, function: Callable, task: Task) -> tuple:
        """Send a task to the actor with the fewest outstanding tasks (once per task)."""
        weights, settings, seed, numbers = task
        key = (seed, tuple(numbers))
        if key not in self.submitted:
            actor = min(range(len(self.actors)), key=self.outstanding.__getitem__)
            reference = self.actors[actor].play_group.remote(
                function, self.publish(weights), settings, seed, numbers
            )
            self.outstanding[actor] += 1
            self.groups_sent += 1
            self.submitted[key] = (reference, actor)
        return key

    def prefetch(self, function: Callable, tasks: Sequence[Task]) -> None:
        """Submit the tasks of a later iteration now, with the weights they carry (L > 0)."""
        for task in tasks:
            self._submit(function, task)

    def map_async(self, function: Callable, tasks: Sequence[Task], chunksize: int = 1):
        """Play `tasks` (submitted now, or earlier by `prefetch`); the result behaves as a
        multiprocessing AsyncResult: `ready()`, `wait(seconds)`, `get()`."""
        keys = [self._submit(function, task) for task in tasks]
        taken = [self.submitted.pop(key) for key in keys]
        return PendingGroups([reference for reference, _ in taken], [a for _, a in taken], self)

    def terminate(self) -> None:
        """Kill the actors (the tasks still running are given up)."""
        import ray

        for reference, _ in self.submitted.values():  # groups submitted ahead (a lag)
            ray.cancel(reference)
        for actor in self.actors:
            ray.kill(actor)
        self.submitted.clear()
        RUNNING.clear()

    def join(self) -> None:
        """Nothing to wait for once `terminate` has killed the actors."""

    def pid(self, actor: int) -> int:
        """Actor `actor`'s process id, answered at once even while it plays (Ray restarts a
        killed actor first)."""
        import ray

        return ray.get(self.actors[actor].pid.options(concurrency_group="monitor").remote())


class PendingGroups:
    """The groups of one iteration in flight, as `multiprocessing`'s AsyncResult; `get` also
    tells the actors' owner that those groups are done (its load count)."""

    def __init__(self, references: list, actors: list[int], owner: SelfPlayActors):
        self.references, self.actors, self.owner = references, actors, owner

    def ready(self) -> bool:
        import ray

        done, _ = ray.wait(self.references, num_returns=len(self.references), timeout=0)
        return len(done) == len(self.references)

    def wait(self, seconds: float) -> None:
        import ray

        ray.wait(self.references, num_returns=len(self.references), timeout=seconds)

    def get(self) -> list:
        import ray

        results = ray.get(self.references)
        for actor in self.actors:
            self.owner.outstanding[actor] -= 1
        return results
