"""Durations as Backstage's configuration writes them.

Two spellings are accepted: a duration object (``{minutes: 30}``, with any of
``years months weeks days hours minutes seconds milliseconds``) and an ISO 8601
duration string (``PT30M``).  Months count as 30 days and years as 365, which is
all a schedule needs.  Parsing never guesses: anything else raises ``ValueError``
with a message that shows the accepted forms.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {
    "years": 365 * 86400,
    "months": 30 * 86400,
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
    "milliseconds": 0.001,
}

_ISO = re.compile(
    r"^P(?!$)(?:(?P<years>\d+(?:\.\d+)?)Y)?(?:(?P<months>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)

FORMS = "a duration object such as {minutes: 30} or an ISO 8601 duration such as PT30M"


def parse_duration(value: object) -> timedelta:
    """Turn a configured duration into a ``timedelta``."""
    if isinstance(value, str):
        match = _ISO.fullmatch(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not {FORMS}")
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
    elif isinstance(value, dict) and value:
        unknown = set(value) - set(_UNIT_SECONDS)
        if unknown:
            raise ValueError(
                f"unknown duration unit {sorted(unknown)[0]!r}; use {FORMS}"
            )
        parts = {}
        for unit, amount in value.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)):
                raise ValueError(f"duration unit {unit!r} must be a number")
            if amount < 0:
                raise ValueError(f"duration unit {unit!r} must not be negative")
            parts[unit] = float(amount)
    else:
        raise ValueError(f"{value!r} is not {FORMS}")

    return timedelta(seconds=sum(_UNIT_SECONDS[k] * v for k, v in parts.items()))
