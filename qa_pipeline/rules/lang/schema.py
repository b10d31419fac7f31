"""The rule-pack language, as pydantic models (``extra="forbid"`` everywhere).

A pack is ``pack.yaml`` (:class:`PackSpec`: name, version, settings) plus rule files
(:class:`RuleFile`: ``rules: [...]``). A condition (:class:`Cond`) is a mapping of one or
more operators; several operators in one mapping must all hold (an implicit ``all``).
See ``configs/rules/README.md`` for the language as a QA lead reads it.
"""

from __future__ import annotations

import datetime as dt
import keyword
import re
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from ...messages import Direction, Severity
from .base import Phrases, RoleName, Strict, _nonempty_phrases, parse_hhmm, parse_range
from .registry import REGISTRY, Operator, on_change

__all__ = ["Cond", "RULE_ID", "Phrases", "RoleName", "Strict", "parse_hhmm", "parse_range"]

RULE_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$")


class Cond(Strict):
    """A condition: one or more operators (all must hold). Its fields are the operators of
    the registry (:mod:`.registry`), added by :func:`_set_operators`."""

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, v in data.items():
                op = REGISTRY.get(name)
                if op is not None and op.shorthand is not None and v is not None:
                    short = op.shorthand(v)
                    if short is not v:
                        data = {**data, name: short}
        return data

    @model_validator(mode="after")
    def _nonempty(self) -> Cond:
        if not self.operators():
            raise ValueError("empty condition: give at least one operator")
        return self

    def operators(self) -> list[tuple[str, Any]]:
        """The operators set in this mapping, in registry order (YAML names)."""
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


def _field_name(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) or name in ("all", "any") else name


def _annotation(op: Operator) -> Any:
    spec = op.spec
    if isinstance(spec, str):
        spec = eval(spec, {"Cond": Cond, "list": list})  # "Cond" / "list[Cond]"
    return spec | None


def _rebuild() -> None:
    ns = {"Cond": Cond}
    Cond.model_rebuild(force=True, _types_namespace=ns)
    for op in REGISTRY.values():
        for m in (*op.models, op.spec):
            if isinstance(m, type) and issubclass(m, BaseModel):
                # the cast keeps this typed when pydantic is absent (mypyc's isolated build)
                cast("type[BaseModel]", m).model_rebuild(force=True, _types_namespace=ns)
    for m in (RuleSpec, RuleFile):
        m.model_rebuild(force=True, _types_namespace=ns)


def _set_operators(changes: list[tuple[str, Operator | None]]) -> None:
    """Keep ``Cond``'s fields equal to the registry (operators added or removed)."""
    fields = Cond.__pydantic_fields__
    for name, op in changes:
        fname = _field_name(name)
        if op is None:
            fields.pop(fname, None)
            Cond.__annotations__.pop(fname, None)
        else:
            ann = _annotation(op)
            alias = name if fname != name else None
            Cond.__annotations__[fname] = ann
            fields[fname] = FieldInfo.from_annotated_attribute(
                ann, Field(None, alias=alias, **op.field_args)
            )
    _rebuild()


# The operators are not imported here: their modules (qa_pipeline.rules.ops) sit above the
# language and the runtime, and register into the registry; the rules package imports them
# first, so ``Cond`` has them all before any pack is read. Those registered already are
# added now, any later one when it registers.
_set_operators(list(REGISTRY.items()))
on_change(_set_operators)
