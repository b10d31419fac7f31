"""``entity``: personal data (a phone number, ID number, bank card, ...) or a number in the
utterance.

Personal data is masked by the text step before the rules see it (``qa_pipeline/privacy``):
the digits are gone, and the masks' spans (``Utterance.entities``) say what stood there. This
condition reads those spans, so it finds exactly what the redactor masked (one set of
recognisers); its evidence is the mask as the rules read the text. ``phone`` is a
``mobile`` or ``landline`` number. ``number`` is any digit or Chinese numeral left in the
text (a pattern on it, as before), or a masked number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ...privacy.entities import NUMERIC, Kind
from ...text import match_form
from ..lang.base import Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from ..runtime.textindex import Span
    from .compiler import Compiler

EntityKind = Literal[
    "phone",
    "mobile",
    "landline",
    "id_number",
    "bank_card",
    "email",
    "passport",
    "code",
    "password",
    "address",
    "number",
]

#: the span kinds each condition kind reads (a privacy Kind's value reads itself)
KINDS: dict[str, frozenset[str]] = {
    "phone": frozenset({Kind.MOBILE.value, Kind.LANDLINE.value}),
    "number": frozenset(k.value for k in NUMERIC),
    **{k.value: frozenset({k.value}) for k in Kind},
}


class EntitySpec(Strict):
    kind: EntityKind


def mask_span(text: str, start: int, end: int) -> Span:
    """A span of ``text`` (an utterance's redacted text) where the rules read it: in its
    match form (no punctuation or spaces, so ``[手机号]`` reads ``手机号``)."""
    a = len(match_form(text[:start]))
    return (a, a + len(match_form(text[start:end])))


def _compile(cx: Compiler, v: EntitySpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    kinds = KINDS[v.kind]
    ix = cx.ix
    digits = ix.entity("number") if v.kind == "number" else -1

    def test(x: N.UttCtx) -> Span | None:
        u = x.u
        for s in u.entities:
            if s.kind in kinds:
                return mask_span(u.text, s.start, s.end)
        if digits >= 0:
            hits = ix.hits(x.a, digits)
            if hits:
                return hits[0]
        return None

    return N.UFunc(test)


register(
    Operator(
        name="entity",
        level=Level.UTTERANCE,
        spec=EntitySpec,
        shorthand=lambda v: {"kind": v} if isinstance(v, str) else v,
        trigger=Trigger.EVERY_UTTERANCE,
        summary="a `phone` (`mobile` or `landline`), `id_number`, `bank_card`, `email`, "
        "`passport`, verification `code`, `password` or `address` is said (the masks the "
        "redactor left, `Utterance.entities`), or a `number`",
        example=Example(
            {"entity": "mobile"},
            # plain text: the call builder redacts it, as the text step does
            found=[("a", 0, 1, "请拨打13812345678")],
            missing=[("a", 0, 1, "请稍等")],
        ),
        utt=_compile,
        label=lambda v, label: v.kind,
    ),
    __name__,
)
