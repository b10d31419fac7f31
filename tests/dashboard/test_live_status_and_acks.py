"""A call in progress (no score until its scorecard), each finding shown once, and alert
acknowledgements: in the state, in their file across a restart, and over HTTP (who may, from
where, what every other page is pushed, what the audit log says)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from dashboard_helpers import TOKEN, VIEWER_TOKEN, Dashboard, write_users
from generated_calls import call_events, generated_call

from qa_pipeline.dashboard import DashboardState, start_dashboard
from qa_pipeline.dashboard.acks import DEFAULT_ACKS_LOG, AckError, FileAckStore, read_acks
from qa_pipeline.dashboard.audit import read_audit
from qa_pipeline.messages import Scorecard
from qa_pipeline.sinks.base import Event, EventFactory, EventKind

CID = "call-north-7"


def north_call(
    dashboard: Dashboard | None = None, cid: str = CID, events: list[Event] | None = None
) -> list[Event]:
    """The stonewalling call of agent A1 (team north through the agent user), started
    (``events``: these again; each generation has event ids of its own)."""
    events = events or call_events("stonewalling", cid, agent_id="A1")
    if dashboard is not None:
        transcript, _ = generated_call("stonewalling", cid, agent_id="A1")
        dashboard.sink.call_started(transcript.call)
        for e in events:
            dashboard.sink.emit(e)
    return events


def first_alert(events: list[Event]) -> Event:
    return next(e for e in events if e.kind is EventKind.ALERT)


# -- live and ended ------------------------------------------------------------------------------


def test_a_live_call_has_no_score_or_grade_until_its_scorecard() -> None:
    state = DashboardState()
    sub, _ = state.subscribe(full=True)
    events = call_events("stonewalling", CID)
    card_at = next(i for i, e in enumerate(events) if e.kind is EventKind.SCORECARD)
    state.apply_all(events[:card_at])
    call = state.snapshot()["calls"][0]
    assert call["status"] == "live" and call["final"] is False
    assert call["score"] is None and call["grade"] is None and call["grade_en"] is None
    assert call["failed"] is None  # failing is the scorecard's verdict
    assert call["findings"] == 9 and call["critical"] == 2  # findings so far, counted
    assert call["provisional_deduction"] == 41.0
    detail = state.detail(CID)
    assert detail is not None and detail["call"]["status"] == "live"
    pushed = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert pushed and all(m["call"]["status"] == "live" for m in pushed)
    assert all(m["call"]["score"] is None for m in pushed)
    state.apply_all(events[card_at:])
    call = state.snapshot()["calls"][0]
    assert call["status"] == "ended" and call["final"] is True
    assert (call["score"], call["grade"], call["failed"]) == (59.0, "不满意", True)
    assert call["provisional_deduction"] is None
    last = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())][-1]
    assert last["call"]["status"] == "ended" and last["call"]["score"] == 59.0


def test_a_call_scored_on_part_of_it_is_incomplete() -> None:
    state = DashboardState()
    card = Scorecard("cut-1", 20.0, "不满意", True, complete=False, incomplete_reasons=("asr",))
    state.apply(EventFactory("cut-1").scorecard(card))
    call = state.snapshot()["calls"][0]
    assert call["status"] == "incomplete" and call["final"] and call["score"] == 20.0


def test_each_finding_is_placed_once() -> None:
    """A missing phrase's evidence is every agent turn searched: the finding is one card (its
    turns inside), not one under each turn; a phrase said is shown at its utterance."""
    state = DashboardState()
    state.apply_all(call_events("stonewalling", CID))
    detail = state.detail(CID)
    assert detail is not None
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for f in detail["findings"]:
        by_rule.setdefault(f["rule_id"], []).append(f)
    (name,) = by_rule["OPEN-NAME"]  # the greeting never asked the customer's name
    assert name["placement"] == "call" and name["utterance_indexes"] == [0, 2, 4]
    assert [e["utterance_index"] for e in name["evidence"]] == [0, 2, 4]
    assert all(f["placement"] == "utterance" for f in by_rule["BAN-POLICY"])
    assert [f["utterance_indexes"] for f in by_rule["BAN-POLICY"]] == [[2], [4]]
    (solution,) = by_rule["SOLUTION"]  # the whole call: no utterance
    assert solution["placement"] == "call" and solution["utterance_indexes"] == []


# -- acknowledgements in the state and the file ------------------------------------------------


def test_state_records_and_pushes_an_acknowledgement() -> None:
    state = DashboardState()
    events = call_events("stonewalling", CID)
    state.apply_all(events)
    alert = first_alert(events)
    sub, _ = state.subscribe(full=True)
    assert state.alert(alert.event_id) is not None
    assert state.alert(alert.event_id)["ack"] is None  # type: ignore[index]
    got = state.acknowledge(alert.event_id, "wang", 1_800_000_000.5)
    assert got is not None and got["ack"] == {"user": "wang", "at": 1_800_000_000.5}
    msg = sub.queue.get_nowait()
    assert msg["type"] == "ack" and msg["alert"]["event_id"] == alert.event_id
    assert msg["alert"]["ack"]["user"] == "wang" and msg["call"]["call_id"] == CID
    # the first stands: a second acknowledgement changes nothing and pushes nothing
    again = state.acknowledge(alert.event_id, "li", 1_800_000_100.0)
    assert again is not None and again["ack"]["user"] == "wang" and sub.queue.empty()
    snap_alerts = {a["event_id"]: a for a in state.snapshot()["alerts"]}
    assert snap_alerts[alert.event_id]["ack"]["user"] == "wang"
    other = [a for a in snap_alerts.values() if a["event_id"] != alert.event_id]
    assert len(other) == 1 and other[0]["ack"] is None
    # an ack known before its alert arrives (loaded at start, the feed read again)
    fresh = DashboardState()
    assert fresh.acknowledge(alert.event_id, "wang", 1_800_000_000.5) is None
    fresh.apply_all(events)
    assert fresh.alert(alert.event_id)["ack"]["user"] == "wang"  # type: ignore[index]


def test_file_ack_store_keeps_the_first_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_ACKS_LOG
    store = FileAckStore(path)
    a = store.ack("c1:4", "wang", 100.0)
    assert store.ack("c1:4", "li", 200.0) == a  # the first stands, nothing appended
    store.ack("c2:9", "张三", 300.0)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2
    assert path.stat().st_mode & 0o777 == 0o600
    with path.open("a", encoding="utf-8") as f:
        f.write('{"event_id": "c3:1", "us')  # torn last line of a crash: skipped
    again = FileAckStore(path)
    assert again.acks() == read_acks(path)
    assert {k: (v.user, v.at) for k, v in again.acks().items()} == {
        "c1:4": ("wang", 100.0),
        "c2:9": ("张三", 300.0),
    }
    memory_only = FileAckStore(None)
    memory_only.ack("c1:4", "wang", 1.0)
    assert list(memory_only.acks()) == ["c1:4"]
    with pytest.raises(AckError, match="cannot write"):
        FileAckStore(tmp_path / "no-such-dir" / DEFAULT_ACKS_LOG)


def test_file_ack_store_is_bounded(tmp_path: Path) -> None:
    """The file keeps the first acknowledgement of each alert, none older than the
    retention, the newest ``max_acks``: compacted when opened and while it is written to,
    in the format ``read_acks`` (the code before) reads; what it left out is counted."""
    path = tmp_path / DEFAULT_ACKS_LOG
    now, day = 1_900_000_000.0, 86400.0
    grown = FileAckStore(path)  # a file grown as before: one line per acknowledgement
    for i in range(30):
        grown.ack(f"old-{i}:1", "wang", now - 800 * day + i)  # past 730 days
    for i in range(30):
        grown.ack(f"new-{i}:1", "li", now - 10 * day + i)
    with path.open("a", encoding="utf-8") as f:  # another process's second ack, a torn line
        f.write(json.dumps({"event_id": "new-29:1", "user": "zhao", "at": now}) + "\n")
        f.write('{"event_id": "c3:1", "us\n')
    assert len(path.read_text(encoding="utf-8").splitlines()) == 62

    store = FileAckStore(path, keep_days=730, max_acks=25, clock=lambda: now)
    kept = store.acks()
    assert list(kept) == [f"new-{i}:1" for i in range(5, 30)]  # the newest 25 of the young
    assert kept["new-29:1"].user == "li"  # the first stands
    assert store.dropped == {"expired": 30, "over_cap": 5, "repeated": 1, "unreadable": 1}
    assert read_acks(path) == kept  # the file holds them only, readable as before
    assert len(path.read_text(encoding="utf-8").splitlines()) == 25
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_ACKS_LOG]  # no temporary left

    for i in range(60):  # a long day: compacted again every 25 appended
        store.ack(f"run-{i}:1", "li", now + i)
        assert len(path.read_text(encoding="utf-8").splitlines()) < 2 * 25
    assert list(store.acks()) == [f"run-{i}:1" for i in range(35, 60)]
    on_disk = read_acks(path)
    assert set(store.acks()) <= set(on_disk) and "new-29:1" not in on_disk
    assert store.dropped["over_cap"] == 5 + 50
    # reopened without a retention: what the file holds, the cap still applies
    again = FileAckStore(path, max_acks=25)
    assert list(again.acks()) == [f"run-{i}:1" for i in range(35, 60)]

    memory_only = FileAckStore(None, max_acks=3)
    for i in range(5):
        memory_only.ack(f"m-{i}:1", "li", now + i)
    assert list(memory_only.acks()) == ["m-2:1", "m-3:1", "m-4:1"]
    assert memory_only.dropped["over_cap"] == 2
    with pytest.raises(ValueError, match="max_acks"):
        FileAckStore(None, max_acks=0)


# -- over HTTP ----------------------------------------------------------------------------------


def post_ack(
    dashboard: Dashboard,
    event_id: Any,
    *,
    cookie: str | None = None,
    token: str | None = None,
    ctype: str = "application/json",
    body: bytes | None = None,
    **headers: str,
) -> tuple[int, dict[str, Any]]:
    u = urlsplit(dashboard.url)
    c = http.client.HTTPConnection(u.hostname or "", u.port, timeout=5)
    h = {"Content-Type": ctype, **headers}
    if cookie:
        h["Cookie"] = cookie
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = body if body is not None else json.dumps({"event_id": event_id}).encode()
    c.request("POST", "/api/alerts/ack", body=data, headers=h)
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r.status, json.loads(raw) if raw else {}


def read_stream(dashboard: Dashboard, cookie: str) -> list[dict[str, Any]]:
    """Messages of a page's event stream, appended as they come (a daemon thread)."""
    u = urlsplit(dashboard.url)
    c = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
    c.request("GET", "/api/events", headers={"Cookie": cookie})
    r = c.getresponse()
    assert r.status == 200
    got: list[dict[str, Any]] = []

    def read() -> None:
        for line in iter(r.fp.readline, b""):
            if line.startswith(b"data: "):
                got.append(json.loads(line[6:]))

    threading.Thread(target=read, daemon=True).start()
    return got


