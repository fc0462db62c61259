"""Checks of values that come from outside (command lines, checkpoint metadata, forms), each
giving the phrase a message is built from, and text made safe to print."""

from __future__ import annotations

import math
import re

ROUTING_ITERATIONS = (1, 10)  # the range offered everywhere; the paper routes 3 times


def range_problem(value, minimum, maximum, kind: type = int) -> str | None:
    """"must be at least 1", "must be between 1 and 10", … when ``value`` is out of range."""
    def show(bound) -> str:
        return f"{bound:,}" if kind is int else f"{bound:g}"

    if (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return None
    if kind is int and minimum == 1 and maximum is None:
        return "must be a positive integer"
    if kind is int and minimum == 0 and maximum is None:
        return "must be 0 or more"
    if maximum is None:
        return f"must be at least {show(minimum)}"
    if minimum is None:
        return f"must be at most {show(maximum)}"
    return f"must be between {show(minimum)} and {show(maximum)}"


def number_problem(value, kind: type = int, minimum=None, maximum=None) -> str | None:
    """Why ``value`` is not a finite ``kind`` (int or float) in [minimum, maximum], or None.
    A bool is not a number here; an int is a float, a float with no fraction is not an int."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if kind is int and not isinstance(value, int):
        return "must be a whole number"
    return range_problem(value, minimum, maximum, kind)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text, limit: int = 200) -> str:
    """``text`` as one safe line for a terminal: control characters (escape sequences, line
    breaks, bidirectional overrides) shown as ``\\x1b``-style escapes, at most ``limit``
    characters."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"
