"""``share``: occurrences of some phrases among occurrences of others (decided at the end)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from ..lang.base import Phrases, Strict, _nonempty_phrases
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


class ShareSpec(Strict):
    """Occurrences of ``of`` among occurrences of ``among`` (scope utterances)."""

    of: Phrases
    among: Phrases
    over: float | None = Field(None, ge=0, le=1)
    under: float | None = Field(None, ge=0, le=1)
    min_total: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _some(self) -> ShareSpec:
        _nonempty_phrases(self.of)
        _nonempty_phrases(self.among)
        if self.over is None and self.under is None:
            raise ValueError("share needs over and/or under")
        return self


def _compile(cx: Compiler, v: ShareSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    return N.CShare(
        cx.atoms(v.of, (*p, "of")),
        cx.atoms(v.among, (*p, "among")),
        v.over,
        v.under,
        v.min_total,
        "/".join(v.of),
    )


register(
    Operator(
        name="share",
        level=Level.CALL,
        spec=ShareSpec,
        trigger=Trigger.PHRASES,
        summary="occurrences of `of` among those of `among` over / under a share",
        example=Example(
            {"share": {"of": ["你"], "among": ["您"], "over": 0.5}},
            found=[("a", 0, 1, "你好"), ("a", 2, 3, "你说")],
            missing=[("a", 0, 1, "您好"), ("a", 2, 3, "您说")],
        ),
        call=_compile,
    ),
    __name__,
)
