"""``occurrences``: a phrase said at least / at most N times in the scope.

Every occurrence counts, several in one utterance included (``count`` counts
utterances). ``at_least`` is found the moment the count reaches N; ``at_most`` is decided
when the scope's window closes (or the call ends)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from ..lang.base import Phrases, Strict, _nonempty_phrases
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


class OccurrencesSpec(Strict):
    phrases: Phrases
    at_least: int | None = Field(None, ge=1)
    at_most: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> OccurrencesSpec:
        _nonempty_phrases(self.phrases)
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("occurrences needs exactly one of at_least / at_most")
        return self


def _short(ph: list[str]) -> str:
    return "/".join(ph[:3]) + ("…" if len(ph) > 3 else "")


def _compile(cx: Compiler, v: OccurrencesSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    atoms = cx.atoms(v.phrases, (*p, "phrases"))
    return N.COccurrences(atoms, v.at_least, v.at_most, _short(v.phrases))


def _label(v: Any, label: Any) -> str:
    return _short(v.phrases)


register(
    Operator(
        name="occurrences",
        level=Level.CALL,
        spec=OccurrencesSpec,
        trigger=Trigger.PHRASES,
        summary="exact phrases said `at_least` / `at_most` N times in the scope "
        "(every occurrence counts)",
        example=Example(
            {"occurrences": {"phrases": ["对不起"], "at_least": 3}},
            found=[("a", 0, 1, "对不起，对不起"), ("a", 2, 3, "真对不起")],
            missing=[("a", 0, 1, "对不起"), ("a", 2, 3, "对不起")],
        ),
        call=_compile,
        label=_label,
    ),
    __name__,
)
