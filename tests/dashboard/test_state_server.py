"""DashboardState (live and final score, order, duplicates, redaction), the HTTP API with its token
check, the SSE stream, and the Kafka feed over a stand-in consumer (consumer settings, bad
records); tests/integration/test_dashboard_from_kafka.py reads a real broker."""

from __future__ import annotations

import dataclasses
import http.client
import json
import random
import threading
import time
from collections import namedtuple
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from dashboard_helpers import PASSWORD, TOKEN, VIEWER_TOKEN, Dashboard
from generated_calls import call_events, generated_call
from typer.testing import CliRunner

from qa_pipeline.dashboard import DashboardError, DashboardSink, DashboardState, start_dashboard
from qa_pipeline.dashboard.kafka_feed import KafkaFeed, topics_of
from qa_pipeline.dashboard.server import Access
from qa_pipeline.messages import replace
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.sinks.base import EventKind, FanOut, events_for_call
from qa_pipeline.sinks.kafka import KafkaTopics

CID = "call-sw-9"


def test_provisional_deduction_then_final() -> None:
    state = DashboardState()
    events = call_events("stonewalling", CID)
    seen = []
    for e in events:
        state.apply(e)
        call = state.snapshot()["calls"][0]
        seen.append((e.kind, call["provisional_deduction"], call["score"], call["final"]))
        if e.kind is EventKind.ALERT:
            assert call["status"] == "live" and call["failed"] is None and call["grade"] is None
    first_alert = next(s for s in seen if s[0] is EventKind.ALERT)
    assert first_alert[1:] == (20.0, None, False)  # BAN-POLICY's 20 points, provisionally
    # the last event before the scorecard: every deduction so far, still no score
    before_card = next(i for i, s in enumerate(seen) if s[0] is EventKind.SCORECARD) - 1
    assert seen[before_card][1:] == (41.0, None, False)
    final = state.snapshot()["calls"][0]
    assert final["status"] == "ended" and final["final"] and final["score"] == 59.0
    assert final["grade"] == "不满意" and final["grade_en"] == "dissatisfied"
    assert final["agent_id"] == "A1045"  # from the transcript event
    assert final["provisional_deduction"] is None  # the scorecard's score stands
    st = state.stats()
    assert st["violations"]["hour"]["BAN-POLICY"] == 2
    assert st["agents"][0]["agent_id"] == "A1045" and st["agents"][0]["avg_score"] == 59.0
    detail = state.detail(CID)
    assert detail is not None
    assert [u["index"] for u in detail["utterances"]] == list(range(7))
    ban = [f for f in detail["findings"] if f["rule_id"] == "BAN-POLICY"]
    assert len(ban) == 2 and all(f["alert"] for f in ban)
    assert ban[0]["utterance_indexes"] == [2] and ban[0]["suggestion"]
    assert len(state.snapshot()["alerts"]) == 2


def test_out_of_order_and_duplicates_give_the_same_state() -> None:
    events = call_events("stonewalling", CID)
    a = DashboardState()
    a.apply_all(events)
    shuffled = events + events[::2]
    random.Random(7).shuffle(shuffled)
    b = DashboardState()
    b.apply_all(shuffled)
    assert b.events_duplicate == len(events[::2])

    def strip(d: dict[str, Any] | None) -> Any:
        assert d is not None
        d = json.loads(json.dumps(d))
        d["call"].pop("first_at"), d["call"].pop("last_at")
        for f in d["findings"]:
            f.pop("at")
        return d

    assert strip(a.detail(CID)) == strip(b.detail(CID))
    assert len(b.snapshot()["alerts"]) == 2


def test_grade_scale_and_eviction() -> None:
    state = DashboardState(max_calls=3)
    for i in range(5):
        state.apply_all(call_events("perfect", f"c{i}"))
    ids = [c["call_id"] for c in state.snapshot()["calls"]]
    assert sorted(ids) == ["c2", "c3", "c4"]
    assert state.grade_for(95, False) == "非常满意"
    assert state.grade_for(85, False) == "满意"
    assert state.grade_for(65, False) == "基本满意"
    assert state.grade_for(95, True) == "不满意"


