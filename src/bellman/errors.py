"""The exceptions bellman raises for anything a user controls.

The CLI turns every `BellmanError` into one line on stderr, `error: <message>`, and exit status 2.
Messages name the bad value, the rule it breaks and what is valid, so the line alone is enough to
fix the command.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BellmanError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class ConfigError(BellmanError):
    """An unknown or invalid configuration key or value, algorithm or environment."""


class CheckpointError(BellmanError):
    """A missing, corrupt or mismatched checkpoint or run directory."""


class NonFiniteError(BellmanError):
    """A loss, reward or value became NaN or infinite during training."""


def did_you_mean(word: str, valid: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest valid word, or "" when none is close."""
    matches = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def unknown(kind: str, word: str, valid: Iterable[str], hint: str = "") -> ConfigError:
    """A ConfigError for an unknown name, with a suggestion and the list of valid names."""
    valid = sorted(valid)
    listing = ", ".join(valid) if len(valid) <= 30 else ", ".join(valid[:30]) + ", ..."
    message = f"unknown {kind} '{word}'{did_you_mean(word, valid)}; valid: {listing}"
    return ConfigError(message + (f"; {hint}" if hint else ""))
