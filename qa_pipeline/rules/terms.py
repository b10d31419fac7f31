"""The words a rule pack expects the decoder to know (``asr.bias``, :mod:`qa_pipeline.asr.bias`):
the company name and, with ``asr.bias: pack``, the first phrase of each phrase list that a
*required* agent rule looks for (greeting, identification, closing). Phrases of ``forbid``
rules and of customer cues are never included: the decoder must not be nudged toward
writing a banned phrase or a complaint that was not said.

Here, with the pack, so that the ASR stage receives plain strings and never reads a rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pack import RulePack


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