def test_viewer_redaction() -> None:
    state = DashboardState()
    state.apply_all(call_events("stonewalling", CID))
    snap = state.redact(state.snapshot(), full=False)
    text = json.dumps(snap, ensure_ascii=False)
    assert "超过七天就不能退了" not in text and "可是我只晚了一天啊" not in text
    for f in snap["details"][CID]["findings"]:
        for e in f["evidence"]:
            assert "text" not in e and "matched" not in e
    assert all("text" not in u for u in snap["details"][CID]["utterances"])
    full = json.dumps(state.snapshot(), ensure_ascii=False)
    assert "超过七天就不能退了" in full


def test_uncertain_verdicts_flag_the_call_for_review() -> None:
    """A greeting heard with low confidence: no finding, the call flagged for review, the
    uncertain verdict beside its utterance, its detail hidden from viewers."""
    transcript, _ = generated_call("perfect", "c-unsure")
    first = transcript.utterances[0]
    utts = (replace(first, text="农好，华夏客服，我是小王，很高兴为您服务", confidence=0.25),)
    transcript = dataclasses.replace(transcript, utterances=utts + transcript.utterances[1:])
    card = score_transcript(load_pack(), transcript)
    state = DashboardState()
    state.apply_all(events_for_call(transcript, card.findings, card))
    call = state.snapshot()["calls"][0]
    assert call["review"] is True and call["uncertain"] >= 1 and not call["failed"]
    assert call["score"] == card.score
    detail = state.detail("c-unsure")
    assert detail is not None
    greet = next(v for v in detail["uncertain"] if v["rule_id"] == "OPEN-GREET")
    assert greet["utterance_indexes"] == [0] and greet["pending_deduction"] == 8
    assert "0.25" in greet["detail"]
    assert all(f["rule_id"] != "OPEN-GREET" for f in detail["findings"])
    assert state.stats()["agents"][0]["review"] == 1
    viewer = state.redact(state.snapshot(), full=False)
    text = json.dumps(viewer["details"]["c-unsure"]["uncertain"], ensure_ascii=False)
    assert "农好" not in text and "OPEN-GREET" in text


def test_access_roles() -> None:
    acc = Access("full-token-123", "viewer-token-123")
    full = acc.principal("full-token-123")
    viewer = acc.principal("viewer-token-123")
    assert full is not None and full.role.value == "admin" and full.kind == "key" and full.text
    assert viewer is not None and viewer.role.value == "viewer" and not viewer.text
    assert acc.principal("full-token-12") is None and acc.principal("") is None
    assert acc.principal(None) is None and acc.principal("全-token") is None
    only_viewer = Access(None, "viewer-token-123")
    assert only_viewer.principal("viewer-token-123") is not None
    assert only_viewer.principal("") is None and only_viewer.principal("x" * 32) is None


def test_no_token_no_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QA_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("QA_DASHBOARD_USERS", raising=False)
    with pytest.raises(DashboardError, match="QA_DASHBOARD_TOKEN"):
        start_dashboard(DashboardState(), "127.0.0.1", 0, None)
    with pytest.raises(DashboardError, match="at least"):
        start_dashboard(DashboardState(), "127.0.0.1", 0, "short")
    monkeypatch.setenv("QA_DASHBOARD_TOKEN", "from-the-environment")
    server = start_dashboard(DashboardState(), "127.0.0.1", 0)
    try:
        d = Dashboard(server, DashboardState())
        assert d.get("/api/state", "from-the-environment")[0] == 200
    finally:
        server.stop()


