"""Decoder bias: the words the configuration and the rule pack already know.

Whisper is told, through its hotword prompt (``<|startofprev|> terms``), words these calls
are expected to hold: the configuration's ``asr.hotwords`` (agent names, product names,
...), the pack's company name (``asr.bias: company``, the default) and, with ``asr.bias:
pack``, the first phrase of each phrase list that a *required* agent rule looks for
(greeting, identification, closing). Phrases of ``forbid`` rules and of customer cues are
never included: the decoder must not be nudged toward writing a banned phrase or a
complaint that was not said. Measured on the shared clips (which are not calls), the
required phrases raised pooled CER from 0.239 to 0.288 (16 kHz) and 0.320 to 0.564
(8 kHz mu-law): a long prompt of phrases disturbs decoding, so ``pack`` is not the default.

The list is versioned (:func:`bias_version`, a hash of the prompt text). A transcript records
the version it was made with; the transcript cache keys on whether biasing is on, not on
the list, so editing a rule never silently re-transcribes an archive: ``rescore`` says how
many stored transcripts were made with another list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import AsrConfig
    from ..rules.lang.loader import RulePack

MAX_TERMS_CHARS = 80  # the prompt stays short: long prompts slow decoding and get copied
SEPARATOR = "，"


def _required_phrases(cond: Any, negated: bool = False) -> Iterator[str]:
    """The first phrase of each phrase list a condition requires (not under ``not``)."""
    if cond is None:
        return
    for op, v in cond.operators():
        if op in ("all", "any"):
            for c in v:
                yield from _required_phrases(c, negated)
        elif op in ("not",):
            continue
        elif op == "exists":
            yield from _required_phrases(v, negated)
        elif op == "fuzzy" and not negated and v.phrases:
            yield v.phrases[0]
        elif op == "keyword" and not negated and v.any:
            yield v.any[0]


def pack_terms(pack: RulePack, mode: str = "pack") -> list[str]:
    """The company name, then (``mode`` ``"pack"``) the required agent phrases in rule
    order; ``"company"``: the company name alone; ``"off"``: nothing."""
    if mode == "off":
        return []
    terms = [pack.settings.company_name]
    if mode == "company":
        return terms
    for rule in pack.rules:
        spec = rule.spec
        if rule.mode != "require" or not spec.enabled or spec.scope.role not in ("agent", "any"):
            continue
        terms.extend(_required_phrases(spec.require))
    return terms


def bias_terms(terms: Iterable[str]) -> tuple[str, ...]:
    """``terms`` in order, without blanks, duplicates and phrases contained in an earlier
    term, cut at :data:`MAX_TERMS_CHARS` characters."""
    out: list[str] = []
    size = 0
    for t in terms:
        t = t.strip()
        if not t or any(t in kept for kept in out):
            continue
        if size + len(t) > MAX_TERMS_CHARS:
            break
        out.append(t)
        size += len(t) + 1
    return tuple(out)


def told_terms(config: AsrConfig, pack_bias: Iterable[str]) -> tuple[str, ...]:
    """What a decode with ``config`` is told: its hotwords, then the pack's terms (unless
    ``asr.bias`` is off, or the decode is forced to a language other than Mandarin: the
    pack's terms are Mandarin)."""
    on = config.bias != "off" and config.language in ("zh", None)
    return bias_terms([*config.hotwords, *(pack_bias if on else ())])


def bias_prompt(terms: Iterable[str]) -> str | None:
    text = SEPARATOR.join(terms)
    return text or None


def bias_version(terms: Iterable[str]) -> str | None:
    """A short hash of the prompt text (None: no bias)."""
    text = bias_prompt(terms)
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else None
