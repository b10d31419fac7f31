"""Transcript fixtures: short calls with the verdict each rule must give.

A fixture file (``configs/rules/fixtures/*.yaml``)::

    fixtures:
      - name: polite-inbound
        call: {direction: inbound, started_at: "2026-03-03T10:00:00", duration: 60,
               channel_ends: [58.0, 57.0]}
        turns:
          - [agent, 1.0, 4.0, 您好，华冠客服，请问有什么可以帮您？]
          - {role: customer, start: 4.5, end: 6.0, text: 我的订单没收到, level_dbfs: -22}
          - {role: agent, start: 7.0, end: 9.0, text: 这是公司规定, confidence: 0.2}
        expect:
          OPEN-GREET: ok            # ok = passed, fire = failed, not_applicable,
          BAN-POLICY: uncertain     # uncertain (heard with low confidence / roles unknown)

``qa-pipeline rules test`` runs every fixture through :func:`score_transcript` and
compares each expectation with the rule's verdict.

Personal data: a turn may hold the digits a customer says (the runner redacts them as the
text step does) or the placeholder the redactor leaves in their place (``[手机号]``,
``[身份证号]``, ... the labels of :data:`qa_pipeline.privacy.LABELS`): a placeholder is
read as a mask of that kind at that place (``Utterance.entities``), so an ``entity``
condition finds it exactly as it found the number in the call the text came from, and text
conditions read the same text the rules read then (in a compact ``[role, start, end, text]``
turn, quote such a text: ``'号码是[手机号]'``). :func:`fixture_from_transcript` writes a
stored (redacted) call as a fixture that way (``qa-pipeline rules fixtures-from-reviews``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError, Location
from ..messages import CallEnded, CallInfo, Direction, Role, Utterance, Verdict
from ..privacy import LABELS, Kind, default_redactor, redact_utterance
from ..privacy.apply import masks_in
from ..transcript import Transcript
from ..yamlsrc import load_yaml_file, validation_problems
from .pack import RulePack, default_pack_path
from .runtime.engine import score_transcript

Expect = Literal["fire", "ok", "not_applicable", "uncertain"]
_VERDICT: dict[Expect, Verdict] = {
    "fire": Verdict.FAILED,
    "ok": Verdict.PASSED,
    "not_applicable": Verdict.NOT_APPLICABLE,
    "uncertain": Verdict.UNCERTAIN,
}
_EXPECT = {v: k for k, v in _VERDICT.items()}
_ROLES = {
    "a": "agent",
    "c": "customer",
    "agent": "agent",
    "customer": "customer",
    "unknown": "unknown",
    "u": "unknown",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TurnSpec(_Strict):
    role: Literal["agent", "customer", "unknown"]
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    level_dbfs: float | None = None
    confidence: float = Field(1.0, ge=0, le=1)
    channel: int | None = None
    verified: list[str] = Field(default_factory=list)  # phrases a verification decode heard


class CallSpec(_Strict):
    call_id: str | None = None
    direction: Direction = Direction.INBOUND
    started_at: dt.datetime | None = None
    duration: float | None = Field(None, gt=0)
    channel_ends: list[float] = Field(default_factory=list)
    channels: list[Literal["agent", "customer", "unknown"]] = Field(
        default_factory=lambda: list[Literal["agent", "customer", "unknown"]](["agent", "customer"])
    )


class FixtureSpec(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    call: CallSpec = Field(default_factory=lambda: CallSpec.model_validate({}))
    turns: list[TurnSpec] = Field(min_length=1)
    expect: dict[str, Expect] = Field(min_length=1)

    @field_validator("turns", mode="before")
    @classmethod
    def _compact(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for t in v:
            if isinstance(t, list) and len(t) in (4, 5):
                d = {
                    "role": _ROLES.get(str(t[0]).lower(), t[0]),
                    "start": t[1],
                    "end": t[2],
                    "text": t[3],
                }
                if len(t) == 5:
                    d["level_dbfs"] = t[4]
                out.append(d)
            elif isinstance(t, dict) and "role" in t:
                out.append({**t, "role": _ROLES.get(str(t["role"]).lower(), t["role"])})
            else:
                out.append(t)
        return out


class FixtureFile(_Strict):
    fixtures: list[FixtureSpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Fixture:
    spec: FixtureSpec
    location: Location

    @property
    def name(self) -> str:
        return self.spec.name

    def transcript(self) -> Transcript:
        """The fixture's call as the rules see a real one: its turns' text redacted as the
        text step redacts a decode (so a fixture may write the digits a customer says, and
        ``entity`` conditions read the masks' spans)."""
        s = self.spec
        redactor = default_redactor()
        cid = s.call.call_id or s.name
        roles = tuple(Role(r) for r in s.call.channels)
        utts = []
        for i, t in enumerate(s.turns):
            role = Role(t.role)
            ch = t.channel if t.channel is not None else (roles.index(role) if role in roles else 0)
            u = Utterance(
                call_id=cid,
                index=i,
                channel=ch,
                role=role,
                start=t.start,
                end=t.end,
                text=t.text,
                raw_text=t.text,
                confidence=t.confidence,
                level_dbfs=t.level_dbfs,
                verified=tuple(t.verified),
            )
            utts.append(redact_utterance(u, redactor))
        last = max(u.end for u in utts)
        duration = s.call.duration or last
        call = CallInfo(
            call_id=cid, started_at=s.call.started_at, direction=s.call.direction, channels=roles
        )
        ended = CallEnded(call_id=cid, end=duration, channel_ends=tuple(s.call.channel_ends))
        return Transcript(call=call, utterances=tuple(utts), ended=ended)


@dataclass(frozen=True, slots=True)
class Outcome:
    fixture: str
    rule_id: str
    expected: str
    actual: str
    ok: bool
    detail: str
    location: Location


def default_fixtures_dir(pack_path: Path | None = None) -> Path:
    base = pack_path if pack_path is not None else default_pack_path()
    return (base if base.is_dir() else base.parent) / "fixtures"


def load_fixtures(directory: Path) -> list[Fixture]:
    """All fixtures under ``directory`` (``*.yaml``, recursively); every problem at once."""
    problems: list[tuple[Location, str]] = []
    out: list[Fixture] = []
    files = sorted(directory.rglob("*.yaml")) if directory.is_dir() else [directory]
    for p in files:
        try:
            data = load_yaml_file(p)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        try:
            ff = FixtureFile.model_validate(data)
        except ValidationError as e:
            problems.extend(validation_problems(e, data, str(p)))
            continue
        items = data["fixtures"]
        for i, spec in enumerate(ff.fixtures):
            out.append(Fixture(spec, Location(str(p), items.item_lines[i])))
    names: dict[str, Location] = {}
    for f in out:
        if f.name in names:
            problems.append(
                (f.location, f"duplicate fixture name {f.name} (first at {names[f.name]})")
            )
        names[f.name] = f.location
    if problems:
        raise ConfigError(problems)
    return out


def check_ids(pack: RulePack, fixtures: list[Fixture]) -> list[tuple[Location, str]]:
    ids = set(pack.rule_ids)
    return [
        (f.location, f"fixture {f.name}: unknown rule id {rid}")
        for f in fixtures
        for rid in f.spec.expect
        if rid not in ids
    ]


def run_fixtures(pack: RulePack, fixtures: list[Fixture]) -> list[Outcome]:
    """Score every fixture and compare each expectation with the verdict."""
    out: list[Outcome] = []
    for f in fixtures:
        card = score_transcript(pack, f.transcript())
        by_id = {v.rule_id: v for v in card.verdicts}
        for rid, exp in f.spec.expect.items():
            v = by_id.get(rid)
            if v is None:
                out.append(Outcome(f.name, rid, exp, "unknown rule", False, "", f.location))
                continue
            actual = _EXPECT[v.verdict]
            out.append(
                Outcome(f.name, rid, exp, actual, v.verdict == _VERDICT[exp], v.detail, f.location)
            )
    return out


def coverage(fixtures: list[Fixture]) -> dict[str, set[str]]:
    """rule id -> the expectations its fixtures hold (``fire`` / ``ok`` / ``not_applicable``
    / ``uncertain``)."""
    cov: dict[str, set[str]] = {}
    for f in fixtures:
        for rid, exp in f.spec.expect.items():
            cov.setdefault(rid, set()).add(exp)
    return cov


def placeholder_text(u: Utterance) -> str:
    """``u.text`` with each mask of personal data (its ``entities``, else the masks in the
    text) written as the bare placeholder of its kind (``[手机号]``): no keyed hash, no
    visible digits."""
    spans = u.entities or masks_in(u.text)
    if not spans:
        return u.text
    parts: list[str] = []
    pos = 0
    for s in spans:
        parts.append(u.text[pos : s.start])
        parts.append(f"[{LABELS[Kind(s.kind)]}]")
        pos = s.end
    parts.append(u.text[pos:])
    return "".join(parts)


def _num(x: float) -> float:
    return round(float(x), 3)


def fixture_from_transcript(
    name: str, t: Transcript, expect: dict[str, Expect], description: str = ""
) -> dict[str, Any]:
    """A fixture (the mapping of one ``fixtures:`` item) of a stored call: its turns (text
    with placeholders for personal data, :func:`placeholder_text`), the call metadata the
    rules read (direction, start time, duration, channel ends, channel roles) and the
    verdicts to expect (``expect``). Checked against the fixture schema."""
    call: dict[str, Any] = {"call_id": t.call.call_id, "direction": t.call.direction.value}
    if t.call.started_at is not None:
        call["started_at"] = t.call.started_at.isoformat()
    if t.duration:
        call["duration"] = _num(t.duration)
    if t.ended.channel_ends:
        call["channel_ends"] = [_num(x) for x in t.ended.channel_ends]
    call["channels"] = [r.value for r in t.call.channels]
    turns: list[dict[str, Any]] = []
    for u in t.utterances:
        turn: dict[str, Any] = {
            "role": u.role.value,
            "start": _num(u.start),
            "end": _num(u.end),
            "text": placeholder_text(u),
            "channel": u.channel,
        }
        if u.confidence != 1.0:
            turn["confidence"] = _num(u.confidence)
        if u.level_dbfs is not None:
            turn["level_dbfs"] = _num(u.level_dbfs)
        if u.verified:
            turn["verified"] = list(u.verified)
        turns.append(turn)
    out: dict[str, Any] = {"name": name}
    if description:
        out["description"] = description
    out.update(call=call, turns=turns, expect=dict(expect))
    FixtureSpec.model_validate(out)
    return out


EXPECT_OF: dict[Verdict, Expect] = _EXPECT

__all__ = [
    "EXPECT_OF",
    "Fixture",
    "FixtureSpec",
    "Outcome",
    "check_ids",
    "coverage",
    "default_fixtures_dir",
    "fixture_from_transcript",
    "load_fixtures",
    "placeholder_text",
    "run_fixtures",
]
