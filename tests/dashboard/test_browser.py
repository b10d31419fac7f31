"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

A generated call (a sample-call scenario scored by the real rule engine) is pushed into the
dashboard's sink in live order with the pauses of a live call; the page must show the call
as 进行中 with its findings so far and their provisional deduction (no score, no grade until
it ends), the transcript agent/customer side by side with the findings at their utterance
and the suggested phrasing, a missing phrase as one card, the alert within a second of its
emit, the violations chart and the per-agent summary. A supervisor acknowledges an alert and
another page shows who did, and when. Without a token the page shows a login form and no data.
Screenshots are kept in ``tests/artifacts/``: ``dashboard-live.png`` (a call in progress),
``dashboard.png`` (ended), ``dashboard-ack.png`` (an acknowledged alert).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from dashboard_helpers import ARTIFACTS, Dashboard, browser_login
from generated_calls import call_events, generated_call

from qa_pipeline.messages import replace
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.sinks.base import EventKind, events_for_call

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")


def login(browser: Any, dashboard: Dashboard, name: str) -> Any:
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="zh-CN")
    page = ctx.new_page()
    browser_login(page, dashboard.url, name)
    page.wait_for_selector("#app:not([hidden])", timeout=5000)
    page.wait_for_selector("#conn.on", timeout=5000)
    return page


def test_live_call_in_browser(browser: Any, dashboard: Dashboard) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = login(browser, dashboard, "qa")
    # A finished earlier call of another agent, then the live one, event by event.
    for e in call_events("perfect", "call-perfect-001"):
        dashboard.sink.emit(e)
    page.wait_for_selector('tr.call[data-call-id="call-perfect-001"]', timeout=3000)

    cid = "call-stonewall-002"
    events = call_events("stonewalling", cid)
    alert_latency: list[float] = []
    saw_running = False
    for e in events:
        dashboard.sink.emit(e)
        t0 = time.monotonic()
        if e.kind is EventKind.UTTERANCE and e.payload["index"] == 0:
            row = page.wait_for_selector(f'tr.call[data-call-id="{cid}"]', timeout=2000)
            assert row is not None and "进行中" in row.inner_text()
            # nothing that reads as a score yet (it used to show 100 / 非常满意)
            assert "100" not in row.inner_text() and "满意" not in row.inner_text()
            # the live call is selected: its first utterance shows in the agent column
            page.wait_for_selector('#transcript .utt.agent[data-utt-index="0"]', timeout=2000)
        elif e.kind is EventKind.ALERT and not alert_latency:
            page.wait_for_selector(
                f'#alerts .alert-item[data-call-id="{cid}"][data-rule="BAN-POLICY"]', timeout=1000
            )
            alert_latency.append(time.monotonic() - t0)
            # finding highlighted at its utterance (index 2), with the matched phrase and the
            # rule's suggested phrasing; BAN-POLICY's 20 points shown as a provisional
            # deduction, not as a score of 80, and no grade while the call goes on.
            utt = page.wait_for_selector('#transcript .utt.hit.critical[data-utt-index="2"]')
            assert utt is not None
            assert utt.query_selector(".finding[data-rule=BAN-POLICY] .sugg-text") is not None
            marks = [m.inner_text() for m in utt.query_selector_all("mark")]
            assert e.payload["evidence"][0]["matched"] in marks, marks
            row_text = page.inner_text(f'tr.call[data-call-id="{cid}"]')
            score = page.inner_text(f'tr.call[data-call-id="{cid}"] td[data-role=score]')
            assert score == "暂扣 −20", score
            assert "80" not in row_text and "满意" not in row_text, row_text
            assert "违规 1" in row_text and "严重 1" in row_text, row_text
            head = page.inner_text("#callhead")
            assert "进行中" in head and "已发现违规: 1" in head and "未定" in head, head
            assert "得分" not in head and "等级" not in head, head
            page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)
            saw_running = True
        time.sleep(0.05)
    assert saw_running
    assert alert_latency and alert_latency[0] < 1.0, alert_latency

    # the scorecard: final score and grade; the customer side; chart bars; agents
    page.wait_for_function(
        f"""() => {{ const r = document.querySelector('tr.call[data-call-id="{cid}"]');
        return r && r.innerText.includes('59') && r.innerText.includes('不满意'); }}""",
        timeout=2000,
    )
    assert page.query_selector('#transcript .utt.customer[data-utt-index="1"]') is not None
    assert "最终得分: 59" in page.inner_text("#callhead")
    # the customer's name never asked for: one card, the agent turns it looked in inside it
    cards = page.query_selector_all('#transcript .finding[data-rule="OPEN-NAME"]')
    assert len(cards) == 1
    turns = [ev.get_attribute("data-utt-index") for ev in cards[0].query_selector_all(".ev")]
    assert turns == ["0", "2", "4"], turns
    assert page.query_selector('#transcript .utt .finding[data-rule="OPEN-NAME"]') is None
    sugg = page.inner_text("#transcript .finding[data-rule=BAN-POLICY] .sugg-text")
    assert sugg.strip()
    bar = page.wait_for_selector('#chart rect.bar[data-rule="BAN-POLICY"]', timeout=2000)
    assert bar is not None and bar.get_attribute("data-count") == "2"
    page.wait_for_selector('#agents tr[data-agent="A1045"]', timeout=2000)
    page.wait_for_selector('#agents tr[data-agent="A1024"]', timeout=2000)
    assert "实时通话" in page.inner_text("#calls-card h2")

    cards[0].scroll_into_view_if_needed()  # the one card in the screenshot
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # English labels on request
    page.click("#lang")
    page.wait_for_function(
        "() => document.querySelector('#calls-card h2').innerText.includes('Live calls')"
    )
    assert "dissatisfied" in page.inner_text(f'tr.call[data-call-id="{cid}"]')
    page.context.close()


