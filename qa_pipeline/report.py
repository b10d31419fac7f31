"""Presenting results: the versioned JSON document and the terminal tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .messages import SCHEMA_VERSION, Role, Scorecard, Verdict, to_dict
from .pipeline import AsrStats, CallResult
from .transcript import transcript_to_dict

_ROLE_STYLE = {Role.AGENT: "cyan", Role.CUSTOMER: "magenta", Role.UNKNOWN: "white"}
_VERDICT_STYLE = {
    Verdict.PASSED: "green",
    Verdict.FAILED: "red",
    Verdict.NOT_APPLICABLE: "dim",
    Verdict.UNCERTAIN: "yellow",
}


def stats_to_dict(stats: AsrStats) -> dict[str, Any]:
    return {
        "audio_seconds": round(stats.audio_seconds, 3),
        "speech_seconds": round(stats.speech_seconds, 3),
        "wall_seconds": round(stats.wall_seconds, 3),
        "rtf": round(stats.rtf, 4),
        "segments": stats.segments,
        "dropped": dict(stats.dropped),
        "cached": stats.cached,
    }


def scorecard_to_dict(card: Scorecard) -> dict[str, Any]:
    return {
        "score": round(card.score, 2),
        "grade": card.grade,
        "failed": card.failed,
        "review": card.review,
        "rule_pack": card.rule_pack,
        "rule_pack_version": card.rule_pack_version,
        "duration": round(card.duration, 3),
        "complete": card.complete,
        "incomplete_reasons": list(card.incomplete_reasons),
        # the call's measures (configs/rules/README.md): response gaps, silence, talk-over,
        # agent pace and level, utterance counts
        "extras": {name: value for name, value in card.extras},
    }


def result_document(result: CallResult) -> dict[str, Any]:
    """The JSON document of ``transcribe --json`` / ``score --json`` (README: JSON output)."""
    doc = transcript_to_dict(result.transcript)
    doc["kind"] = "scorecard" if result.scorecard else "transcript"
    doc["stats"] = stats_to_dict(result.stats)
    if result.scorecard is not None:
        card = result.scorecard
        doc["score"] = scorecard_to_dict(card)
        doc["findings"] = [_finding_dict(f) for f in to_dict(card.findings)]
        doc["verdicts"] = to_dict(card.verdicts)
    doc["schema_version"] = SCHEMA_VERSION
    return doc


def _finding_dict(f: dict[str, Any]) -> dict[str, Any]:
    f.pop("call_id", None)
    return f


def print_transcript(console: Console, result: CallResult) -> None:
    t = result.transcript
    table = Table(title=f"Call {t.call.call_id} — {t.duration:.1f} s", expand=False)
    table.add_column("#", justify="right")
    table.add_column("time", no_wrap=True)
    table.add_column("role")
    table.add_column("text", overflow="fold")
    table.add_column("conf", justify="right")
    flagged = _flagged_utterances(result.scorecard)
    for u in t.utterances:
        text = Text(u.text)
        if u.index in flagged:
            text.stylize("bold red")
            text.append("  ⚑ " + ", ".join(sorted(flagged[u.index])), style="red")
        table.add_row(
            str(u.index),
            f"{u.start:6.1f}–{u.end:6.1f}",
            Text(u.role.value, style=_ROLE_STYLE[u.role]),
            text,
            f"{u.confidence:.2f}",
        )
    console.print(table)
    s = result.stats
    console.print(
        f"[dim]{s.segments} segments, {s.speech_seconds:.1f} s speech of {s.audio_seconds:.1f} s; "
        f"transcribed in {s.wall_seconds:.1f} s (RTF {s.rtf:.3f})[/dim]"
    )


def _flagged_utterances(card: Scorecard | None) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    if card is None:
        return out
    for f in card.findings:
        for ev in f.evidence:
            if ev.utterance_index is not None:
                out.setdefault(ev.utterance_index, set()).add(f.rule_id)
    return out


def print_scorecard(console: Console, card: Scorecard) -> None:
    findings = Table(title="Findings", expand=False)
    findings.add_column("rule")
    findings.add_column("severity")
    findings.add_column("at", justify="right")
    findings.add_column("evidence", overflow="fold")
    findings.add_column("suggested phrasing", overflow="fold")
    for f in card.findings:
        ev = f.evidence[0] if f.evidence else None
        where = f"{ev.start:.1f}s" if ev else ""
        what = (ev.matched or ev.text) if ev else ""
        findings.add_row(
            f.rule_id,
            Text(f.severity.value, style="red" if f.severity.value == "critical" else "yellow"),
            where,
            f"{f.message} {('「' + what + '」') if what else ''}",
            f.suggestion or "",
        )
    if card.findings:
        console.print(findings)
    verdicts = Table(title="Rules", expand=False)
    verdicts.add_column("rule")
    verdicts.add_column("verdict")
    verdicts.add_column("deduction", justify="right")
    verdicts.add_column("description", overflow="fold")
    for v in card.verdicts:
        if v.verdict is Verdict.UNCERTAIN:
            # not taken: shown apart, with why (the utterance and its confidence)
            deduction = f"(-{v.pending_deduction:g})" if v.pending_deduction else ""
            about = Text(v.description)
            about.append(f"\n{v.detail}", style="yellow")
        else:
            deduction = f"-{v.deduction:g}" if v.deduction else ""
            about = Text(v.description)
        verdicts.add_row(
            v.rule_id, Text(v.verdict.value, style=_VERDICT_STYLE[v.verdict]), deduction, about
        )
    console.print(verdicts)
    style = "bold red" if card.failed else "bold green"
    status = "FAILED (critical finding)" if card.failed else "passed"
    console.print(Text(f"Score {card.score:.1f} / 100 — {card.grade} — {status}", style=style))
    if card.review:
        n = sum(1 for v in card.verdicts if v.verdict is Verdict.UNCERTAIN)
        pending = sum(v.pending_deduction for v in card.verdicts)
        console.print(
            Text(
                f"REVIEW: {n} uncertain verdict(s), up to -{pending:g} pending "
                "(not taken; the score counts failed verdicts only)",
                style="bold yellow",
            )
        )