def test_api_needs_a_token(dashboard: Dashboard) -> None:
    dashboard.sink.emit(call_events("stonewalling", CID)[0])
    for path in ("/api/state", f"/api/calls/{CID}", "/api/events"):
        status, body = dashboard.get(path)
        assert status == 401 and CID not in json.dumps(body)
        assert dashboard.get(path, "wrong-token-xyz")[0] == 401
        # a key in the URL is not looked at: the right one is refused there too
        assert dashboard.get(f"{path}?token={TOKEN}")[0] == 401
        assert dashboard.get(f"{path}?api_key={TOKEN}")[0] == 401
    status, body = dashboard.get("/api/state", TOKEN)
    assert status == 200 and body["calls"][0]["call_id"] == CID and body["role"] == "admin"
    status, body = dashboard.get("/api/state", **{"X-API-Key": VIEWER_TOKEN})
    assert status == 200 and body["role"] == "viewer"
    assert "text" not in body["details"][CID]["utterances"][0]
    assert dashboard.get("/api/calls/nope", TOKEN)[0] == 404
    assert dashboard.get("/healthz")[0] == 200
    status, page = dashboard.get("/")
    assert status == 200 and CID not in page and "通话质检实时看板" in page


def _conn(dashboard: Dashboard) -> http.client.HTTPConnection:
    u = urlsplit(dashboard.url)
    return http.client.HTTPConnection(u.hostname or "", u.port, timeout=5)


def test_a_login_form_posted_from_another_site_is_refused(dashboard: Dashboard) -> None:
    """Login CSRF: another site's page must not log a visitor's browser in (as anyone); the
    dashboard's own page, and a client that is not a browser, still may."""
    u = urlsplit(dashboard.url)
    own = f"{u.scheme}://{u.netloc}"
    cases = [
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": own.replace(str(u.port), str((u.port or 0) + 1))}, 403),
        ({"Sec-Fetch-Site": "cross-site", "Origin": own}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": own, "Sec-Fetch-Site": "same-origin"}, 303),
        # the page's own form: no-referrer makes the browser send Origin: null
        ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, 303),
        ({}, 303),  # curl, a script
    ]
    for extra, want in cases:
        c = _conn(dashboard)
        c.request(
            "POST",
            "/login",
            body=f"name=qa&password={quote(PASSWORD)}",
            headers={"Content-Type": "application/x-www-form-urlencoded", **extra},
        )
        r = c.getresponse()
        r.read()
        assert r.status == want, (extra, r.status)
        assert (r.getheader("Set-Cookie") is not None) == (want == 303), extra


def test_login_sets_a_session_cookie(dashboard: Dashboard) -> None:
    for name, password in (("qa", "wrong password!"), ("nobody", PASSWORD), ("qa", "")):
        assert dashboard.login(name, password) == (303, "")
    # the machines' key is not a password: it logs nobody in
    c = _conn(dashboard)
    c.request(
        "POST",
        "/login",
        body=f"token={TOKEN}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    r = c.getresponse()
    r.read()
    assert r.status == 303 and r.getheader("Location") == "/?login=failed"
    assert r.getheader("Set-Cookie") is None
    status, cookie = dashboard.login("qa")
    assert status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP, secure_cookie not set
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) >= 40 and TOKEN not in cookie and "qa" not in value
    assert "correct" not in cookie and "horse" not in cookie
    status, body = dashboard.get("/api/state", cookie=cookie.split(";")[0])
    assert status == 200 and body["role"] == "qa"
    assert dashboard.get("/api/me", cookie=cookie.split(";")[0])[1]["name"] == "qa"
    # logout ends the session on the server: the old cookie opens nothing any more
    dashboard.get("/logout", cookie=cookie.split(";")[0])
    assert dashboard.get("/api/state", cookie=cookie.split(";")[0])[0] == 401
    # a made-up session id is refused
    assert dashboard.get("/api/state", cookie="qa_dashboard_session=" + "A" * 43)[0] == 401


