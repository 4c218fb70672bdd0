"""Argument checks shared by sluice.dify's classes: every error names the class, the argument
and the value it got ("sluice.dify.RateLimit: max_active_requests must be ..., got ...")."""

from __future__ import annotations

import math
from typing import Any

from .._errors import InvalidArgument

# Dify's ids are UUIDs (36 characters); the bound only keeps a hostile caller from making keys of
# megabytes, and leaves room for ids that carry a prefix.
MAX_ID_CHARS = 512


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def checked_id(owner: str, name: str, value: Any) -> str:
    """`value` as an id: a non-empty str of at most MAX_ID_CHARS characters that UTF-8 can
    encode (no lone surrogates)."""
    if not isinstance(value, str):
        raise TypeError(f"sluice.dify.{owner}: {name} must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"sluice.dify.{owner}: {name} must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"sluice.dify.{owner}: {name} must be at most {MAX_ID_CHARS} "
                              f"characters, got {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"sluice.dify.{owner}: {name} must be valid UTF-8 text, got "
                              f"{_shown(value)}") from None
    return value


def checked_count(owner: str, name: str, value: Any, minimum: int) -> int:
    """`value` as a whole number >= minimum (a bool, a float or NaN is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isnan(value):
            raise InvalidArgument(f"sluice.dify.{owner}: {name} must be an integer >= {minimum}, "
                                  "got nan")
        raise TypeError(f"sluice.dify.{owner}: {name} must be an int, got "
                        f"{type(value).__name__} {_shown(value)}")
    if value < minimum:
        raise InvalidArgument(f"sluice.dify.{owner}: {name} must be an integer >= {minimum}, "
                              f"got {value}")
    return value


def checked_seconds(owner: str, name: str, value: Any) -> float:
    """`value` as a finite number of seconds > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"sluice.dify.{owner}: {name} must be a number of seconds, got "
                        f"{type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"sluice.dify.{owner}: {name} must be a finite number of seconds "
                              f"> 0, got {value}")
    return float(value)
