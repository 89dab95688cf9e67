"""Up-front checks of numbers given to configs: one place for the wording of every range error.

Each check returns the value it accepted, so a config's `__post_init__` reads as a list of rules.
NaN and infinity are refused everywhere: they pass `<` comparisons silently and turn results into NaN.
"""

from __future__ import annotations

import math
from typing import Any


def finite(name: str, value: Any) -> float:
    """`value` as a float; ValueError if it is not a real, finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    number = finite(name, value)
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return number


def non_negative(name: str, value: Any) -> float:
    """A finite number >= 0."""
    number = finite(name, value)
    if number < 0:
        raise ValueError(f"{name} must be 0 or more, got {value!r}")
    return number


def at_least(name: str, value: Any, least: int) -> int:
    """An integer >= `least` (bools refused: `True` is no count)."""
    if isinstance(value, bool) or not isinstance(value, int) and not (hasattr(value, "__index__")):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if int(value) < least:
        raise ValueError(f"{name} must be at least {least}, got {value!r}")
    return int(value)
