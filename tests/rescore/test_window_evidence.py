"""A rule about the last N seconds of a call: its finding's evidence is the turns in that
window (time, role, text), in the scorecard and in the re-score report, not the whole call
and not nothing."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

from qa_pipeline.messages import CallEnded, CallInfo, Direction, Role, Utterance
from qa_pipeline.rescore import RescoreOptions, rescore
from qa_pipeline.rules import default_pack_path, load_pack, score_transcript
from qa_pipeline.transcript import Transcript

from .synth import fill_store

WINDOW_RULE = """\
rules:
  - id: CLOSE-LAST30
    description: 通话最后30秒内坐席须感谢来电并道别
    severity: major
    weight: 4
    scope: {role: agent, last_seconds: 30}
    require:
      fuzzy: [感谢您的来电]
"""


def _pack(tmp: Path) -> Path:
    dst = tmp / "window-pack"
    shutil.copytree(default_pack_path(), dst, ignore=shutil.ignore_patterns("fixtures"))
    (dst / "window.yaml").write_text(WINDOW_RULE, encoding="utf-8")
    return dst


def _call(cid: str, lines: list[tuple[Role, float, float, str]], end: float) -> Transcript:
    utts = tuple(
        Utterance(
            call_id=cid,
            index=i,
            channel=0 if role is Role.AGENT else 1,
            role=role,
            start=s,
            end=e,
            text=text,
            level_dbfs=-20.0,
        )  # fmt: skip
        for i, (role, s, e, text) in enumerate(lines)
    )
    return Transcript(
        call=CallInfo(
            call_id=cid,
            started_at=datetime(2026, 3, 4, 10, 0),
            direction=Direction.INBOUND,
            agent_id="A07",
        ),  # fmt: skip
        utterances=utts,
        ended=CallEnded(call_id=cid, end=end, channel_ends=(end, end)),
    )


A, C = Role.AGENT, Role.CUSTOMER
#: 90 s: the farewell is said at 20 s, outside the last 30 s (60–90 s), where the agent
#: says three other things and the customer two
LATE = _call(
    "win-late",
    [
        (A, 1.0, 5.0, "您好，华夏客服，我是工号1023，请问有什么可以帮您？"),
        (C, 6.0, 10.0, "我想查一下话费"),
        (A, 11.0, 18.0, "好的，请您稍等，我帮您查询一下"),
        (A, 20.0, 24.0, "感谢您的来电，祝您生活愉快，再见"),
        (C, 26.0, 40.0, "等一下，我还有个问题，宽带又断了"),
        (A, 41.0, 57.0, "我马上为您提交工单，预计在两个工作日内处理完成"),
        (A, 58.0, 62.0, "您看这样处理可以吗？"),
        (C, 63.0, 66.0, "好的"),
        (A, 67.0, 75.0, "已经为您登记了"),
        (C, 76.0, 78.0, "嗯嗯"),
        (A, 79.0, 86.0, "好的，那先这样"),
    ],
    90.0,
)
#: the agent says nothing in the last 30 s (the customer talks)
SILENT = _call(
    "win-silent",
    [
        (A, 1.0, 5.0, "您好，华夏客服，我是工号1023，请问有什么可以帮您？"),
        (C, 6.0, 10.0, "我想查一下话费"),
        (A, 11.0, 18.0, "好的，感谢您的来电，再见"),
        (C, 70.0, 80.0, "喂？喂？还在吗"),
    ],
    90.0,
)
#: said in the window: passes
GOOD = _call(
    "win-good",
    [
        (A, 1.0, 5.0, "您好，华夏客服，我是工号1023，请问有什么可以帮您？"),
        (C, 6.0, 10.0, "我想查一下话费"),
        (A, 70.0, 76.0, "感谢您的来电，祝您生活愉快，再见"),
    ],
    80.0,
)


def _finding(card, rule_id):  # type: ignore[no-untyped-def]
    found = [f for f in card.findings if f.rule_id == rule_id]
    return found[0] if found else None


def test_last_seconds_finding_shows_the_turns_in_the_window(tmp_path: Path) -> None:
    pack = load_pack(_pack(tmp_path))
    card = score_transcript(pack, LATE)
    f = _finding(card, "CLOSE-LAST30")
    assert f is not None
    got = [(e.utterance_index, e.role, e.start, e.end, e.text) for e in f.evidence]
    # the agent's turns ending after 60 s, in order; not the farewell at 20 s, not the
    # customer's turns, not one span over the whole call
    assert got == [
        (6, A, 58.0, 62.0, "您看这样处理可以吗？"),
        (8, A, 67.0, 75.0, "已经为您登记了"),
        (10, A, 79.0, 86.0, "好的，那先这样"),
    ]
    # the default pack's last-turns rules are windows too: their evidence is those turns
    confirm = _finding(score_transcript(pack, SILENT), "CONFIRM-SAT")
    assert confirm is not None and confirm.evidence
    assert all(e.utterance_index is not None and e.role is A for e in confirm.evidence)

    f = _finding(score_transcript(pack, SILENT), "CLOSE-LAST30")
    assert f is not None  # no agent turn in the window: the window's span, no turn
    assert [(e.start, e.end, e.utterance_index, e.text) for e in f.evidence] == [
        (60.0, 90.0, None, "")
    ]
    assert _finding(score_transcript(pack, GOOD), "CLOSE-LAST30") is None


def test_report_shows_the_window_turns(tmp_path: Path) -> None:
    store = tmp_path / "qa.sqlite"
    fill_store(store, [LATE, SILENT, GOOD])
    out = tmp_path / "out"
    summary = rescore(
        RescoreOptions(
            store=store,
            rules=_pack(tmp_path),
            baseline=default_pack_path(),
            out=out,
            progress=False,
            xlsx=False,
        )  # fmt: skip
    )
    assert not summary.errors and not (out / "results.xlsx").exists()
    diff = [json.loads(x) for x in (out / "diff.jsonl").read_text("utf-8").splitlines()]
    rule = next(x for x in diff if x.get("rule_id") == "CLOSE-LAST30")
    assert rule["newly_flagged"] == ["win-late", "win-silent"]
    assert rule["window"] == "the agent's last 30 s of the call"

    html = (out / "report.html").read_text("utf-8")
    i = html.index('id="call-win-late"')
    section = html[i : html.index("</section>", i)]
    j = section.index("<b>CLOSE-LAST30</b>")
    k = section.find('<div class="ev', j)
    ev = section[j : k if k > 0 else None]  # this rule's evidence block
    assert "window: the agent&#x27;s last 30 s of the call" in ev
    turns = re.findall(
        r'<div class="turn"><span class="role">(\w+)</span> <span class="t">([\d.]+)–([\d.]+) s'
        r"</span> ([^<]*)</div>",
        ev,
    )
    assert turns == [
        ("agent", "58.0", "62.0", "您看这样处理可以吗？"),
        ("agent", "67.0", "75.0", "已经为您登记了"),
        ("agent", "79.0", "86.0", "好的，那先这样"),
    ]
    assert "感谢您的来电，祝您生活愉快" not in ev

    i = html.index('id="call-win-silent"')
    section = html[i : html.index("</section>", i)]
    assert "60.0–90.0 s</span> (no turn in this span)" in section
