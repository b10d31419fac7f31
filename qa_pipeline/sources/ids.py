"""Identifiers and text that arrive from the wire, checked before they reach anything else.

Call ids, agent ids, stream/call SIDs and custom-parameter names end up in log lines, event
envelopes, dashboard rows and supervisor notifications. A network source passes each through
:func:`check_id` before it opens a call; an id that fails is not repaired or replaced: the
connection is refused (``SourceError("bad_id")``, counted and logged) so a misconfigured or
hostile client is visible at once instead of being scored under a made-up id.

An id is 1 to :data:`MAX_ID_LEN` characters from: ASCII letters and digits, ``- _ . : @``,
and CJK ideographs (U+3400-U+4DBF, U+4E00-U+9FFF; agent names such as ``张三`` are common in
Mandarin call centres). Nothing else: no spaces, no control or format characters (so no
newline can forge a log line, no bidi override can disguise one), no markdown link or HTML
brackets (``[ ] ( ) < >``; the notifiers escape markdown in every value as well).

Free-text custom parameters (:func:`check_value`) may hold any printable text up to
:data:`MAX_VALUE_LEN` characters, but no control, format or line/paragraph separator
characters. :func:`shown` renders any wire text safely for a log line (escaped, truncated).
"""

from __future__ import annotations

import re
import unicodedata

from .base import SourceError, shown

MAX_ID_LEN = 128
MAX_KEY_LEN = 64
MAX_VALUE_LEN = 256
MAX_PARAMETERS = 32

_ID = re.compile(r"[A-Za-z0-9\-_.:@\u3400-\u4dbf\u4e00-\u9fff]+")
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

__all__ = ["check_id", "check_value", "is_valid_id", "shown"]


def is_valid_id(value: str, max_len: int = MAX_ID_LEN) -> bool:
    return 0 < len(value) <= max_len and _ID.fullmatch(value) is not None


def check_id(value: str, what: str, max_len: int = MAX_ID_LEN) -> str:
    """``value`` if it is a valid id, else ``SourceError("bad_id")`` naming ``what``."""
    if not value:
        raise SourceError("bad_id", f"{what} is empty")
    if len(value) > max_len:
        raise SourceError("bad_id", f"{what} is {len(value)} chars (max {max_len})")
    if _ID.fullmatch(value) is None:
        raise SourceError(
            "bad_id",
            f"{what} {shown(value)} has characters outside letters, digits, -_.:@ and CJK",
        )
    return value


def check_value(value: str, what: str) -> str:
    """A free-text parameter: at most :data:`MAX_VALUE_LEN` printable characters."""
    if len(value) > MAX_VALUE_LEN:
        raise SourceError("bad_id", f"{what} is {len(value)} chars (max {MAX_VALUE_LEN})")
    if any(unicodedata.category(c) in _UNPRINTABLE for c in value):
        raise SourceError("bad_id", f"{what} {shown(value)} has control characters")
    return value