def test_sse_pushes_within_a_second(dashboard: Dashboard) -> None:
    events = call_events("stonewalling", CID)
    dashboard.sink.emit(events[0])
    c = _conn(dashboard)
    c.request("GET", "/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream")
    got: list[tuple[str, dict[str, Any], float]] = []

    def read() -> None:
        name = ""
        while True:
            line = r.fp.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                got.append((name, json.loads(line[6:]), time.monotonic()))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    deadline = time.monotonic() + 3
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got[0][0] == "snapshot" and got[0][1]["calls"][0]["call_id"] == CID
    alert = next(e for e in events if e.kind is EventKind.ALERT)
    emitted = {}
    for e in events[1:]:
        emitted[e.event_id] = time.monotonic()
        dashboard.sink.emit(e)
        if e is alert:
            break
    deadline = time.monotonic() + 2
    while not any("alert" in m for _, m, _ in got) and time.monotonic() < deadline:
        time.sleep(0.01)
    pushed = next((m, at) for _, m, at in got if "alert" in m)
    assert pushed[0]["alert"]["rule_id"] == "BAN-POLICY"
    assert pushed[1] - emitted[alert.event_id] < 1.0
    assert dashboard.state.subscriber_count == 1
    c.close()


def test_sink_in_fanout() -> None:
    state = DashboardState()
    fan = FanOut([("dashboard", DashboardSink(state))])
    fan.emit_all(call_events("perfect", "c-ok"))
    fan.flush(1)
    fan.close()
    call = state.snapshot()["calls"][0]
    assert call["score"] == 98.0 and call["grade"] == "非常满意" and fan.errors["dashboard"] == 0


# -- Kafka feed ----------------------------------------------------------------------------------

Record = namedtuple("Record", "topic value")


