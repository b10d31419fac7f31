"""The dashboard's review queue and appeals over HTTP, on both store backends (``store_url``:
a SQLite file, a fresh PostgreSQL database): who sees which queue items, who may decide, a
decision as a new version with the recomputed score, a racing second reviewer refused, an
agent's appeal entering the queue, the write checks of ``POST /api/alerts/ack`` (same-site,
JSON only), the audit log, and the periodic scan."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from dashboard_helpers import TOKEN, Dashboard
from review_calls import (
    call_a,
    fill_store,
    put_wav,
    session_of,
    start_review_dashboard,
    store_call,
    tagged,
    write_pack,
)

from qa_pipeline.dashboard import DashboardError, DashboardState, start_dashboard
from qa_pipeline.rules import RulePack, load_pack
from qa_pipeline.store import open_store


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> RulePack:
    return load_pack(write_pack(tmp_path_factory.mktemp("revpack")))


@pytest.fixture
def dash(tmp_path: Path, store_url: str, pack: RulePack) -> Iterator[Dashboard]:
    fill_store(store_url, pack)
    d = start_review_dashboard(tmp_path, store_url, pack, scan_s=0.2)
    try:
        yield d
    finally:
        d.state.close()
        d.server.stop()


def post(
    d: Dashboard,
    path: str,
    body: Any,
    *,
    cookie: str | None = None,
    token: str | None = None,
    ctype: str = "application/json",
    **headers: str,
) -> tuple[int, Any]:
    u = urllib.parse.urlsplit(d.url)
    c = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
    h = {"Content-Type": ctype, **headers}
    if cookie:
        h["Cookie"] = cookie
    if token:
        h["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request("POST", path, body=raw, headers=h)
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    return r.status, json.loads(data) if data else None


def queue_ids(d: Dashboard, cookie: str, query: str = "") -> list[str]:
    status, body = d.get("/api/review/queue" + query, cookie=cookie)
    assert status == 200, body
    return [i["call_id"] for i in body["items"]]


def test_queue_by_role_and_filters(dash: Dashboard) -> None:
    qa = session_of(dash, "qa")
    status, body = dash.get("/api/review/queue", cookie=qa)
    assert status == 200
    items = {i["call_id"]: i for i in body["items"]}
    assert set(items) == {"CA1", "CB1"}  # CA2 (90, nothing uncertain) is not queued
    a1 = items["CA1"]
    assert a1["agent_id"] == "A1" and a1["teams"] == ["north"]
    assert a1["reasons"] == ["uncertain"] and a1["pending_rules"] == ["BAN-POLICY"]
    assert a1["state"] == "open" and a1["assignee"] is None and a1["machine_score"] == 91
    assert a1["entered_at"].endswith("+00:00")
    # filters: team, reason, state
    assert queue_ids(dash, qa, "?team=east") == ["CB1"]
    assert queue_ids(dash, qa, "?reason=uncertain") == ["CA1", "CB1"]
    assert queue_ids(dash, qa, "?reason=appeal") == []
    assert queue_ids(dash, qa, "?state=done") == []
    status, body = dash.get("/api/review/queue?state=closed", cookie=qa)
    assert status == 400 and "state" in body["detail"] and "closed" in body["detail"]
    status, body = dash.get("/api/review/queue?reason=boring", cookie=qa)
    assert status == 400 and "reason" in body["detail"]
    # supervisors: their team's items only; admin and the API key: all
    assert queue_ids(dash, session_of(dash, "sup-north")) == ["CA1"]
    assert queue_ids(dash, session_of(dash, "sup-east")) == ["CB1"]
    assert queue_ids(dash, session_of(dash, "admin")) == ["CA1", "CB1"]
    status, body = dash.get("/api/review/queue", TOKEN)
    assert status == 200 and len(body["items"]) == 2
    # agents and viewers never see the queue; nobody without a login
    for name in ("agent-a", "viewer"):
        status, body = dash.get("/api/review/queue", cookie=session_of(dash, name))
        assert status == 403, (name, body)
    assert dash.get("/api/review/queue")[0] == 401
    # the page itself is served (no data in it)
    status, page = dash.get("/review")
    assert status == 200 and "复核队列" in page and "CA1" not in page


def test_call_view_and_who_opens_it(dash: Dashboard, tmp_path: Path) -> None:
    qa = session_of(dash, "qa")
    status, v = dash.get("/api/review/calls/CA1", cookie=qa)
    assert status == 200, v
    assert v["version"] == 0 and v["versions"] == [] and v["may_decide"] is True
    assert v["current"] == {"score": 91.0, "grade": "非常满意", "failed": False, "reviewed": False}
    bp = v["verdicts"]["BAN-POLICY"]
    assert bp["machine"] == bp["now"] == "uncertain" and bp["pending"] == 20
    assert bp["description"] == "不推诿" and bp["severity"] == "critical"
    assert v["verdicts"]["NO-PHONE"]["now"] == "failed"
    phone = next(f for f in v["findings"] if f["rule_id"] == "NO-PHONE")
    assert phone["evidence"][0]["utterance_index"] == 2
    texts = [u["text"] for u in v["transcript"]]
    assert "13812345678" not in json.dumps(v, ensure_ascii=False)  # redacted in the store
    assert any("[手机号]" in t for t in texts)
    # supervisors see their team's calls, read-only; an agent its own; others: 404
    status, v = dash.get("/api/review/calls/CA1", cookie=session_of(dash, "sup-north"))
    assert status == 200 and v["may_decide"] is False and v["may_appeal"] is False
    assert dash.get("/api/review/calls/CA1", cookie=session_of(dash, "sup-east"))[0] == 404
    agent_a = session_of(dash, "agent-a")
    status, v = dash.get("/api/review/calls/CA1", cookie=agent_a)
    assert status == 200 and v["may_appeal"] is True and v["may_decide"] is False
    assert dash.get("/api/review/calls/CB1", cookie=agent_a)[0] == 404
    assert dash.get("/api/review/calls/NOPE", cookie=qa)[0] == 404
    assert dash.get("/api/review/calls/CA1", cookie=session_of(dash, "viewer"))[0] == 403
    # each opening is audited
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    opened = [(x["user"], x["call_id"]) for x in lines if x["route"] == "/api/review/calls/CA1"]
    assert ("qa", "CA1") in opened and ("agent-a", "CA1") in opened


def test_decide_makes_a_version_with_the_reviewed_score(dash: Dashboard, tmp_path: Path) -> None:
    qa = session_of(dash, "qa")
    path = "/api/review/calls/CA1/decide"
    decisions = [
        {
            "rule_id": "NO-PHONE",
            "action": "overturn",
            "to": "passed",
            "comment": "号码是客户要求核对的",
        },
        {"rule_id": "BAN-POLICY", "action": "confirm", "comment": "录音清楚：公司规定"},
    ]
    # refused: each with the reason named, nothing written
    bad = [
        ({"decisions": decisions}, 400, "base_version"),
        ({"base_version": 0, "decisions": []}, 400, "decisions"),
        ({"base_version": 0, "decisions": [{**decisions[0], "comment": " "}]}, 400, "comment"),
        ({"base_version": 0, "decisions": [{**decisions[0], "to": "maybe"}]}, 400, "to"),
        ({"base_version": 0, "decisions": [{**decisions[0], "rule_id": "NOPE"}]}, 400, "NOPE"),
    ]
    for body, code, word in bad:
        status, out = post(dash, path, body, cookie=qa)
        assert status == code and word in out["detail"], (body, status, out)
    status, out = post(
        dash, path, b"base_version=0", cookie=qa, ctype="application/x-www-form-urlencoded"
    )
    assert status == 415
    status, out = post(dash, path, b"{not json", cookie=qa)
    assert status == 400 and "JSON" in out["detail"]
    body = {"base_version": 0, "decisions": decisions}
    status, out = post(dash, path, body, cookie=qa, **{"Sec-Fetch-Site": "cross-site"})
    assert status == 403 and out["error"] == "cross-site request"
    status, out = post(dash, path, body, cookie=qa, Origin="http://evil.example")
    assert status == 403
    for who in ("sup-north", "agent-a"):
        status, out = post(dash, path, body, cookie=session_of(dash, who))
        assert status == 403, (who, out)
    assert "supervisor" in post(dash, path, body, cookie=session_of(dash, "sup-north"))[1]["detail"]
    assert post(dash, path, body, token=TOKEN)[0] == 403
    assert post(dash, path, body)[0] == 401
    assert dash.get("/api/review/calls/CA1", cookie=qa)[1]["versions"] == []

    status, out = post(dash, path, body, cookie=qa, **{"Sec-Fetch-Site": "same-origin"})
    assert status == 200, out
    v = out["version"]
    assert v["version"] == 1 and v["by"] == "qa" and v["kind"] == "review"
    # 100 - BAN-POLICY 20 (confirmed at its pending deduction) - BAN-N 2 x 2; NO-PHONE passes
    assert v["score"] == 76 and v["failed"] is True and v["grade"] == "不满意"
    view = out["view"]
    assert view["current"]["score"] == 76 and view["current"]["reviewed"] is True
    assert view["verdicts"]["NO-PHONE"] == {
        **view["verdicts"]["NO-PHONE"],
        "machine": "failed",
        "now": "passed",
    }
    assert view["verdicts"]["BAN-POLICY"]["now"] == "failed"
    assert view["queue"]["state"] == "done" and view["queue"]["assignee"] == "qa"
    assert [d["comment"] for d in view["versions"][0]["decisions"]] == [
        "录音清楚：公司规定",
        "号码是客户要求核对的",
    ]
    # the queue: done items leave the default view; the version is the store's too
    assert queue_ids(dash, qa) == ["CB1"]
    assert queue_ids(dash, qa, "?state=done") == ["CA1"]
    status, again = dash.get("/api/review/calls/CA1", cookie=qa)
    assert again["version"] == 1 and again["current"]["score"] == 76
    assert [x["score"] for x in again["versions"]] == [76]
    # an audit line for the decision: who, which call, what
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    rec = [x for x in lines if x.get("action") == "review"]
    assert len(rec) == 1 and rec[0]["user"] == "qa" and rec[0]["call_id"] == "CA1"
    assert rec[0]["version"] == 1 and rec[0]["score"] == 76


def test_racing_reviewers_second_is_refused(dash: Dashboard) -> None:
    qa, admin = session_of(dash, "qa"), session_of(dash, "admin")
    path = "/api/review/calls/CB1/decide"
    # both open the call at version 0
    assert dash.get("/api/review/calls/CB1", cookie=qa)[1]["version"] == 0
    assert dash.get("/api/review/calls/CB1", cookie=admin)[1]["version"] == 0
    first = {"rule_id": "BAN-POLICY", "action": "overturn", "to": "passed", "comment": "听错了"}
    second = {"rule_id": "BAN-POLICY", "action": "confirm", "comment": "确实说了"}
    results: dict[str, tuple[int, Any]] = {}

    def go(name: str, cookie: str, d: dict[str, Any]) -> None:
        results[name] = post(dash, path, {"base_version": 0, "decisions": [d]}, cookie=cookie)

    threads = [
        threading.Thread(target=go, args=("qa", qa, first)),
        threading.Thread(target=go, args=("admin", admin, second)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(s for s, _ in results.values())
    assert codes == [200, 409], results
    winner = next(n for n, (s, _) in results.items() if s == 200)
    loser = next(n for n, (s, _) in results.items() if s == 409)
    detail = results[loser][1]["detail"]
    assert f"recorded by {winner}" in detail and "look at the call again" in detail
    versions = dash.get("/api/review/calls/CB1", cookie=qa)[1]["versions"]
    assert [(v["version"], v["by"]) for v in versions] == [(1, winner)]
    # on the version it now shows, the second reviewer may decide again
    status, out = post(
        dash, path, {"base_version": 1, "decisions": [{**second, "comment": "复听：确实说了"}]},
        cookie=admin,
    )  # fmt: skip
    assert status == 200 and out["version"]["version"] == 2


def test_agent_appeal_enters_the_queue(dash: Dashboard, tmp_path: Path) -> None:
    agent_a = session_of(dash, "agent-a")
    status, mine = dash.get("/api/review/mine", cookie=agent_a)
    assert status == 200 and mine["agent_id"] == "A1"
    calls = {c["call_id"]: c for c in mine["calls"]}
    assert set(calls) == {"CA1", "CA2"}  # its own calls only
    assert calls["CA2"]["failed_rules"] == ["GREET"] and calls["CA2"]["queue_state"] is None
    assert dash.get("/api/review/mine", cookie=session_of(dash, "qa"))[0] == 403

    path = "/api/review/calls/CA2/appeal"
    body = {"rule_ids": ["GREET"], "reason": "开头说了“你好”，系统没听到"}
    # refused: another agent's call (404, as for a call not stored), other roles, bad bodies
    status, out = post(dash, "/api/review/calls/CB1/appeal", body, cookie=agent_a)
    assert status == 404, out
    status, out = post(dash, path, body, cookie=session_of(dash, "agent-b"))
    assert status == 404, out
    for who in ("qa", "sup-north"):
        status, out = post(dash, path, body, cookie=session_of(dash, who))
        assert status == 403 and "申诉" in out["detail"], (who, out)
    assert post(dash, path, {**body, "reason": "  "}, cookie=agent_a)[0] == 400
    assert post(dash, path, {"reason": "x"}, cookie=agent_a)[0] == 400
    status, out = post(dash, path, {**body, "rule_ids": ["BAN-POLICY"]}, cookie=agent_a)
    assert status == 400 and "BAN-POLICY is passed" in out["detail"], out
    status, out = post(dash, path, body, cookie=agent_a, **{"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert queue_ids(dash, session_of(dash, "qa"), "?reason=appeal") == []

    status, out = post(dash, path, body, cookie=agent_a)
    assert status == 200, out
    assert out["version"]["kind"] == "appeal" and out["version"]["by"] == "agent-a"
    assert out["queue"]["reasons"] == ["appeal"] and out["queue"]["pending_rules"] == ["GREET"]
    qa = session_of(dash, "qa")
    assert queue_ids(dash, qa, "?reason=appeal") == ["CA2"]
    assert queue_ids(dash, session_of(dash, "sup-north"), "?reason=appeal") == ["CA2"]
    assert queue_ids(dash, session_of(dash, "sup-east"), "?reason=appeal") == []
    v = dash.get("/api/review/calls/CA2", cookie=qa)[1]
    assert v["current"]["score"] == 90 and v["version"] == 1  # an appeal changes no score
    assert v["versions"][0]["decisions"][0]["comment"] == body["reason"]
    # QA decides the appeal: GREET overturned to passed -> 100
    status, out = post(
        dash, "/api/review/calls/CA2/decide",
        {"base_version": 1, "decisions": [{"rule_id": "GREET", "action": "overturn", "to": "passed", "comment": "申诉成立"}]},
        cookie=qa,
    )  # fmt: skip
    assert status == 200 and out["version"]["score"] == 100
    status, mine = dash.get("/api/review/mine", cookie=agent_a)
    ca2 = next(c for c in mine["calls"] if c["call_id"] == "CA2")
    assert ca2["score"] == 100 and ca2["reviewed"] is True and ca2["queue_state"] == "done"
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(x["user"], x["call_id"]) for x in lines if x.get("action") == "appeal"] == [
        ("agent-a", "CA2")
    ]


def test_claim_and_periodic_scan(dash: Dashboard, store_url: str, pack: RulePack) -> None:
    qa = session_of(dash, "qa")
    status, out = post(dash, "/api/review/calls/CA1/claim", {}, cookie=qa)
    assert (
        status == 200 and out["queue"]["state"] == "in_review" and out["queue"]["assignee"] == "qa"
    )
    assert post(dash, "/api/review/calls/CA2/claim", {}, cookie=qa)[0] == 404  # not queued
    assert (
        post(dash, "/api/review/calls/CA1/claim", {}, cookie=session_of(dash, "sup-north"))[0]
        == 403
    )
    # a call stored after the start enters the queue at the next scan (every 0.2 s here)
    odd = "CB2/外呼%41"
    with open_store(store_url) as st:
        store_call(st, tagged(call_a(odd), "B1", "east"), pack)
    deadline = time.monotonic() + 5
    while odd not in queue_ids(dash, qa):
        assert time.monotonic() < deadline, "the scan did not queue the new call"
        time.sleep(0.1)
    # an id with a slash, a percent sign and Chinese, percent-encoded once as the page does
    status, v = dash.get("/api/review/calls/" + urllib.parse.quote(odd, safe=""), cookie=qa)
    assert status == 200 and v["call_id"] == odd


def test_a_store_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(DashboardError, match="store"):
        start_dashboard(DashboardState(), "127.0.0.1", 0, TOKEN, store=str(tmp_path / "dir"))


def get_bytes(d: Dashboard, path: str, cookie: str) -> tuple[int, str, bytes]:
    u = urllib.parse.urlsplit(d.url)
    c = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
    c.request("GET", path, headers={"Cookie": cookie})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type") or "", data


def test_evidence_audio_from_the_store(dash: Dashboard, store_url: str, tmp_path: Path) -> None:
    put_wav(store_url, "CA1", tmp_path / "ca1.wav")
    put_wav(store_url, "CB1", tmp_path / "cb1.wav", redacted=False)
    qa = session_of(dash, "qa")
    assert dash.get("/api/review/calls/CA1", cookie=qa)[1]["audio"] is True
    assert dash.get("/api/review/calls/CB1", cookie=qa)[1]["audio"] is False
    assert dash.get("/api/review/calls/CA2", cookie=qa)[1]["audio"] is False
    # NO-PHONE's evidence, 7.5-11 s, with half a second each side
    status, ctype, data = get_bytes(dash, "/api/calls/CA1/audio?start=7.5&end=11", qa)
    assert status == 200 and ctype == "audio/wav", (status, data[:200])
    clip, rate = sf.read(io.BytesIO(data))
    assert rate == 8000 and len(clip) == 8000 * 4.5
    assert get_bytes(dash, "/api/calls/CB1/audio?start=1&end=2", qa)[0] == 409
    assert get_bytes(dash, "/api/calls/CA2/audio?start=1&end=2", qa)[0] == 404
    assert get_bytes(dash, "/api/calls/CA1/audio?start=9&end=1", qa)[0] == 400
    assert get_bytes(dash, "/api/review/calls/CA1/audio?start=7.5&end=11", qa)[0] == 404
    # an agent hears its own calls only; a viewer none
    agent_a, agent_b = session_of(dash, "agent-a"), session_of(dash, "agent-b")
    assert get_bytes(dash, "/api/calls/CA1/audio?start=7.5&end=11", agent_a)[0] == 200
    assert get_bytes(dash, "/api/calls/CA1/audio?start=7.5&end=11", agent_b)[0] == 404
    viewer = session_of(dash, "viewer")
    assert get_bytes(dash, "/api/calls/CA1/audio?start=7.5&end=11", viewer)[0] == 403
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    heard = [(x["user"], x["start"], x["end"]) for x in lines if x["route"].endswith("/audio")]
    assert heard == [("qa", "7.5", "11"), ("agent-a", "7.5", "11")]


def test_periodic_scans_read_the_calls_changed_since_the_last(
    tmp_path: Path, store_url: str, pack: RulePack
) -> None:
    """After the full scan at start, a periodic scan reads only the calls with a result
    written since the mark taken before the last scan (less the overlap): a call stamped
    further back waits for the hourly full scan; a result stamped in the future does not
    carry the mark past the others."""
    from qa_pipeline.dashboard.review_api import FULL_SCAN_EVERY, SCAN_OVERLAP_S
    from qa_pipeline.review import repo

    fill_store(store_url, pack)
    d = start_review_dashboard(tmp_path, store_url, pack, scan_s=0)  # scans run by hand
    review = d.server.app.review
    assert review is not None
    try:
        start_mark = review.scan_mark
        assert start_mark is not None and start_mark <= time.time()
        now = time.time()
        with open_store(store_url) as st:
            store_call(st, tagged(call_a("NEW-1"), "B1", "east"), pack)
            behind = now - SCAN_OVERLAP_S - 3600  # a writer an hour and more behind
            store_call(st, tagged(call_a("LATE-1"), "B1", "east"), pack, created=behind)
            store_call(st, tagged(call_a("AHEAD-1"), "B1", "east"), pack, created=now + 7200)
        assert sorted(review.store.call(review.scan)) == ["AHEAD-1", "NEW-1"]
        assert review.scan_mark is not None and review.scan_mark <= time.time()

        with open_store(store_url) as st:  # written after the ahead one: still read
            store_call(st, tagged(call_a("NEW-2"), "B1", "east"), pack)
        assert review.store.call(review.scan) == ["NEW-2"]
        review.scans = FULL_SCAN_EVERY - 1  # the next is the hourly full scan
        assert review.store.call(review.scan) == ["LATE-1"]
        with open_store(store_url) as st:  # a full scan by hand agrees: nothing left
            assert repo.scan(st, below=review.below) == []
        qa = session_of(d, "qa")
        assert {"NEW-1", "NEW-2", "LATE-1", "AHEAD-1"} <= set(queue_ids(d, qa))
    finally:
        d.state.close()
        d.server.stop()