def test_no_token_no_data(browser: Any, dashboard: Dashboard) -> None:
    for e in call_events("stonewalling", "call-secret-003"):
        dashboard.sink.emit(e)
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(dashboard.url)
    page.wait_for_selector("#login:not([hidden])", timeout=5000)
    assert page.is_hidden("#app")
    assert "call-secret-003" not in page.content()
    # the page's API and stream refuse the browser without a token
    status = page.evaluate("() => fetch('/api/state').then(r => r.status)")
    assert status == 401
    status = page.evaluate("() => fetch('/api/events').then(r => r.status)")
    assert status == 401
    # a wrong token is refused too
    page.fill("#name", "qa")
    page.fill("#password", "not-the-password")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-err:not([hidden])", timeout=5000)
    assert page.is_hidden("#app")
    ctx.close()


def test_viewer_sees_no_transcript_text(browser: Any, dashboard: Dashboard) -> None:
    cid = "call-viewer-004"
    for e in call_events("stonewalling", cid):
        dashboard.sink.emit(e)
    page = login(browser, dashboard, "viewer")
    page.wait_for_selector('#transcript .utt.hit[data-utt-index="2"]', timeout=3000)
    text = page.inner_text("#transcript")
    # no utterance text (the rule descriptions may name banned phrases; that is not the call)
    assert "超过七天就不能退了" not in text and "可是我只晚了一天啊" not in text
    assert "：“我们也没有办法”" not in text  # the finding's detail quoting the call is gone
    assert page.query_selector("#transcript .utt .tx.hidden") is not None
    # scores, findings and suggestions are still there
    assert page.query_selector("#transcript .finding[data-rule=BAN-POLICY] .sugg-text")
    page.context.close()


