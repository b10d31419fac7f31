"""What a supervisor is told: a :class:`Notification` built from an event, and its renderings
(Markdown for the group robots, plain text for e-mail, a JSON document for webhooks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from ..sinks.base import Event, EventKind

SEVERITY_ZH = {"critical": "严重", "major": "重要", "minor": "轻微"}

Kind = Literal["critical_finding", "low_score", "test"]


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
        out = [f"### {self.title}"]
        out += [f"> **{k}**：{v}" for k, v in self.lines]
        if self.link:
            out.append(f"[打开质检看板]({self.link})")
        return "\n\n".join(out)

    def text(self) -> str:
        out = [self.title, ""]
        out += [f"{k}：{v}" for k, v in self.lines]
        if self.link:
            out += ["", f"质检看板：{self.link}"]
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