def wait_for(pred: Any, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pred()
        if out:
            return out
        time.sleep(0.02)
    raise AssertionError("not within the time")


def test_a_supervisor_acknowledges_an_alert(dashboard: Dashboard, tmp_path: Path) -> None:
    events = north_call(dashboard)
    alert = first_alert(events)
    other_page = read_stream(dashboard, dashboard.session("qa"))
    wait_for(lambda: other_page)  # its snapshot
    sup = dashboard.session("sup-north")
    status, me = dashboard.get("/api/me", cookie=sup)
    assert status == 200 and me["may_ack"] is True
    before = time.time()
    status, body = post_ack(dashboard, alert.event_id, cookie=sup)
    assert status == 200, body
    assert body["ack"]["user"] == "sup-north" and before <= body["ack"]["at"] <= time.time()
    assert body["alert"]["event_id"] == alert.event_id and body["alert"]["ack"] == body["ack"]
    # the other page is pushed the alert, acknowledged
    pushed = wait_for(lambda: [m for m in other_page if m.get("type") == "ack"])
    assert pushed[0]["alert"]["ack"] == body["ack"]
    # a page opened later has it in its snapshot
    status, snap = dashboard.get("/api/state", TOKEN)
    acked = {a["event_id"]: a["ack"] for a in snap["alerts"]}
    assert acked[alert.event_id] == body["ack"]
    # the second click (another supervisor of all calls) changes nothing
    status, again = post_ack(dashboard, alert.event_id, cookie=dashboard.session("admin"))
    assert status == 200 and again["ack"] == body["ack"]
    # the audit log says who did what, once; the acks file beside it keeps it
    records = [r for r in read_audit(tmp_path / "audit.jsonl") if r.get("action") == "ack"]
    assert len(records) == 1
    rec = records[0]
    assert (rec["user"], rec["role"], rec["call_id"]) == ("sup-north", "supervisor", CID)
    assert rec["event_id"] == alert.event_id and rec["route"] == "/api/alerts/ack"
    kept = read_acks(tmp_path / DEFAULT_ACKS_LOG)
    assert (kept[alert.event_id].user, kept[alert.event_id].at) == ("sup-north", body["ack"]["at"])


def test_acknowledgements_survive_a_restart(tmp_path: Path) -> None:
    users = write_users(tmp_path / "users.yaml", ("sup-north", "agent-a"))
    events = north_call()
    alert = first_alert(events)
    acks_at: list[float] = []
    for _ in range(2):
        state = DashboardState()
        server = start_dashboard(
            state, "127.0.0.1", 0, TOKEN, users=users, audit_log=tmp_path / "audit.jsonl"
        )
        d = Dashboard(server, state)
        try:
            north_call(d, events=events)  # the same events again after the restart
            if not acks_at:
                status, body = post_ack(d, alert.event_id, cookie=d.session("sup-north"))
                assert status == 200, body
                acks_at.append(body["ack"]["at"])
            status, snap = d.get("/api/state", TOKEN)
            acked = {a["event_id"]: a["ack"] for a in snap["alerts"]}
            assert acked[alert.event_id] == {"user": "sup-north", "at": acks_at[0]}
        finally:
            state.close()
            server.stop()


def test_who_may_not_acknowledge(dashboard: Dashboard, tmp_path: Path) -> None:
    events = north_call(dashboard)
    east = call_events("stonewalling", "call-east-7", agent_id="B1")
    for e in east:
        dashboard.sink.emit(e)
    alert = first_alert(events)
    sup = dashboard.session("sup-north")
    own = f"{urlsplit(dashboard.url).scheme}://{urlsplit(dashboard.url).netloc}"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 401, "log in"),
        ({"cookie": dashboard.session("agent-a")}, 403, "agent role"),  # its own call's alert
        ({"cookie": dashboard.session("viewer")}, 403, "viewer role"),
        ({"token": TOKEN}, 403, "API key"),
        ({"token": VIEWER_TOKEN}, 403, "API key"),
        # another site's page, with the supervisor's cookie (were the browser to send it)
        ({"cookie": sup, "Origin": "https://evil.example"}, 403, "own page"),
        ({"cookie": sup, "Sec-Fetch-Site": "cross-site", "Origin": own}, 403, "own page"),
        ({"cookie": sup, "Sec-Fetch-Site": "same-site"}, 403, "own page"),
        # a form (what a cross-site page can post without asking first)
        ({"cookie": sup, "ctype": "application/x-www-form-urlencoded"}, 415, "JSON"),
        ({"cookie": sup, "body": b"event_id=x"}, 400, "not JSON"),
        ({"cookie": sup, "body": b'{"event_id": 7}'}, 400, "event_id"),
        ({"cookie": sup, "body": b"[]"}, 400, "event_id"),
    ]
    for kwargs, want, says in cases:
        status, body = post_ack(dashboard, alert.event_id, **kwargs)
        assert status == want and says in body["detail"], (kwargs, status, body)
    # an alert the supervisor does not see (team east), and one not kept: as if none
    status, body = post_ack(dashboard, first_alert(east).event_id, cookie=sup)
    assert status == 404, body
    status, body = post_ack(dashboard, "no-such-alert:1", cookie=sup)
    assert status == 404 and "no-such-alert:1" in body["detail"]
    assert dashboard.state.alert(alert.event_id)["ack"] is None  # type: ignore[index]
    assert not (tmp_path / DEFAULT_ACKS_LOG).exists()
    # the same supervisor from its own page: accepted
    status, body = post_ack(
        dashboard, alert.event_id, cookie=sup, Origin=own, **{"Sec-Fetch-Site": "same-origin"}
    )
    assert status == 200 and body["ack"]["user"] == "sup-north"