class FakeConsumer:
    """The part of kafka.KafkaConsumer the feed uses, over in-memory topics."""

    def __init__(self, topics: dict[str, list[bytes]], **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.topics = topics
        self.subscribed: list[str] = []
        self.closed = False

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = list(topics)

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[str, list[Record]]:
        out = {}
        for t in self.subscribed:
            recs, self.topics[t] = self.topics.get(t, []), []
            if recs:
                out[t] = [Record(t, v) for v in recs]
        if not out:
            time.sleep(timeout_ms / 1000)
        return out

    def close(self) -> None:
        self.closed = True


def test_kafka_feed_builds_the_same_state() -> None:
    t = KafkaTopics()
    events = call_events("stonewalling", CID)
    by_topic: dict[str, list[bytes]] = {}
    for e in events:
        by_topic.setdefault(t.for_kind(e.kind) or "", []).append(e.to_json())
    by_topic[t.findings or ""].append(b"not json")  # counted, skipped
    by_topic[t.alerts or ""] += [e.to_json() for e in events if e.kind is EventKind.ALERT]
    made: list[FakeConsumer] = []

    def factory(**kw: Any) -> FakeConsumer:
        made.append(FakeConsumer(by_topic, **kw))
        return made[-1]

    state = DashboardState()
    feed = KafkaFeed(
        state,
        topics_of(t),
        {"bootstrap_servers": ["k:9092"], "security_protocol": "PLAINTEXT"},
        from_beginning=True,
        consumer_factory=factory,
        poll_timeout_ms=20,
    ).start()
    deadline = time.monotonic() + 3
    while state.events_applied < len(events) and time.monotonic() < deadline:
        time.sleep(0.01)
    feed.stop()
    assert made[0].kwargs["auto_offset_reset"] == "earliest"
    assert made[0].kwargs["group_id"] is None and made[0].closed
    assert set(made[0].subscribed) == set(topics_of(t))
    assert feed.bad == 1 and state.events_duplicate == 2
    direct = DashboardState()
    direct.apply_all(events)
    a, b = state.snapshot()["calls"][0], direct.snapshot()["calls"][0]
    for k in ("score", "grade", "agent_id", "findings", "utterances", "critical", "status"):
        assert a[k] == b[k], k


def test_standalone_command_needs_servers_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from qa_pipeline.dashboard.cli import dashboard_command

    monkeypatch.delenv("QA_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("QA_DASHBOARD_USERS", raising=False)
    app = typer.Typer()
    app.command()(dashboard_command)
    r = CliRunner().invoke(app, ["--port", "0"])
    assert r.exit_code != 0 and "--kafka" in r.output
    r = CliRunner().invoke(app, ["--kafka", "127.0.0.1:1", "--port", "0"])
    assert r.exit_code == 2 and "QA_DASHBOARD_TOKEN" in r.output
    assert "QA_DASHBOARD_USERS" in r.output


def test_incomplete_scorecards_stay_out_of_the_agent_average() -> None:
    from qa_pipeline.messages import CallInfo, Scorecard
    from qa_pipeline.sinks.base import EventFactory

    state = DashboardState()
    cards = [
        Scorecard("full-1", 90.0, "满意", False),
        Scorecard("full-2", 70.0, "一般", False),
        # scored on part of the call (utterances shed at the ASR): not the agent's average
        Scorecard("cut-1", 20.0, "不满意", True, complete=False, incomplete_reasons=("asr_x",)),
    ]
    for card in cards:
        state.call_started(CallInfo(card.call_id, agent_id="A7"))
        state.apply(EventFactory(card.call_id).scorecard(card))
    (agent,) = state.stats()["agents"]
    assert agent["avg_score"] == 80.0
    assert agent["calls"] == 3 and agent["ended"] == 3 and agent["incomplete"] == 1
    assert agent["failed"] == 1  # it did fail, on what was heard
    cut = next(c for c in state.snapshot()["calls"] if c["call_id"] == "cut-1")
    assert cut["complete"] is False and cut["incomplete_reasons"] == ["asr_x"]


def test_violation_windows_with_a_clock() -> None:
    """Findings count in the hour and day windows (to within a 10 s bucket); what leaves the
    day is forgotten, so many calls over days keep a bounded store."""
    now = [1_000_000.0]
    state = DashboardState(clock=lambda: now[0])
    events = [dataclasses.replace(e, produced_at="") for e in call_events("stonewalling", CID)]
    state.apply_all(events)  # no produced_at: counted at the clock's time
    assert state.stats()["violations"]["hour"]["BAN-POLICY"] == 2
    now[0] += 3600 + 20
    st = state.stats()["violations"]
    assert "BAN-POLICY" not in st["hour"] and st["day"]["BAN-POLICY"] == 2
    assert st["severity"]["BAN-POLICY"] == "critical"
    now[0] += 86400
    assert state.stats()["violations"]["day"] == {}
    for i in range(300):  # 300 calls, one every 10 minutes: ~2 days
        now[0] += 600
        state.apply_all(
            dataclasses.replace(e, call_id=f"c{i}", event_id=f"c{i}-{e.seq}") for e in events
        )
        state.stats()
    assert len(state._violations) <= 86400 // 600 + 1


def test_subscriber_continues_from_an_earlier_snapshot() -> None:
    """A subscriber that already has the snapshot of version v gets only the changes since
    (no snapshot of its own) while they are all in the history; else a fresh snapshot."""
    state = DashboardState(history=8)
    events = call_events("stonewalling", CID)
    first, v0 = state.subscribe(full=True)
    assert v0 is not None and first.version == 0
    state.apply_all(events[:3])
    woken: list[int] = []
    second, snap = state.subscribe(full=True, notify=lambda: woken.append(1), since=0)
    assert snap is None
    got = [second.queue.get_nowait() for _ in range(3)]
    assert [m["utterance"]["index"] for m in got] == [0, 1, 2]
    state.apply(events[3])
    assert second.queue.get_nowait()["type"] == events[3].kind.value and woken == [1]
    state.apply_all(events[4:])  # more than the history holds
    third, snap = state.subscribe(full=True, since=3)
    assert snap is not None and third.queue.empty() and third.version == len(events)
    state.unsubscribe(first)
    state.unsubscribe(second)
    state.unsubscribe(third)
    state.apply(events[0])  # a duplicate: no change, no version
    assert state.version == len(events)