def test_uncertain_verdict_in_browser(browser: Any, dashboard: Dashboard) -> None:
    """A greeting heard with low confidence: the call carries a review badge, and the
    uncertain verdict (no finding) shows at its utterance with its pending deduction."""
    cid = "call-unsure-005"
    transcript, _ = generated_call("perfect", cid)
    first = transcript.utterances[0]
    utts = (replace(first, text="农好，华夏客服，我是小王，很高兴为您服务", confidence=0.25),)
    transcript = dataclasses.replace(transcript, utterances=utts + transcript.utterances[1:])
    card = score_transcript(load_pack(), transcript)
    page = login(browser, dashboard, "qa")
    for e in events_for_call(transcript, card.findings, card):
        dashboard.sink.emit(e)
    row = page.wait_for_selector(f'tr.call[data-call-id="{cid}"] .badge.review', timeout=3000)
    assert row is not None and "待复核" in row.inner_text()
    page.click(f'tr.call[data-call-id="{cid}"]')
    box = page.wait_for_selector(
        '#transcript .utt[data-utt-index="0"] .finding.uncertain[data-rule="OPEN-GREET"]',
        timeout=3000,
    )
    assert box is not None
    assert "0.25" in box.inner_text() and "−8" in box.inner_text()
    assert (
        page.query_selector('#transcript .finding:not(.uncertain)[data-rule="OPEN-GREET"]') is None
    )
    page.context.close()


def test_supervisor_sees_its_team_only_in_browser(browser: Any, dashboard: Dashboard) -> None:
    """Two teams: the north supervisor's page shows the north call, live, and nothing of the
    east one (neither in the snapshot nor pushed later), and who is logged in."""

    def start(cid: str, agent: str) -> None:
        transcript, _ = generated_call("stonewalling", cid, agent_id=agent)
        dashboard.sink.call_started(transcript.call)
        for e in call_events("stonewalling", cid, agent_id=agent):
            dashboard.sink.emit(e)

    start("call-east-1", "B1")
    start("call-north-1", "A1")
    page = login(browser, dashboard, "sup-north")
    assert "sup-north" in page.inner_text("#me") and "班组长" in page.inner_text("#me")
    page.wait_for_selector('tr.call[data-call-id="call-north-1"]', timeout=3000)
    start("call-east-2", "B1")
    start("call-north-2", "A1")
    page.wait_for_selector('#alerts .alert-item[data-call-id="call-north-2"]', timeout=3000)
    html = page.content()
    assert "call-east" not in html and "B1" not in html
    assert page.query_selector('#agents tr[data-agent="A1"]') is not None
    page.context.close()


def test_alert_acknowledged_in_browser(browser: Any, dashboard: Dashboard) -> None:
    """The north supervisor acknowledges an alert with its button; the agent's own page (a
    second browser) shows it acknowledged by the supervisor, and has no button of its own."""
    cid = "call-north-ack"
    transcript, _ = generated_call("stonewalling", cid, agent_id="A1")
    dashboard.sink.call_started(transcript.call)
    for e in call_events("stonewalling", cid, agent_id="A1"):
        dashboard.sink.emit(e)
    sup = login(browser, dashboard, "sup-north")
    agent = login(browser, dashboard, "agent-a")
    item = f'#alerts .alert-item[data-call-id="{cid}"]'
    agent.wait_for_selector(item, timeout=3000)
    assert agent.query_selector(f"{item} .ack-btn") is None  # an agent may not
    sup.click(f"{item} .ack-btn >> nth=0")
    acked = sup.wait_for_selector(f"{item}.acked .ack", timeout=3000)
    assert acked is not None and "已确认：sup-north" in acked.inner_text()
    # pushed to the other page: who, and when (the time the server recorded)
    seen = agent.wait_for_selector(f"{item}.acked .ack", timeout=3000)
    assert seen is not None and "已确认：sup-north" in seen.inner_text()
    (alert,) = [a for a in dashboard.state.snapshot()["alerts"] if a["ack"]]
    when = agent.evaluate(
        "(at) => new Date(at * 1000).toLocaleTimeString('zh-CN', {hour12: false})",
        alert["ack"]["at"],
    )
    assert when in seen.inner_text(), (when, seen.inner_text())
    # the call's other alert is still open, its button there for the supervisor
    assert len(sup.query_selector_all(f"{item}:not(.acked) .ack-btn")) == 1
    sup.screenshot(path=str(ARTIFACTS / "dashboard-ack.png"), full_page=True)
    sup.context.close()
    agent.context.close()
