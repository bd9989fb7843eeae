"""ISO 8601 durations (weeks, days, hours, minutes, seconds) to and from ``timedelta``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

_NAMED: Final = (
    r"^P(?!$)(?:(?P<w>\d{1,6})W)?(?:(?P<d>\d{1,6})D)?"
    r"(?:T(?=\d)(?:(?P<h>\d{1,6})H)?(?:(?P<m>\d{1,6})M)?(?:(?P<s>\d{1,6})(?:\.(?P<f>\d{1,6}))?S)?)?$"
)
_DURATION: Final = re.compile(_NAMED)
MAX_DURATION: Final = timedelta(days=36_500)
"""The longest duration a document may give (about 100 years)."""
DURATION_PATTERN: Final = re.sub(r"\(\?P<\w>", "(", _NAMED)
"""The same grammar without Python's group names (for the JSON Schema, which uses ECMA regexes)."""


def parse_duration(text: str) -> timedelta:
    """The ``timedelta`` of an ISO 8601 duration such as ``P2D`` or ``PT1H30M``.

    Raises ``ValueError`` for anything else (years and months included: their length varies) and
    for durations longer than :data:`MAX_DURATION`.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is not an ISO 8601 duration such as 'PT30M' or 'P2D'")
    w, d, h, m, s = (int(match.group(k) or 0) for k in "wdhms")
    micro = int((match.group("f") or "0").ljust(6, "0"))
    value = timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=s, microseconds=micro)
    if value > MAX_DURATION:
        raise ValueError(f"{text[:40]!r} is longer than {MAX_DURATION.days} days")
    return value


def format_duration(value: timedelta) -> str:
    """The canonical ISO 8601 text of a non-negative ``timedelta``: days, then hours, minutes, seconds.

    Raises ``ValueError`` for a negative duration.
    """
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if value.microseconds:
        clock += f"{seconds}.{value.microseconds:06d}".rstrip("0") + "S"
    elif seconds:
        clock += f"{seconds}S"
    text = "P" + (f"{value.days}D" if value.days else "") + (f"T{clock}" if clock else "")
    return text if text != "P" else "PT0S"
