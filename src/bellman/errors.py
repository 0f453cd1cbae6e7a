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


def available_memory() -> int:
    """Bytes this process may still allocate: the machine's available memory (Linux
    /proc/meminfo MemAvailable), capped by a cgroup memory limit when one is set."""
    import os

    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as limit_file:
                limit = limit_file.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            available = min(available, int(limit))
    return available


def check_memory(needed: int | float, what: str, fix: str = "") -> None:
    """Refuse, before allocating, something that cannot fit in the machine's memory.

    Args:
        needed: bytes the allocation will take.
        what: what is allocated and from which settings, e.g. "replay memory of 1e12 transitions".
        fix: the setting to change, appended to the message.

    Raises:
        ConfigError: naming the bytes needed and the bytes available.
    """
    available = available_memory()
    if needed > available:
        raise ConfigError(
            f"{what} needs {_size(needed)} but this machine has {_size(available)} available"
            + (f"; {fix}" if fix else "")
        )


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")
