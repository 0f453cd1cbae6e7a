"""Schedules for epsilon, learning rates and clip ranges: a value as a function of the env step.

    constant      value(t) = start
    linear        value(t) = start + (end - start) * min(t / T, 1)
    exponential   value(t) = start * (end / start) ** min(t / T, 1)     (start, end > 0)

where T = fraction * total_steps is the number of steps over which the value anneals; after T the
value stays at `end`. A schedule is a pure function of the step, so a resumed run needs no state.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("constant", "linear", "exponential")


@dataclass(frozen=True)
class Schedule:
    """A value annealed from `start` to `end` over the first `duration` steps."""

    kind: str
    start: float
    end: float
    duration: float

    def __call__(self, step: int) -> float:
        """The value at env step `step`."""
        if self.kind == "constant" or self.duration <= 0:
            return self.start if self.kind == "constant" or step <= 0 else self.end
        progress = min(step / self.duration, 1.0)
        if self.kind == "linear":
            return self.start + (self.end - self.start) * progress
        return self.start * (self.end / self.start) ** progress


def make_schedule(kind: str, start: float, end: float, fraction: float, total_steps: int):
    """A `Schedule` that anneals over `fraction` of a run of `total_steps` env steps."""
    if kind not in KINDS:
        raise ValueError(f"unknown schedule kind {kind!r}; valid: {', '.join(KINDS)}")
    return Schedule(kind, float(start), float(end), fraction * total_steps)
