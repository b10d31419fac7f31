"""What a supervisor is told: a :class:`Notification` built from an event, and its renderings
(Markdown for the group robots, plain text for e-mail, a JSON document for webhooks).

Every value put into a rendering came from somewhere else (call and agent ids from the
wire, rule messages, transcript text), so each is made safe for it: in every rendering,
line breaks and other control characters become spaces (no value can start a line of its
own, a heading, a quote or a forged field); in Markdown, every ASCII punctuation character
Markdown or the robots' extensions use (links, emphasis, code, headings, quotes, tables,
HTML and WeCom's ``<font>`` / ``<@user>`` tags) is backslash-escaped, so ``[x](http://evil)``
is shown as those characters, not as a link. The JSON document keeps values as they are
(JSON escaping is enough there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from ..sinks.base import Event, EventKind

SEVERITY_ZH = {"critical": "严重", "major": "重要", "minor": "轻微"}

Kind = Literal["critical_finding", "low_score", "test"]

_MD_SPECIAL = re.compile(r"([\\`*_\[\]()<>#!|~&])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")


def one_line(value: object) -> str:
    """``value`` as text on one line: control, line/paragraph-separator and bidi characters
    replaced by a space."""
    return _CONTROL.sub(" ", str(value)).strip()


def md_escape(value: object) -> str:
    """``value`` as literal Markdown text on one line (see the module's docstring)."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(value))


@dataclass(frozen=True)
class Notification:
    kind: Kind
    call_id: str
    title: str
    lines: tuple[tuple[str, str], ...]
    agent_id: str | None = None
    event: dict[str, Any] = field(default_factory=dict)
    link: str | None = None

    def markdown(self) -> str:
        out = [f"### {md_escape(self.title)}"]
        out += [f"> **{md_escape(k)}**：{md_escape(v)}" for k, v in self.lines]
        if self.link:  # the configured dashboard URL + a percent-encoded call id
            out.append(f"[打开质检看板]({one_line(self.link).replace(')', '%29')})")
        return "\n\n".join(out)

    def text(self) -> str:
        out = [one_line(self.title), ""]
        out += [f"{one_line(k)}：{one_line(v)}" for k, v in self.lines]
        if self.link:
            out += ["", f"质检看板：{one_line(self.link)}"]
        return "\n".join(out)

    def document(self) -> dict[str, Any]:
        """The generic webhook's JSON body (the event envelope included as is)."""
        return {
            "type": self.kind,
            "title": self.title,
            "text": self.text(),
            "call_id": self.call_id,
            "agent_id": self.agent_id,
            "fields": {k: v for k, v in self.lines},
            "link": self.link,
            "event": self.event,
        }


def _fmt(x: Any) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{f:g}"


def _link(base: str | None, call_id: str) -> str | None:
    if not base:
        return None
    return (base if base.endswith("/") else base + "/") + "#call=" + quote(call_id, safe="")


def from_alert(
    event: Event, agent_id: str | None, *, include_evidence: bool, dashboard_url: str | None
) -> Notification:
    p = event.payload
    rule = str(p.get("rule_id", "?"))
    sev = str(p.get("severity", "critical"))
    lines: list[tuple[str, str]] = [("通话", event.call_id)]
    if agent_id:
        lines.append(("坐席", agent_id))
    lines.append(("规则", f"{rule}（{SEVERITY_ZH.get(sev, sev)}）"))
    message = str(p.get("message") or "")
    evidence = [e for e in p.get("evidence") or () if isinstance(e, dict)]
    if message:
        if not include_evidence:
            quoted = {str(e.get(k)) for e in evidence for k in ("text", "matched") if e.get(k)}
            for q in sorted(quoted, key=len, reverse=True):
                message = message.replace(q, "…")
        lines.append(("说明", message))
    if evidence:
        e = evidence[0]
        where = f"{_fmt(e.get('start', 0))}s"
        if include_evidence and e.get("text"):
            lines.append(("原话", f"{e['text']}（{where}）"))
        else:
            lines.append(("时间点", where))
    if p.get("suggestion"):
        lines.append(("建议话术", str(p["suggestion"])))
    return Notification(
        kind="critical_finding",
        call_id=event.call_id,
        agent_id=agent_id,
        title=f"【质检告警】严重违规 {rule}",
        lines=tuple(lines),
        event=event.to_json_dict(),
        link=_link(dashboard_url, event.call_id),
    )


def from_scorecard(
    event: Event, agent_id: str | None, threshold: float, *, dashboard_url: str | None
) -> Notification:
    p = event.payload
    score = float(p.get("score", 0.0))
    grade = str(p.get("grade", ""))
    lines: list[tuple[str, str]] = [("通话", event.call_id)]
    if agent_id:
        lines.append(("坐席", agent_id))
    lines.append(("得分", f"{_fmt(score)}（低于 {_fmt(threshold)}）"))
    if grade:
        lines.append(("等级", grade))
    if p.get("failed"):
        lines.append(("结果", "未通过（严重违规）"))
    failed = [
        v for v in p.get("verdicts") or () if isinstance(v, dict) and v.get("verdict") == "failed"
    ]
    if failed:
        lines.append(
            (
                "扣分规则",
                "、".join(f"{v.get('rule_id')} −{_fmt(v.get('deduction', 0))}" for v in failed),
            )
        )
    unsure = [
        v
        for v in p.get("verdicts") or ()
        if isinstance(v, dict) and v.get("verdict") == "uncertain"
    ]
    if unsure:
        lines.append(("待复核", "、".join(str(v.get("rule_id")) for v in unsure)))
    if p.get("duration"):
        lines.append(("时长", f"{_fmt(p['duration'])}s"))
    return Notification(
        kind="low_score",
        call_id=event.call_id,
        agent_id=agent_id,
        title=f"【质检告警】低分通话 {_fmt(score)} 分" + (f"（{grade}）" if grade else ""),
        lines=tuple(lines),
        event=event.to_json_dict(),
        link=_link(dashboard_url, event.call_id),
    )


def sample_notification() -> Notification:
    """What ``qa-pipeline notify test`` sends."""
    return Notification(
        kind="test",
        call_id="test",
        title="【质检通知】测试消息",
        lines=(("说明", "这是一条测试消息：通知渠道配置正确。"),),
    )


def is_trigger(event: Event) -> bool:
    return event.kind in (EventKind.ALERT, EventKind.SCORECARD)
