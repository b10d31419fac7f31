"""Call metrics compared to limits: ``speech_rate`` (chars/min), ``volume``, ``duration``
(seconds) and ``utterance_count``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from ..lang.base import RoleName, Strict
from .registry import CPath, Example, Issue, Level, LintCtx, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


class RangeSpec(Strict):
    role: RoleName = "any"
    over: float | None = None
    under: float | None = None
    min_speech_seconds: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _some(self) -> RangeSpec:
        if self.over is None and self.under is None:
            raise ValueError("needs over and/or under")
        if self.over is not None and self.under is not None and self.under > self.over:
            raise ValueError(f"under {self.under} > over {self.over}")
        return self


def _metric(name: str) -> Any:
    def compile_(cx: Compiler, v: RangeSpec, p: CPath) -> N.CNode:
        from ..runtime import nodes as N
        from .compiler import role_or_none

        return N.CMetric(name, role_or_none(v.role), v.over, v.under, v.min_speech_seconds)

    return compile_


def _duration_lint(cx: LintCtx, v: RangeSpec) -> list[Issue]:
    if v.over is not None and v.over >= cx.max_call_seconds:
        return [("error", f"{cx.where}.duration: over {v.over:g} s can never be reached")]
    return []


_SUMMARY = {
    "speech_rate": "characters per minute of a role's speech over / under a limit",
    "volume": "a role's speech level (dBFS) over / under a limit",
    "duration": "the call's length in seconds over / under a limit",
    "utterance_count": "the number of a role's utterances over / under a limit",
}
for _name, _summary in _SUMMARY.items():
    register(
        Operator(
            name=_name,
            level=Level.CALL,
            spec=RangeSpec,
            # counted per utterance only when a count over a limit can be found early
            trigger=(
                lambda v: Trigger.EVERY_UTTERANCE if v.over is not None else Trigger.NO_UTTERANCE
            )
            if _name == "utterance_count"
            else Trigger.NO_UTTERANCE,
            trigger_doc="every utterance with `over` (found as it happens), else none"
            if _name == "utterance_count"
            else "",
            summary=_summary,
            example=Example({_name: {"over": 100}}),
            call=_metric(_name),
            lint=_duration_lint if _name == "duration" else None,
        ),
        __name__,
    )
