"""What every training loop does after an iteration, in one documented order.

An iteration is whatever an algorithm does between two safe points: DQN's env step and its
updates, A2C's or PPO's rollout and update, REINFORCE's batch of episodes, AlphaZero's self-play
and training steps, one optimiser step of a language-model stage. After it, from step `before`
to `step`, every loop calls `after_iteration`, which does, in this order:

    1. evaluate      when an evaluation falls due in (before, step]
    2. log           one metrics row when log_every is crossed, after an evaluation, at the end
    3. solved?       the evaluation reached the env's reward threshold: training ends here
    4. checkpoint    when checkpoint_every is crossed, at the end, when solved, always after
                     the row of step 2
    5. env resets    after a checkpoint when training goes on: algorithms that restart their
                     episodes at checkpoints (so a resumed run meets the same episodes) do it here

and returns whether training stops: solved, the end, or a stop asked for by Ctrl-C or SIGTERM.

Where a stop may happen. A loop whose episodes restart at every checkpoint (it passes `reset`)
cannot stop between two checkpoints and be resumed exactly: the environments' state is not in a
checkpoint, and the resumed run would meet other episodes than the uninterrupted one. So a
signal makes it train on to its next checkpoint (step 4 then also stops it); a second Ctrl-C
aborts at once and the run resumes from its last checkpoint. A loop without `reset` (its state
is all in the checkpoint) saves and stops after the iteration it was in. Either way the saved
run is exactly the uninterrupted run at that step, and `--resume` continues it bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def crossed(before: int, after: int, every: int) -> int:
    """How many multiples of `every` lie in (before, after]."""
    return after // every - before // every


def after_iteration(
    run,
    step: int,
    before: int,
    *,
    save: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]],
    log: Callable[[dict[str, float]], None],
    evaluation=None,
    policy: Callable[[], Callable] | None = None,
    reset: Callable[[], None] | None = None,
    total: int | None = None,
) -> bool:
    """Steps 1-5 of the module docstring after an iteration that took the run from `before`
    to `step`.

    Args:
        run: the `Run` (its config gives log_every and steps; it saves and knows of signals).
        step: the step counter after the iteration; `before`: before it.
        save: () -> (arrays, state) of the checkpoint, called only when one is written.
        log: writes the metrics row; it gets the evaluation's columns (the same in every row).
        evaluation: a `TrainingEvaluation`, or None for loops that do not evaluate this way.
        policy: () -> the policy to evaluate, built only when an evaluation is due.
        reset: restarts the episodes after a checkpoint when training goes on.
        total: the run's last step (default: the config's `steps`).

    Returns:
        True when training stops here: solved, the last step reached, or a stop requested.
    """
    total = run.config.steps if total is None else total
    last = step >= total
    # 1. evaluate
    evaluated = evaluation is not None and evaluation.due(before, step)
    if evaluated:
        evaluation.run(policy())
    # 2. log
    if evaluated or last or crossed(before, step, run.config.log_every):
        log(evaluation.columns() if evaluation is not None else {})
    # 3. solved?
    solved = evaluation is not None and evaluation.solved()
    # 4. checkpoint
    stopping = run.stop_requested  # read once: a signal may arrive at any moment
    if run.checkpoint_scheduled(step) or last or solved or (stopping and reset is None):
        run.save(step, *save())
        if solved:
            run.notes.append(evaluation.solved_note(step))
        if solved or last or stopping:
            return True
        # 5. env resets
        if reset is not None:
            reset()
    return False
