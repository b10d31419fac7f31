"""Costs of the fuzzy operator's syllable edit distance, derived from measured mishearings.

``confusions.json`` (next to this file) counts how Whisper (the project's engine and model)
heard Mandarin syllables: how often each initial and final was said, how often a syllable
came back with only its initial changed (``initials``: ``"said>heard": count``) or only its
final (``finals``), and how many syllables were inserted or deleted. It is measured by
``benchmarks/measure_confusions.py`` (espeak-ng renderings of every fuzzy phrase of the
default pack in three voices at 8 kHz mu-law, and the shared real Mandarin clips at 16 kHz
and 8 kHz mu-law; re-run it to re-measure).

Costs are in integer units (:data:`UNIT` = one whole syllable), so sums are exact:

* the sounds the fold merges (zh/z, ch/c, sh/s, l/n, -ng/-n after a, e, i) cost nothing:
  they are one syllable id (:func:`qa_pipeline.rules.runtime.textindex.fold_syllable`);
* substituting a syllable costs its initial's part plus its final's part, at most one unit;
  a part costs :data:`CONFUSED` when the two sounds were confused at least
  :data:`MIN_CONFUSIONS` times (both directions, after folding) in the measurement --
  the confusion classes (b/p/f, d/t/n, g/k/h, j/q/x, h dropped, -in/-ian, ...: whatever
  was measured) -- else :data:`UNRELATED` (half a syllable: a syllable sharing its
  initial or its final with the one said is half right);
* inserting or deleting a syllable costs :data:`INDEL`.

The three weights are choices (a measured confusion is cheaper than an unrelated sound, a
lost syllable dearer than a confused part); with them the default threshold 85 keeps the
old operator's reach: a phrase of n syllables needs half of them said exactly.

Every cost that is not zero is at least :data:`CHEAPEST` (= CONFUSED): the prefilter's
proof rests on that (``textindex._need``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

UNIT: Final = 20  # one syllable
CONFUSED: Final = 6  # 0.3 of a syllable: a measured confusion of an initial or a final
UNRELATED: Final = 10  # 0.5: any other initial (or final) in its place
INDEL: Final = 12  # 0.6: a syllable dropped or inserted
CHEAPEST: Final = CONFUSED
MIN_CONFUSIONS: Final = 3

INITIALS: Final = (
    "zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h",
    "j", "q", "x", "r", "z", "c", "s", "y", "w",
)  # fmt: skip


def split_syllable(s: str) -> tuple[str, str]:
    """(initial, final) of a toneless pinyin syllable; ``""`` for no initial."""
    if s[:2] in ("zh", "ch", "sh"):
        return s[:2], s[2:]
    if s[:1] in INITIALS:
        return s[:1], s[1:]
    return "", s


def _fold_initial(i: str) -> str:
    if len(i) == 2:
        return i[0]  # zh ch sh -> z c s
    return "n" if i == "l" else i


def _fold_final(f: str) -> str:
    if len(f) > 2 and f.endswith("ng") and f[-3] in "aei":
        return f[:-1]
    return f


def _pairs(counts: dict[str, int], fold: Callable[[str], str]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for key, n in counts.items():
        a, b = key.split(">")
        fa, fb = fold(a), fold(b)
        if fa == fb:
            continue
        k = (fa, fb) if fa < fb else (fb, fa)
        out[k] = out.get(k, 0) + n
    return out


def _load() -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    path = Path(__file__).with_name("confusions.json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, {}
    return _pairs(doc.get("initials", {}), _fold_initial), _pairs(
        doc.get("finals", {}), _fold_final
    )


INITIAL_PAIRS, FINAL_PAIRS = _load()


def part_cost(table: dict[tuple[str, str], int], a: str, b: str) -> int:
    """Cost of hearing initial (or final) ``b`` for ``a`` (folded sounds)."""
    if a == b:
        return 0
    k = (a, b) if a < b else (b, a)
    return CONFUSED if table.get(k, 0) >= MIN_CONFUSIONS else UNRELATED


def substitution_cost(a: str, b: str) -> int:
    """Cost of hearing folded syllable ``b`` for folded syllable ``a``, in units."""
    if a == b:
        return 0
    if not (a.isascii() and a.isalpha() and b.isascii() and b.isalpha()):
        return UNIT  # not pinyin (a symbol, a letter-less character): all or nothing
    ia, fa = split_syllable(a)
    ib, fb = split_syllable(b)
    c = part_cost(INITIAL_PAIRS, ia, ib) + part_cost(FINAL_PAIRS, fa, fb)
    return c if c < UNIT else UNIT
