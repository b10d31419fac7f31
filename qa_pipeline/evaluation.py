"""Accuracy measures for transcripts: CER for Chinese, WER for English."""

from __future__ import annotations

import re
import unicodedata

from rapidfuzz.distance import Levenshtein

from .text import match_form

_WORD = re.compile(r"[a-z0-9']+")


def cer_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance, reference length) on the match form (simplified, no punctuation)."""
    ref, hyp = match_form(reference), match_form(hypothesis)
    return Levenshtein.distance(ref, hyp), len(ref)


_DIGIT_WORDS = dict(
    enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
)


def english_words(text: str) -> list[str]:
    """Lower-case words without punctuation; numbers 0-10 spelled out (as Whisper's own
    English normaliser standardises numbers), so '1, 2, 3' equals 'one two three'."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return [
        _DIGIT_WORDS.get(int(w), w) if w.isdigit() and int(w) <= 10 else w
        for w in _WORD.findall(text)
    ]


def wer_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edit distance, reference words), case and punctuation ignored."""
    ref, hyp = english_words(reference), english_words(hypothesis)
    return Levenshtein.distance(ref, hyp), len(ref)


def pooled(counts: list[tuple[int, int]]) -> float:
    errors = sum(e for e, _ in counts)
    total = sum(n for _, n in counts)
    return errors / total if total else 0.0
