"""The recognisers: personal data in a normalised transcript (``Utterance.text``).

A first cut: mobile numbers said as digits or as spoken numerals (幺三八…), with spaces,
commas and 杠 between groups. Offsets refer to the text searched.
"""

from __future__ import annotations

import re

from .entities import Entity, Kind

#: spoken and written digits -> their value
_DIGIT = {
    **{str(i): str(i) for i in range(10)},
    "零": "0", "〇": "0", "洞": "0",
    "幺": "1", "一": "1",
    "二": "2", "两": "2",
    "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8",
    "九": "9", "勾": "9",
}  # fmt: skip
_SEP = set(" ,，、-－—杠.。")
_MOBILE = re.compile(r"1[3-9]\d{9}")


def _digit_runs(text: str) -> list[tuple[str, list[int]]]:
    """Runs of digits (separators between them skipped): (digits, offset of each digit)."""
    runs: list[tuple[str, list[int]]] = []
    digits: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        d = _DIGIT.get(ch)
        if d is not None:
            digits.append(d)
            where.append(i)
        elif ch in _SEP and digits:
            continue
        elif digits:
            runs.append(("".join(digits), where))
            digits, where = [], []
    if digits:
        runs.append(("".join(digits), where))
    return runs


def find_entities(text: str) -> list[Entity]:
    """Personal data in ``text``, sorted by position, not overlapping."""
    found: list[Entity] = []
    for digits, where in _digit_runs(text):
        for m in _MOBILE.finditer(digits):
            if len(digits) == 11:
                found.append(
                    Entity(Kind.MOBILE, where[m.start()], where[m.end() - 1] + 1, m.group())
                )
    return found
