"""What every part of the rule language shares: the strict model base, phrase lists, times."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RoleName = Literal["agent", "customer", "unknown", "any"]
Phrases = list[str]

_HHMM = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _nonempty_phrases(v: list[str], what: str = "phrase list") -> list[str]:
    if not v:
        raise ValueError(f"empty {what}")
    for p in v:
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"empty phrase in {what}")
    return v


def _as(key: str, types: tuple[type, ...]) -> Any:
    """A shorthand (list / str / number) turned into ``{key: value}``."""

    def conv(v: Any) -> Any:
        if isinstance(v, types):
            return {key: v}
        return v

    return conv


def parse_hhmm(s: str) -> int:
    m = _HHMM.match(s.strip())
    if not m:
        raise ValueError(f"bad time {s!r}, expected HH:MM")
    minutes = int(m.group(1)) * 60 + int(m.group(2))
    if minutes > 24 * 60:
        raise ValueError(f"bad time {s!r}")
    return minutes


def parse_range(r: str) -> tuple[int, int]:
    if not isinstance(r, str) or r.count("-") != 1:
        raise ValueError(f"bad time range {r!r}, expected 'HH:MM-HH:MM'")
    a, b = r.split("-")
    return parse_hhmm(a), parse_hhmm(b)
