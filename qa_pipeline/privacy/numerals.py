"""Spoken and written digit strings in a transcript, each digit mapped to its character.

A *run* is a stretch of digits and spoken numerals (幺三八…) with separators between groups
(spaces, commas, 、, 杠, -). Each digit keeps the offset of the character that said it, so
a mask covers exactly the spoken number. Unit numerals (十百千万亿) mark a run as a
*cardinal* (三百二十 is a value, not a digit string), except where a long run (seven
digits or more) holds one or two stray 十 and no other unit (Whisper writes 十 for 四,
shi/si; 三七三十十零 for 三七三四四零): then each is read as 4.

ASR near-misses read as digits: a small set of homophones (same syllable as the digit),
decided by that rule and tested, not learned from the test set: 腰/妖 (yāo) for 幺 anywhere
in a run; 要 (yào) right before another digit; 医/衣/依 (yī) for 一, 期/漆 (qī) for 七,
久/酒 (jiǔ) for 九, 灵/铃 (líng) for 零 and 溜 (liù) for 六 only after another digit of the run.
And what Whisper was measured to write for spoken digits (:data:`NEAR_SYLLABLES`,
:data:`NEAR_LETTERS`: 死 for 四, Q for 九…), only between two digits of a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: spoken and written digits -> their value
DIGIT: dict[str, str] = {
    **{str(i): str(i) for i in range(10)},
    "零": "0", "〇": "0", "洞": "0",
    "幺": "1", "一": "1", "腰": "1", "妖": "1",
    "二": "2", "两": "2",
    "三": "3", "四": "4", "五": "5", "六": "6",
    "七": "7", "拐": "7",
    "八": "8",
    "九": "9", "勾": "9",
}  # fmt: skip
#: near-misses of 一 that count only after another digit
AFTER_DIGIT: dict[str, str] = {
    "医": "1", "衣": "1", "依": "1", "期": "7", "漆": "7", "久": "9", "酒": "9",
    "灵": "0", "铃": "0", "溜": "6",
}  # fmt: skip
#: near-misses that count only right before a digit
BEFORE_DIGIT: dict[str, str] = {"要": "1"}
UNITS = "十百千万亿"
#: what Whisper writes for a spoken digit, measured (``benchmarks/digit_confusions.json``,
#: by ``benchmarks/measure_digit_confusions.py``: random digit strings said after context
#: words by espeak-ng, female and male voices, 16 kHz and 8 kHz mu-law): each syllable (with
#: its tone) that was written for one digit at least four times, and for that digit in
#: more than half of the times it stood in a digit's place. Whisper hears the sound and its
#: language model picks the character, so every character read that way counts (球 and 求,
#: qiú). ``tests/privacy/test_detect.py`` checks each entry against the measurement.
NEAR_SYLLABLES: dict[str, str] = {
    "lèi": "0", "léi": "0", "lín": "0", "líng": "0", "rén": "0", "yào": "1", "yáo": "1",
    "yī": "1", "hǎn": "3", "shān": "3", "sǐ": "4", "zhī": "4", "zì": "4", "lù": "5", "rú": "5",
    "wū": "5", "liàn": "6", "qī": "7", "ba": "8", "pā": "8", "qiú": "9", "yòu": "9", "yǒu": "9",
}  # fmt: skip
#: Latin letters written in a digit's place three times or more (for any digits: Whisper
#: spells out what it cannot place, Q for 九 most often); the value: the digit they stood
#: for most (ties: the lower)
NEAR_LETTERS: dict[str, str] = {
    "A": "2", "C": "2", "E": "1", "H": "2", "I": "5", "K": "1", "L": "0", "N": "0", "O": "2",
    "P": "8", "Q": "9", "R": "2", "S": "2", "T": "1", "U": "4", "W": "1", "Y": "1",
}  # fmt: skip


def _between() -> dict[str, str]:
    """Characters whose first reading is a :data:`NEAR_SYLLABLES` syllable, and the letters."""
    from pypinyin.pinyin_dict import pinyin_dict

    out: dict[str, str] = {}
    for cp, readings in pinyin_dict.items():
        d = NEAR_SYLLABLES.get(readings.split(",", 1)[0])
        ch = chr(cp)
        if d is not None and 0x4E00 <= cp <= 0x9FFF and ch not in DIGIT and ch not in UNITS:
            out[ch] = d
    for letter, d in NEAR_LETTERS.items():
        out[letter] = out[letter.lower()] = d
    return out


#: near-misses that count only *inside* a run (see :func:`read_run`): common words among
#: them (是, 有…) and letters (Q, T…) stay words before a number or after it
BETWEEN: dict[str, str] = _between()
#: between groups: spaces, commas, dots (Whisper writes 138.1234), dashes, 杠 and the
#: fillers of a pause (嗯, 呃)
SEPARATORS = " ,，、.-－—–杠嗯呃额"

_D = "".join(DIGIT) + "".join(AFTER_DIGIT) + "".join(BEFORE_DIGIT) + "".join(BETWEEN) + UNITS
#: what a run may start with (a near-miss counts only after a digit: 是, 有 and the
#: letters, common outside numbers, start none)
_START = "".join(DIGIT) + "".join(BEFORE_DIGIT) + UNITS
#: a run: numerals with at most three separator characters between neighbours (，嗯，)
RUN = re.compile(rf"[{_START}](?:[{re.escape(SEPARATORS)}]{{0,3}}[{_D}])*")


@dataclass(frozen=True, slots=True)
class Run:
    """Digits read from ``text[start:end]``; ``where[i]`` is the offset of ``digits[i]``;
    ``groups``: index in ``digits`` where each group said between separators starts."""

    digits: str
    where: tuple[int, ...]
    groups: tuple[int, ...]
    cardinal: bool

    @property
    def start(self) -> int:
        return self.where[0]

    @property
    def end(self) -> int:
        return self.where[-1] + 1

    def part(self, i: int, j: int) -> Run:
        """Digits ``i:j`` as a run of their own."""
        groups = tuple(g - i for g in self.groups if i <= g < j)
        return Run(self.digits[i:j], self.where[i:j], groups or (0,), self.cardinal)


def read_run(text: str, start: int, end: int) -> Run | None:
    """The digits of ``text[start:end]`` (a :data:`RUN` match); None for fewer than one."""
    whole = text[start:end]
    if whole.isascii() and whole.isdigit():  # the common case of written digits
        return Run(whole, tuple(range(start, end)), (0,), False)
    digits: list[str] = []
    where: list[int] = []
    groups: list[int] = []
    units = 0
    unit_at: list[int] = []
    sep = True
    # the last sure digit of the run: an inside-only near-miss needs one after it
    last_sure = -1
    for i in range(end - 1, start - 1, -1):
        if text[i] in DIGIT:
            last_sure = i
            break
    inside = 0  # inside-only near-misses in a row
    for i in range(start, end):
        ch = text[i]
        d = DIGIT.get(ch)
        if d is None and digits:
            d = AFTER_DIGIT.get(ch)
        if d is None and ch in BEFORE_DIGIT and i + 1 < end and text[i + 1] in DIGIT:
            d = BEFORE_DIGIT[ch]
        if d is None and digits and i < last_sure and inside < 3:
            d = BETWEEN.get(ch)
            if d is not None:
                inside += 1
        elif d is not None:
            inside = 0
        if d is not None:
            if sep:
                groups.append(len(digits))
                sep = False
            digits.append(d)
            where.append(i)
        elif ch in UNITS:
            units += 1
            unit_at.append(i)
            sep = False
        elif ch in AFTER_DIGIT or ch in BEFORE_DIGIT or ch in BETWEEN:
            continue  # a near-miss without the digit that makes it one: not a digit
        else:
            sep = True
    if not digits:
        return None
    cardinal = False
    if units:
        if units <= 2 and len(digits) >= 7 and all(text[p] == "十" for p in unit_at):
            # one or two stray 十 in a long digit string: Whisper's 四 (shi/si; measured
            # written only for 四); a value never holds a run of seven numerals
            for pos in reversed(unit_at):
                k = sum(1 for w in where if w < pos)
                digits.insert(k, "4")
                where.insert(k, pos)
        else:
            cardinal = True
    return Run("".join(digits), tuple(where), tuple(groups), cardinal)
