"""The personal-data test set and its scoring, shared by ``tests/privacy`` and
``benchmarks/bench_redact.py``.

The set (``tests/privacy/data/``): ``pii_typed.jsonl`` (typed sentences, digits and spoken
forms, hard negatives) and ``pii_speech.jsonl`` (Whisper transcripts of generated speech,
written by ``benchmarks/make_pii_speech.py``). Each item has ``text`` and ``expect``: a list
of ``{"kind", "text"}``, the exact substring that must be covered; empty for a hard
negative, whose ``class`` says what it is (agent id, order number, price...).

Scoring, per expected span:

* **recalled** when at most its last four digit characters stay visible: every digit
  (or spoken numeral) of the span outside a mask is counted, and they must all stand after
  the last masked character (an address: its number-bearing characters likewise);
* **kind right** when a mask over it has the expected kind (reported, not required);
* a speech item whose transcript lost the number (``label_lost``) is not scored: it is
  counted apart, as the ASR's miss; of those with a phone, ID or card number, the ones whose
  redacted text still shows five or more of its digits in a row, exactly as said
  (``lost_leaks``: a digit or numeral read plainly, separators skipped), are counted too.

Precision per kind: the found entities of that kind that overlap an expected span of the
same kind, over all found of that kind. False masks: hard negatives with anything found.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..privacy import Entity, find_entities
from ..privacy.numerals import DIGIT, UNITS

DATA = Path(__file__).resolve().parents[2] / "tests" / "privacy" / "data"
#: each part of the set and its files, in the order they were written (a later file was
#: written after the recognisers were tuned on the files before it: held out)
SETS = {
    "typed": ("pii_typed.jsonl", "pii_typed2.jsonl"),
    "whisper": (
        "pii_speech.jsonl",
        "pii_speech_s17.jsonl",
        "pii_speech_s18.jsonl",
        "pii_speech_s19.jsonl",
        "pii_speech_s21.jsonl",
    ),
}
#: phone, ID and card numbers: the kinds with the 99 % recall target
CORE = ("mobile", "landline", "id_number", "bank_card")
_DIGITISH = set(DIGIT) | set(UNITS) | set("Xx叉")


def load(name: str, data: Path = DATA) -> list[dict[str, Any]]:
    """A part of the set (``typed``, ``whisper``) or one file of it by name."""
    files = SETS.get(name, (name,))
    return [
        json.loads(x)
        for f in files
        for x in (data / f).read_text(encoding="utf-8").splitlines()
        if x.strip()
    ]


def recalled(text: str, start: int, end: int, masks: Sequence[tuple[int, int]]) -> bool:
    """At most the last four digit characters of ``text[start:end]`` outside the masks."""
    covered = [any(a <= i < b for a, b in masks) for i in range(start, end)]
    if not any(covered):
        return False
    last_masked = start + max(k for k, c in enumerate(covered) if c)
    visible = [i for i in range(start, end) if not covered[i - start] and text[i] in _DIGITISH]
    return len(visible) <= 4 and all(i > last_masked for i in visible)


_PLAIN = {c: DIGIT[c] for c in "0123456789零〇一二三四五六七八九幺两"}
_BETWEEN_GROUPS = set(" ,，、-杠")


def shown_in_a_row(text: str, masks: Sequence[tuple[int, int]], said: str) -> int:
    """The most digits of ``said`` in a row, exactly, that ``text`` shows outside the masks
    (digits and numerals read plainly; a space, comma or dash between them skipped)."""
    shown: list[str] = []
    for i, ch in enumerate(text):
        if any(a <= i < b for a, b in masks):
            shown.append("|")
        elif ch in _PLAIN:
            shown.append(_PLAIN[ch])
        elif ch not in _BETWEEN_GROUPS:
            shown.append("|")
    best = 0
    for part in "".join(shown).split("|"):
        for i in range(len(part)):
            for j in range(i + best + 1, len(part) + 1):
                if part[i:j] in said:
                    best = j - i
                else:
                    break
    return best


@dataclass
class KindScore:
    expected: int = 0
    recalled: int = 0
    kind_right: int = 0
    found: int = 0
    found_right: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.recalled / self.expected if self.expected else float("nan")

    @property
    def precision(self) -> float:
        return self.found_right / self.found if self.found else float("nan")


@dataclass
class Score:
    kinds: dict[str, KindScore] = field(default_factory=dict)
    negatives: int = 0
    false_masks: int = 0
    false_mask_items: list[str] = field(default_factory=list)
    lost: int = 0
    lost_core: int = 0
    lost_leaks: int = 0
    lost_leak_items: list[str] = field(default_factory=list)
    items: int = 0

    def kind(self, k: str) -> KindScore:
        return self.kinds.setdefault(k, KindScore())

    @property
    def false_mask_rate(self) -> float:
        return self.false_masks / self.negatives if self.negatives else float("nan")

    def recall_of(self, kinds: Iterable[str]) -> float:
        ks = [self.kinds[k] for k in kinds if k in self.kinds]
        exp = sum(k.expected for k in ks)
        return sum(k.recalled for k in ks) / exp if exp else float("nan")


def score(
    items: Iterable[dict[str, Any]], find: Callable[[str], list[Entity]] = find_entities
) -> Score:
    s = Score()
    for it in items:
        s.items += 1
        text = it["text"]
        if it.get("label_lost"):
            s.lost += 1
            if it["class"] in CORE and it.get("said"):
                s.lost_core += 1
                masks = [(e.start, e.end) for e in find(text)]
                if shown_in_a_row(text, masks, it["said"]) >= 5:
                    s.lost_leaks += 1
                    s.lost_leak_items.append(f"{it['id']} {text}")
            continue
        found = find(text)
        masks = [(e.start, e.end) for e in found]
        spans = []
        for exp in it["expect"]:
            start = text.find(exp["text"])
            if start < 0 or not exp["text"]:
                raise ValueError(f"{it['id']}: {exp['text']!r} is not in {text!r}")
            spans.append((exp["kind"], start, start + len(exp["text"])))
        if not spans:
            s.negatives += 1
            if found:
                s.false_masks += 1
                s.false_mask_items.append(f"{it['id']} [{it.get('class')}] {text}")
        for kind, a, b in spans:
            ks = s.kind(kind)
            ks.expected += 1
            if recalled(text, a, b, masks):
                ks.recalled += 1
            else:
                ks.misses.append(f"{it['id']} {text}")
            if any(e.kind.value == kind and e.start < b and e.end > a for e in found):
                ks.kind_right += 1
        for e in found:
            ks = s.kind(e.kind.value)
            ks.found += 1
            if any(k == e.kind.value and e.start < b and e.end > a for k, a, b in spans):
                ks.found_right += 1
    return s
