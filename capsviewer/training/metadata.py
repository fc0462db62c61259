"""What a checkpoint's metadata may hold: every key capsviewer reads, with its type and range.

A checkpoint's header is checked against this when the file is opened, so nothing further on
meets a list where a mapping belongs, a string where a number does, NaN, a 5,000-digit
integer or a structure nested 100,000 deep: the file is refused with one sentence instead.
Keys not listed here are kept as they are (a newer capsviewer may add some).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

from capsviewer.checks import number_problem, printable
from capsviewer.models import MODELS, make_config
from capsviewer.training.config import TrainConfig

MAX_DEPTH = 16  # nesting of mappings and lists anywhere in the metadata
MAX_COUNT = 10**9  # images, epochs and other counts

Check = Callable[[Any], str | None]  # a phrase ("must be a number") or None when fine


def number(kind: type = int, minimum=0, maximum=MAX_COUNT) -> Check:
    return lambda value: _got(number_problem(value, kind, minimum, maximum), value)


def _got(problem: str | None, value) -> str | None:
    return None if problem is None else f"{problem}, got {printable(repr(value), 40)}"


def text(value) -> str | None:
    return None if isinstance(value, str) and len(value) <= 10_000 else "must be text"


def flag(value) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def one_of(*choices) -> Check:
    return lambda value: None if value in choices else _got(
        f"must be one of {', '.join(choices)}", value)


def optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def either(first: Check, second: Check) -> Check:
    return lambda value: None if first(value) is None else second(value)


def items(check: Check) -> Check:
    """A list whose entries pass ``check``."""
    def problem(value):
        if not isinstance(value, list):
            return "must be a list"
        return next((f"entry {i} {p}" for i, v in enumerate(value) if (p := check(v))), None)
    return problem


def mapping(fields: dict[str, Check] | None = None, values: Check | None = None) -> Check:
    """A JSON object: the listed keys (each optional) pass their check, every value passes
    ``values``; other keys are allowed."""
    def problem(value):
        if not isinstance(value, dict):
            return "must be a mapping"
        for key, entry in value.items():
            check = (fields or {}).get(key, values)
            found = check(entry) if check is not None else None
            if found:
                return f"{printable(key, 40)} {found}"
        return None
    return problem


def _train_config(value) -> str | None:
    """The run's TrainConfig: its declared options within their ranges."""
    shape = mapping({"max_shift": number(int, 0, 28), "model_config": mapping()})(value)
    if shape:
        return shape
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    problems = TrainConfig(**{k: v for k, v in value.items() if k in known}).problems()
    return problems[0] if problems else None


def _metrics(value) -> str | None:
    """Figures by name: finite numbers, accuracies between 0 and 1."""
    if not isinstance(value, dict):
        return "must be a mapping"
    for key, figure in value.items():
        low, high = (0, 1) if "accuracy" in str(key) else (None, None)
        found = number_problem(figure, float, low, high)
        if found:
            return f"{printable(key, 40)} {found}"
    return None


ACCURACY = number(float, 0, 1)
SECONDS = number(float, 0, 1e12)
PRECISION = one_of("fp32", "bf16")
EPOCH_RESULT = mapping({"epoch": number(int, 1), "epochs": number(int, 1),
                        "checkpoint": optional(text)}, values=optional(number(float, None, None)))

CHECKPOINT: dict[str, Check] = {
    "epoch": optional(number(int, 0)),
    "seed": number(int, 0, 2**63 - 1),
    "train_config": _train_config,
    "metrics": _metrics,
    "history": items(EPOCH_RESULT),
    "dataset": mapping({"name": text, "train_images": number(int), "test_images":
                        either(one_of("all"), number(int)), "train_sha256": text,
                        "published": flag}),
    "initialised_from": mapping({
        "file": text, "epoch": optional(number(int)), "test_accuracy": optional(ACCURACY),
        "averaged_epochs": optional(items(optional(number(int)))),
        "training_seconds": optional(SECONDS)}),
    "averaged": items(mapping({"file": text, "epoch": optional(number(int)),
                               "test_accuracy": optional(ACCURACY)})),
    "precision": PRECISION,
    "training_precision": PRECISION,
    "processes": number(int, 1),
    "training_seconds": SECONDS,
    **{key: text for key in ("device", "torch_version", "capsviewer_version", "saved",
                             "evaluated_on")},
}


class MetadataError(ValueError):
    """Metadata that cannot be used; the message is a phrase about it ("is not JSON …")."""


def parse(raw: str) -> dict[str, Any]:
    """The JSON text of a header as a mapping: no NaN or infinities, nothing nested deeper
    than :data:`MAX_DEPTH`, no integer longer than Python accepts."""
    def refuse_constant(name):
        raise ValueError(f"{name} is not a number JSON allows")

    def finite(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"{literal[:20]} is too large")
        return value

    try:
        value = json.loads(raw, parse_constant=refuse_constant, parse_float=finite)
    except RecursionError:
        raise MetadataError("is nested too deeply to be capsviewer metadata") from None
    except ValueError as error:  # JSONDecodeError, integers of over 4,300 digits, NaN
        raise MetadataError(f"is not valid JSON ({str(error)[:120]})") from None
    if not isinstance(value, dict):
        raise MetadataError(f"is JSON {type(value).__name__}, not a mapping")
    if _depth(value) > MAX_DEPTH:
        raise MetadataError(f"is nested more than {MAX_DEPTH} levels deep")
    return value


def checkpoint_problem(meta: dict[str, Any]) -> str | None:
    """Why ``meta`` is not usable checkpoint metadata (a phrase), or None."""
    architecture = meta.get("architecture")
    if not isinstance(architecture, str) or architecture not in MODELS:
        return (f"holds an unknown architecture {printable(repr(architecture), 60)}; this "
                f"capsviewer knows {', '.join(MODELS)}")
    try:
        make_config(architecture, meta.get("config"))
    except (KeyError, ValueError) as error:
        return f"has an invalid {architecture} config: {str(error).removeprefix(architecture + ' config: ')}"
    for key, check in CHECKPOINT.items():
        if key in meta:
            found = check(meta[key])
            if found:
                return f"has invalid metadata: {key} {found}"
    return None


def _depth(value) -> int:
    """How deeply mappings and lists nest in ``value`` (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children:
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((child, depth + 1) for child in children)
    return deepest
