"""The rule-pack language, as pydantic models (``extra="forbid"`` everywhere).

A pack is ``pack.yaml`` (:class:`PackSpec`: name, version, settings) plus rule files
(:class:`RuleFile`: ``rules: [...]``). A condition (:class:`Cond`) is a mapping of one or
more operators; several operators in one mapping must all hold (an implicit ``all``).
See ``configs/rules/README.md`` for the language as a QA lead reads it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...messages import Direction, Severity
from .linear_regex import compile_pattern

RoleName = Literal["agent", "customer", "unknown", "any"]
Phrases = list[str]

_HHMM = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
RULE_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _nonempty_phrases(v: list[str], what: str = "phrase list") -> list[str]:
    if not v:
        raise ValueError(f"empty {what}")
    for p in v:
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"empty phrase in {what}")
    return v


def _as(key: str, types: tuple[type, ...]) -> Any:
    """A 'before' validator turning a shorthand (list / str / number) into ``{key: value}``."""

    def conv(v: Any) -> Any:
        if isinstance(v, types):
            return {key: v}
        return v

    return conv


# --------------------------------------------------------------------------- utterance level


class KeywordSpec(Strict):
    """Exact phrases on the match form (digits and Chinese numerals folded together)."""

    any: Phrases | None = None
    all: Phrases | None = None
    none: Phrases | None = None
    at_least: int | None = Field(None, ge=1)
    of: Phrases | None = None
    at: Literal["anywhere", "start", "end", "whole"] = "anywhere"

    @model_validator(mode="after")
    def _one(self) -> KeywordSpec:
        kinds = [k for k in ("any", "all", "none") if getattr(self, k) is not None]
        if self.at_least is not None or self.of is not None:
            if self.at_least is None or self.of is None:
                raise ValueError("at_least needs 'of' (and 'of' needs at_least)")
            kinds.append("at_least")
        if len(kinds) != 1:
            raise ValueError("keyword needs exactly one of any / all / none / at_least+of")
        for k in ("any", "all", "none", "of"):
            v = getattr(self, k)
            if v is not None:
                _nonempty_phrases(v)
        if self.at_least is not None and self.of is not None and self.at_least > len(self.of):
            raise ValueError(f"at_least {self.at_least} > {len(self.of)} phrases: never true")
        return self


class RegexSpec(Strict):
    """Python ``re`` syntax, run on RE2 in linear time (:mod:`.linear_regex`); a pattern
    RE2 cannot run the same way is refused here, at load, with the reason."""

    pattern: str
    exclude: str | None = None

    @field_validator("pattern", "exclude")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            compile_pattern(v)  # PatternError is a ValueError: the reason, as the message
        return v


class FuzzySpec(Strict):
    phrases: Phrases
    threshold: float = Field(85.0, ge=50, le=100)

    @field_validator("phrases")
    @classmethod
    def _ne(cls, v: list[str]) -> list[str]:
        return _nonempty_phrases(v)


class SimilarSpec(Strict):
    examples: Phrases
    threshold: float = Field(75.0, ge=30, le=100)

    @field_validator("examples")
    @classmethod
    def _ne(cls, v: list[str]) -> list[str]:
        return _nonempty_phrases(v, "example list")


class PositionSpec(Strict):
    """Where the utterance is. Turns count the utterance's own role; index < 0 counts from
    the end (decided at call end)."""

    first_seconds: float | None = Field(None, gt=0)
    last_seconds: float | None = Field(None, gt=0)
    first_turns: int | None = Field(None, ge=1)
    last_turns: int | None = Field(None, ge=1)
    index: list[int] | None = None

    @field_validator("index", mode="before")
    @classmethod
    def _idx(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v

    @model_validator(mode="after")
    def _some(self) -> PositionSpec:
        if all(v is None for v in self.__dict__.values()):
            raise ValueError(
                "position needs at least one of first_seconds, last_seconds, "
                "first_turns, last_turns, index"
            )
        return self


class ProximitySpec(Strict):
    a: Phrases
    b: Phrases
    within: int = Field(10, ge=0)
    ordered: bool = False

    @field_validator("a", "b")
    @classmethod
    def _ne(cls, v: list[str]) -> list[str]:
        return _nonempty_phrases(v)


DEFAULT_NEGATORS = ["不", "没", "没有", "别", "不要", "无法", "未", "不能", "不会", "不用"]


class NegationSpec(Strict):
    phrases: Phrases
    within: int = Field(3, ge=1)
    negators: Phrases = Field(default_factory=lambda: list(DEFAULT_NEGATORS))

    @field_validator("phrases", "negators")
    @classmethod
    def _ne(cls, v: list[str]) -> list[str]:
        return _nonempty_phrases(v)


EntityKind = Literal["phone", "mobile", "id_number", "bank_card", "number"]


class EntitySpec(Strict):
    kind: EntityKind


class HolidayGreetingSpec(Strict):
    threshold: float = Field(85.0, ge=50, le=100)


# --------------------------------------------------------------------------- call metadata


class TimeOfDaySpec(Strict):
    """Local call start time inside any of the ranges ``"HH:MM-HH:MM"`` (end exclusive)."""

    between: list[str]

    @field_validator("between", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("between")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("empty list of time ranges")
        for r in v:
            parse_range(r)
        return v


def parse_hhmm(s: str) -> int:
    m = _HHMM.match(s.strip())
    if not m:
        raise ValueError(f"bad time {s!r}, expected HH:MM")
    minutes = int(m.group(1)) * 60 + int(m.group(2))
    if minutes > 24 * 60:
        raise ValueError(f"bad time {s!r}")
    return minutes


def parse_range(r: str) -> tuple[int, int]:
    if not isinstance(r, str) or r.count("-") != 1:
        raise ValueError(f"bad time range {r!r}, expected 'HH:MM-HH:MM'")
    a, b = r.split("-")
    return parse_hhmm(a), parse_hhmm(b)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class CalendarSpec(Strict):
    holiday: bool | None = None
    weekday: list[Weekday] | None = None
    dates: list[dt.date] | None = None

    @model_validator(mode="after")
    def _some(self) -> CalendarSpec:
        if self.holiday is None and self.weekday is None and self.dates is None:
            raise ValueError("calendar needs holiday, weekday or dates")
        return self


# --------------------------------------------------------------------------- call level


class SequenceSpec(Strict):
    """An anchor (``first``) followed by ``then`` within N turns and/or seconds.

    Found for each anchor that is followed in time; with ``missing: true`` found for each
    anchor that is *not* followed (the usual form under ``forbid``)."""

    first: Cond
    then: Cond
    within_turns: int | None = Field(None, ge=1)
    within_seconds: float | None = Field(None, gt=0)
    turn_role: RoleName = "any"
    missing: bool = False

    @model_validator(mode="after")
    def _limit(self) -> SequenceSpec:
        if self.within_turns is None and self.within_seconds is None:
            raise ValueError("sequence needs within_turns and/or within_seconds")
        return self


class ResponseGapSpec(Strict):
    over: float = Field(gt=0)


class SilenceSpec(Strict):
    over: float | None = Field(None, gt=0)
    total_over: float | None = Field(None, gt=0)
    count_from: float = Field(2.0, ge=0)
    except_after: Cond | None = None

    @model_validator(mode="after")
    def _some(self) -> SilenceSpec:
        if self.over is None and self.total_over is None:
            raise ValueError("silence needs over and/or total_over")
        return self


class HoldSpec(Strict):
    min_seconds: float = Field(gt=0)
    notice: Cond
    thanks: Cond
    max_customer_speech: float = Field(3.0, ge=0)


class TalkOverSpec(Strict):
    min_overlap_ms: float = Field(500.0, gt=0)
    by: Literal["agent", "customer"] = "agent"


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


class RepetitionSpec(Strict):
    role: RoleName = "any"
    times: int = Field(3, ge=2)
    similarity: float = Field(90.0, ge=50, le=100)
    min_chars: int = Field(4, ge=1)


class CountSpec(Strict):
    of: Cond
    at_least: int | None = Field(None, ge=1)
    over: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> CountSpec:
        if (self.at_least is None) == (self.over is None):
            raise ValueError("count needs exactly one of at_least / over")
        return self


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


class StageSpec(Strict):
    name: str
    match: Cond


class StagesSpec(Strict):
    stages: list[StageSpec] = Field(min_length=2)
    in_order: bool = True


class HangupSpec(Strict):
    first: Literal["agent", "customer"]
    margin: float = Field(0.3, ge=0)


class VerdictsSpec(Strict):
    """Other rules' verdicts: found when every listed rule passed (``not_applicable``
    counts as passed: 'apology when due')."""

    passed: list[str] = Field(min_length=1)


class Cond(Strict):
    """A condition: one or more operators (all must hold)."""

    all_: list[Cond] | None = Field(None, alias="all", min_length=1)
    any_: list[Cond] | None = Field(None, alias="any", min_length=1)
    not_: Cond | None = Field(None, alias="not")
    role: RoleName | None = None
    keyword: KeywordSpec | None = None
    regex: RegexSpec | None = None
    fuzzy: FuzzySpec | None = None
    similar: SimilarSpec | None = None
    position: PositionSpec | None = None
    proximity: ProximitySpec | None = None
    negation: NegationSpec | None = None
    entity: EntitySpec | None = None
    holiday_greeting: HolidayGreetingSpec | None = None
    direction: Direction | None = None
    time_of_day: TimeOfDaySpec | None = None
    calendar: CalendarSpec | None = None
    start_known: bool | None = None
    exists: Cond | None = None
    sequence: SequenceSpec | None = None
    response_gap: ResponseGapSpec | None = None
    silence: SilenceSpec | None = None
    hold: HoldSpec | None = None
    talk_over: TalkOverSpec | None = None
    speech_rate: RangeSpec | None = None
    volume: RangeSpec | None = None
    duration: RangeSpec | None = None
    utterance_count: RangeSpec | None = None
    repetition: RepetitionSpec | None = None
    count: CountSpec | None = None
    share: ShareSpec | None = None
    stages: StagesSpec | None = None
    hangup: HangupSpec | None = None
    verdicts: VerdictsSpec | None = None

    _r = field_validator("regex", mode="before")(_as("pattern", (str,)))
    _e = field_validator("entity", mode="before")(_as("kind", (str,)))
    _t = field_validator("time_of_day", mode="before")(_as("between", (list, str)))
    _g = field_validator("response_gap", mode="before")(_as("over", (int, float)))
    _v = field_validator("verdicts", mode="before")(_as("passed", (list,)))
    _h = field_validator("holiday_greeting", mode="before")(lambda v: {} if v is True else v)

    @field_validator("fuzzy", mode="before")
    @classmethod
    def _fz(cls, v: Any) -> Any:
        return {"phrases": [v] if isinstance(v, str) else v} if isinstance(v, (list, str)) else v

    @field_validator("similar", mode="before")
    @classmethod
    def _sim(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"examples": [v]}
        return {"examples": v} if isinstance(v, list) else v

    @field_validator("keyword", mode="before")
    @classmethod
    def _kw(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"any": [v]}
        return {"any": v} if isinstance(v, list) else v

    @model_validator(mode="after")
    def _nonempty(self) -> Cond:
        if not self.operators():
            raise ValueError("empty condition: give at least one operator")
        return self

    def operators(self) -> list[tuple[str, Any]]:
        """The operators set in this mapping, in declaration order (YAML names)."""
        out = []
        for name, field in type(self).model_fields.items():
            v = getattr(self, name)
            if v is not None:
                out.append((field.alias or name, v))
        return out


class ScopeSpec(Strict):
    """Which utterances the rule body sees and when a ``require`` is decided."""

    role: RoleName = "any"
    direction: Direction | None = None
    first_seconds: float | None = Field(None, gt=0)
    first_turns: int | None = Field(None, ge=1)
    last_seconds: float | None = Field(None, gt=0)
    last_turns: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _window(self) -> ScopeSpec:
        first = self.first_seconds is not None or self.first_turns is not None
        last = self.last_seconds is not None or self.last_turns is not None
        if first and last:
            raise ValueError("a scope window is either first_* or last_*, not both")
        return self


class RuleSpec(Strict):
    id: str
    description: str = Field(min_length=1)
    severity: Severity
    weight: float = Field(ge=0, le=100)
    enabled: bool = True
    section: str | None = None
    scope: ScopeSpec = Field(default_factory=lambda: ScopeSpec.model_validate({}))
    when: Cond | None = None
    require: Cond | None = None
    forbid: Cond | None = None
    tolerance: int = Field(0, ge=0)
    deduct: Literal["once", "per_occurrence"] = "once"
    max_deduction: float | None = Field(None, ge=0)
    max_findings: int = Field(10, ge=1)
    suggestion: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not RULE_ID.match(v):
            raise ValueError(f"rule id {v!r} must look like OPEN-GREET (A-Z, 0-9, dashes)")
        return v

    @model_validator(mode="after")
    def _body(self) -> RuleSpec:
        if (self.require is None) == (self.forbid is None):
            raise ValueError("a rule needs exactly one of 'require' or 'forbid'")
        return self


class RuleFile(Strict):
    rules: list[RuleSpec] = Field(min_length=1)


class GradeSpec(Strict):
    name: str
    label: str
    min_score: float = Field(ge=0, le=100)


class HolidaySpec(Strict):
    name: str
    greeting: Phrases
    date: dt.date | None = None
    from_: dt.date | None = Field(None, alias="from")
    to: dt.date | None = None

    @field_validator("greeting", mode="before")
    @classmethod
    def _g(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _dates(self) -> HolidaySpec:
        _nonempty_phrases(self.greeting, "greeting list")
        if self.date is not None:
            if self.from_ is not None or self.to is not None:
                raise ValueError("a holiday has 'date' or 'from'/'to', not both")
        elif self.from_ is None or self.to is None or self.to < self.from_:
            raise ValueError("a holiday needs 'date', or 'from' and 'to' (to >= from)")
        return self

    def covers(self, day: dt.date) -> bool:
        if self.date is not None:
            return day == self.date
        assert self.from_ is not None and self.to is not None
        return self.from_ <= day <= self.to


def _default_grades() -> list[GradeSpec]:
    return [
        GradeSpec(name="非常满意", label="very satisfied", min_score=90),
        GradeSpec(name="满意", label="satisfied", min_score=80),
        GradeSpec(name="基本满意", label="basically satisfied", min_score=60),
        GradeSpec(name="不满意", label="dissatisfied", min_score=0),
    ]


class Settings(Strict):
    """Pack settings. ``thresholds`` and ``phrases`` are free-form names referenced from
    rules as ``${thresholds.NAME}`` / ``${phrases.NAME}``."""

    company_name: str = ""
    agent_title: str = ""
    grades: list[GradeSpec] = Field(default_factory=_default_grades)
    holidays: list[HolidaySpec] = Field(default_factory=list)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    phrases: dict[str, Phrases] = Field(default_factory=dict)
    window_grace_seconds: float = Field(3.0, ge=0)
    max_utterance_seconds: float = Field(30.0, gt=0)
    max_call_seconds: float = Field(7200.0, gt=0)
    fail_grade: str | None = None
    # An utterance heard with confidence (exp of Whisper's mean token log-prob) below this
    # makes a verdict that rests on it ``uncertain`` instead of failed; 0 turns it off.
    uncertain_confidence: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _grades(self) -> Settings:
        if len(self.grades) != 4:
            raise ValueError("grades: exactly four grades (非常满意 / 满意 / 基本满意 / 不满意)")
        mins = [g.min_score for g in self.grades]
        if mins != sorted(mins, reverse=True) or len(set(mins)) != 4:
            raise ValueError("grades: min_score must strictly decrease")
        if mins[-1] != 0:
            raise ValueError("grades: the last grade must have min_score 0")
        if self.fail_grade is not None and self.fail_grade not in {g.name for g in self.grades}:
            raise ValueError(f"fail_grade {self.fail_grade!r} is not a grade name")
        for name, v in self.phrases.items():
            _nonempty_phrases(v, f"phrases.{name}")
        return self


class PackSpec(Strict):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""
    # Rule files of the directory, in the order their rules are listed (scorecards, lint,
    # fixtures). Without it: file-name order.
    files: list[str] | None = None
    settings: Settings = Field(default_factory=lambda: Settings.model_validate({}))


Cond.model_rebuild()
SequenceSpec.model_rebuild()
SilenceSpec.model_rebuild()
HoldSpec.model_rebuild()
CountSpec.model_rebuild()
StageSpec.model_rebuild()
StagesSpec.model_rebuild()
RuleSpec.model_rebuild()
RuleFile.model_rebuild()
