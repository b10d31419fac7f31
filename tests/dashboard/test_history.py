"""History from the store (SQLite and PostgreSQL): the dashboard lists stored calls (paged,
newest first, filtered), shows a stored call, trends and an agent's page, exports the list,
keeps alert acknowledgements in the store; each role sees what it sees live; a restart
loses nothing."""

from __future__ import annotations

import http.client
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import openpyxl
import pytest
from dashboard_helpers import TOKEN, VIEWER_TOKEN, Dashboard, start_test_dashboard
from history_data import NEWEST_FIRST, REVIEWED, UNCERTAIN_RULE, fill_store

from qa_pipeline.dashboard import DashboardState, start_dashboard
from qa_pipeline.dashboard.acks import FileAckStore
from qa_pipeline.dashboard.audit import read_audit
from qa_pipeline.dashboard.history import (
    CallFilter,
    Scope,
    StoreAckStore,
    TrendQuery,
    call_detail,
    list_calls,
    score_trend,
    search_calls,
)
from qa_pipeline.errors import QAError
from qa_pipeline.store import Store
from qa_pipeline.store.search import sync_index


def start(tmp_path: Path, url: str) -> Dashboard:
    return start_test_dashboard(tmp_path, store=url)


def stop(d: Dashboard) -> None:
    d.stop()


@pytest.fixture
def filled(store_url: str) -> dict[str, Any]:
    return {"url": store_url, **fill_store(store_url)}


@pytest.fixture
def hist(tmp_path: Path, filled: dict[str, Any]) -> Iterator[Dashboard]:
    d = start(tmp_path, filled["url"])
    try:
        yield d
    finally:
        stop(d)


def ids(body: dict[str, Any]) -> list[str]:
    return [c["call_id"] for c in body["calls"]]


def fetch(d: Dashboard, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    u = urlsplit(d.url)
    c = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def test_list_filters_paging_detail_and_restart(
    hist: Dashboard, filled: dict[str, Any], tmp_path: Path
) -> None:
    status, body = hist.get("/api/history/calls", TOKEN)
    assert status == 200 and ids(body) == NEWEST_FIRST and body["total"] == 5
    by_id = {c["call_id"]: c for c in body["calls"]}
    # which score counts: h-1's candidate re-score (10) never; h-2's reviewed score
    assert by_id["h-1"]["score"] == filled["score"]["h-1"] != 10
    assert by_id["h-2"]["score"] == REVIEWED[1] and by_id["h-2"]["reviewed"] is True
    assert by_id["h-4"]["complete"] is False and by_id["h-5"]["review"] is True
    # paging
    status, p2 = hist.get("/api/history/calls?per_page=2&page=2", TOKEN)
    assert ids(p2) == ["h-3", "h-2"] and (p2["pages"], p2["total"]) == (3, 5)
    # filters
    for query, want in (
        ("agent=A1", ["h-2", "h-1"]),
        ("team=east", ["h-4", "h-3"]),
        ("since=2026-11-21&until=2026-11-21", ["h-3", "h-2"]),
        ("since=2026-11-27T00:00:00Z", ["h-5", "h-4"]),
        ("rule=BAN-POLICY", ["h-5", "h-2"]),
        ("rule=BAN-POLICY&verdict=passed", ["h-4", "h-3", "h-1"]),
        ("verdict=uncertain", ["h-5"]),
        (f"rule={UNCERTAIN_RULE}&verdict=uncertain", ["h-5"]),
        ("direction=outbound", ["h-3"]),
        ("score_min=90", ["h-4", "h-2", "h-1"]),  # h-2 by its reviewed 95
        ("score_min=60&score_max=80", ["h-3"]),
        ("agent=A1&team=east", []),
    ):
        status, got = hist.get(f"/api/history/calls?{query}", TOKEN)
        assert status == 200 and ids(got) == want, query
    for query, name in (
        ("since=yesterday", "since"),
        ("verdict=bad", "verdict"),
        ("score_min=x", "score_min"),
        ("per_page=5000", "per_page"),
        ("since=2026-11-22&until=2026-11-21", "until"),
    ):
        status, err = hist.get(f"/api/history/calls?{query}", TOKEN)
        assert status == 400 and name in err["detail"], query
    # a stored call: transcript, findings with evidence, every verdict (uncertain too)
    status, d = hist.get("/api/history/calls/h-5", TOKEN)
    assert status == 200 and d["call"]["call_id"] == "h-5"
    assert d["utterances"][0]["text"].startswith("您好")
    verdicts = {v["rule_id"]: v["verdict"] for v in d["verdicts"]}
    assert verdicts[UNCERTAIN_RULE] == "uncertain" and verdicts["BAN-POLICY"] == "failed"
    ban = next(f for f in d["findings"] if f["rule_id"] == "BAN-POLICY")
    assert ban["evidence"] and ban["evidence"][0]["utterance_index"] == 2
    assert "不能退" in ban["evidence"][0]["text"]
    status, d2 = hist.get("/api/history/calls/h-2", TOKEN)
    assert d2["call"]["reviewed"] is True and d2["review_versions"] == 1
    assert hist.get("/api/history/calls/nope", TOKEN)[0] == 404
    # restarted: the same calls, from the store
    stop(hist)
    again = start(tmp_path, filled["url"])
    try:
        status, body = again.get("/api/history/calls", TOKEN)
        assert status == 200 and ids(body) == NEWEST_FIRST
    finally:
        stop(again)


def test_roles_see_their_calls_only(hist: Dashboard, tmp_path: Path) -> None:
    for user, want in (
        ("agent-a", ["h-2", "h-1"]),
        ("agent-b", ["h-4", "h-3"]),
        ("sup-north", ["h-2", "h-1"]),
        ("sup-east", ["h-4", "h-3"]),
        ("qa", NEWEST_FIRST),
    ):
        cookie = hist.session(user)
        status, body = hist.get("/api/history/calls", cookie=cookie)
        assert status == 200 and ids(body) == want, user
        # another agent named in the filter shows nothing more
        status, body = hist.get("/api/history/calls?agent=C1", cookie=cookie)
        assert ids(body) == (["h-5"] if user == "qa" else []), user
    agent_a = hist.session("agent-a")
    assert hist.get("/api/history/calls/h-3", cookie=agent_a)[0] == 404
    assert hist.get("/api/history/agents/B1", cookie=agent_a)[0] == 404
    assert hist.get("/api/history/calls/h-2", cookie=agent_a)[0] == 200
    # trends count only the calls seen
    status, t = hist.get("/api/history/trends", cookie=hist.session("sup-east"))
    assert status == 200, t
    assert [s["key"] for s in t["scores"]["series"]] == ["B1"]
    # a viewer: every call, no text
    status, d = hist.get("/api/history/calls/h-5", VIEWER_TOKEN)
    assert status == 200 and d["text"] is False
    assert all(u["text"] is None for u in d["utterances"])
    assert all(f["message"] is None and "text" not in f["evidence"][0] for f in d["findings"])
    assert hist.get("/api/history/calls", None)[0] == 401
    # the transcripts sent are audited (the viewer's is not: no text)
    rows = [r for r in read_audit(tmp_path / "audit.jsonl") if r["route"].startswith("/api/hist")]
    assert {(r["user"], r["call_id"]) for r in rows} == {("agent-a", "h-2")}


def test_trends_and_agent_page(hist: Dashboard, filled: dict[str, Any]) -> None:
    status, t = hist.get("/api/history/trends?group=agent&bucket=day", TOKEN)
    assert status == 200
    series = {s["key"]: s["points"] for s in t["scores"]["series"]}
    # h-4 is incomplete: B1 has only h-3; A1: h-1 machine score, h-2 reviewed score
    assert series["A1"] == [
        {"bucket": "2026-11-20", "mean": filled["score"]["h-1"], "calls": 1},
        {"bucket": "2026-11-21", "mean": REVIEWED[1], "calls": 1},
    ]
    assert series["B1"] == [{"bucket": "2026-11-21", "mean": filled["score"]["h-3"], "calls": 1}]
    svg = t["scores"]["svg"]
    assert 'data-series="A1" data-bucket="2026-11-20"' in svg
    ticks = re.findall(r'class="tick"[^>]*>([^<]+)<', svg)
    assert ticks == ["0", "20", "40", "60", "80", "100"]
    # violations per rule: failed verdicts of complete calls' current results; uncertain out
    violations = t["violations"]
    failed = filled["failed"]
    want = {}
    for cid in ("h-1", "h-2", "h-3", "h-5"):
        for rule in failed[cid]:
            want[rule] = want.get(rule, 0) + 1
    assert violations["totals"] == want and UNCERTAIN_RULE in failed["h-3"]
    assert violations["totals"][UNCERTAIN_RULE] == 1  # h-3's failure, not h-5's uncertain
    vticks = [int(x) for x in re.findall(r'class="tick"[^>]*>([^<]+)<', violations["svg"])]
    assert vticks == list(range(vticks[-1] + 1)) and vticks[-1] >= max(
        p["count"] for s in violations["series"] for p in s["points"]
    )
    # the chart draws the 8 most violated rules (11 here); the JSON has them all
    charted = set(violations["charted"])
    assert len(want) == 11 and len(charted) == 8 and "OPEN-NAME" in charted
    drawn = set(re.findall(r'circle class="pt"[^>]*data-series="([^"]+)"', violations["svg"]))
    assert drawn == charted
    status, w = hist.get("/api/history/trends?group=team&bucket=week", TOKEN)
    teams = {s["key"]: s["points"] for s in w["scores"]["series"]}
    assert teams["north"] == [
        {
            "bucket": "2026-11-16",
            "mean": round((filled["score"]["h-1"] + REVIEWED[1]) / 2, 2),
            "calls": 2,
        }
    ]
    assert set(teams) == {"north", "east", "—"}
    assert hist.get("/api/history/trends?bucket=month", TOKEN)[0] == 400
    # days are the viewer's (tz: minutes east of UTC): at UTC-10 09:00Z is the day before
    status, t10 = hist.get("/api/history/trends?tz=-600", TOKEN)
    a1 = next(s["points"] for s in t10["scores"]["series"] if s["key"] == "A1")
    assert [p["bucket"] for p in a1] == ["2026-11-19", "2026-11-20"]
    status, body = hist.get("/api/history/calls?since=2026-11-21&tz=-600", TOKEN)
    assert ids(body) == ["h-5", "h-4", "h-3"]  # h-3 at 00:00 local, h-2 at 23:00 the day before
    status, err = hist.get("/api/history/calls?tz=9999", TOKEN)
    assert status == 400 and "tz" in err["detail"]
    # an agent's page
    status, a = hist.get("/api/history/agents/A1", TOKEN)
    assert status == 200 and ids(a["calls"]) == ["h-2", "h-1"]
    assert a["mean_score"] == round((filled["score"]["h-1"] + REVIEWED[1]) / 2, 2)
    top = {v["rule_id"]: v["count"] for v in a["top_violations"]}
    assert top["OPEN-NAME"] == 2 and top["BAN-POLICY"] == 1
    # h-2 reviewed; h-1 queued by the review scan the dashboard runs when it opens the
    # store (its BAN-POLICY finding is critical)
    assert a["reviews"] == {"reviews": 1, "appeals": 0, "queued": 1}
    assert 'data-series="A1"' in a["trend"]["svg"]
    assert hist.get("/api/history/agents/nobody", TOKEN)[0] == 404


def test_exports_csv_xlsx_audited_and_scoped(hist: Dashboard, tmp_path: Path) -> None:
    status, headers, body = fetch(
        hist, "/api/history/export.csv?team=north", Authorization=f"Bearer {TOKEN}"
    )
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    assert body.startswith(b"\xef\xbb\xbf")
    lines = body.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("call id,agent,team") and len(lines) == 3
    assert [ln.split(",")[0] for ln in lines[1:]] == ["h-2", "h-1"]
    cookie = hist.session("agent-b")
    status, headers, body = fetch(hist, "/api/history/export.xlsx", Cookie=cookie)
    assert status == 200 and "spreadsheetml" in headers["Content-Type"]
    wb = openpyxl.load_workbook(io.BytesIO(body))
    assert wb.sheetnames == ["results", "findings"]
    got = [r[0] for r in wb["results"].iter_rows(min_row=2, values_only=True)]
    assert got == ["h-4", "h-3"]
    status, headers, body = fetch(
        hist, "/api/history/export.xlsx", Authorization=f"Bearer {VIEWER_TOKEN}"
    )
    assert openpyxl.load_workbook(io.BytesIO(body)).sheetnames == ["results"]
    exports = [r for r in read_audit(tmp_path / "audit.jsonl") if r.get("action") == "export"]
    assert sorted((r["user"], r["call_id"], r["format"]) for r in exports) == sorted(
        [("api-key", "h-2", "csv"), ("api-key", "h-1", "csv")]
        + [("agent-b", "h-4", "xlsx"), ("agent-b", "h-3", "xlsx")]
        + [("viewer-key", c, "xlsx") for c in NEWEST_FIRST]
    )
    assert exports[0]["filters"] == {"team": "north"}
    assert fetch(hist, "/api/history/export.csv?since=x", Cookie=cookie)[0] == 400


def test_acks_kept_in_the_store(store_url: str, tmp_path: Path) -> None:
    acks = StoreAckStore(store_url)
    first = acks.ack("call-1:4", "sup-north", 1000.0)
    again = acks.ack("call-1:4", "qa", 2000.0)
    assert (first.user, first.at) == ("sup-north", 1000.0) and again == first
    acks.close()
    reopened = StoreAckStore(store_url)
    assert {k: (a.user, a.at) for k, a in reopened.acks().items()} == {
        "call-1:4": ("sup-north", 1000.0)
    }
    reopened.close()
    # a dashboard with a store keeps them there (no JSONL file beside the audit log)
    d = start(tmp_path, store_url)
    try:
        assert isinstance(d.server.app.acks, StoreAckStore)
        assert "call-1:4" in d.server.app.acks.acks()
    finally:
        stop(d)
    assert not (tmp_path / "dashboard-acks.jsonl").exists()


def test_a_store_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for bad, match in (
        (str(tmp_path / "file" / "qa-store.sqlite"), "cannot open the store"),
        ("mysql://somewhere/db", "not a store"),
    ):
        with pytest.raises(QAError, match=match) as e:
            start_dashboard(DashboardState(), "127.0.0.1", 0, TOKEN, store=bad)
        assert bad.split("/")[-1] in str(e.value)


def test_a_store_not_there_yet_is_read_once_it_is(tmp_path: Path) -> None:
    """A dashboard started before its store exists (serve starts the dashboard before its
    store writer) creates it (the review queue's connection migrates it) and shows an empty
    history, then the calls another writer stores, without a restart."""
    url = str(tmp_path / "later.sqlite")
    state = DashboardState()
    server = start_dashboard(state, "127.0.0.1", 0, TOKEN, store=url, acks=FileAckStore(None))
    d = Dashboard(server, state)
    try:
        status, body = d.get("/api/history/calls", TOKEN)
        assert status == 200 and ids(body) == []
        fill_store(url)
        status, body = d.get("/api/history/calls", TOKEN)
        assert status == 200 and ids(body) == NEWEST_FIRST
    finally:
        stop(d)


def test_no_store_no_history(dashboard: Dashboard) -> None:
    status, body = dashboard.get("/api/history/calls", TOKEN)
    assert status == 404 and "no store" in json.dumps(body)


def test_history_in_browser(tmp_path: Path) -> None:
    """Headless Chromium: the stored calls after a restart, the trend chart's points of a
    known agent, an agent's page, a stored call at an utterance, a CSV download with BOM.
    Screenshots: tests/artifacts/history-list.png, history-agent.png, history-call.png."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from dashboard_helpers import ARTIFACTS, browser_login, chromium

    url = str(tmp_path / "qa-store.sqlite")
    filled = fill_store(url)
    import numpy as np
    import soundfile as sf

    from qa_pipeline.store.recordings import put_recording

    wav = tmp_path / "h-5.wav"
    sf.write(str(wav), np.zeros(8000 * 30, dtype="int16"), 8000, subtype="PCM_16")
    with Store(url) as store:
        put_recording(
            store, "h-5", wav, sample_rate=8000, channels=1, duration_s=30.0, redacted=True
        )
    stop(start(tmp_path, url))  # a dashboard came and went: the history is the store's
    d = start(tmp_path, url)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with chromium() as b:
            ctx = b.new_context(
                viewport={"width": 1440, "height": 1100},
                locale="zh-CN",
                timezone_id="Asia/Shanghai",  # 09:00Z is 17:00 the same day there
                accept_downloads=True,
            )
            page = ctx.new_page()
            browser_login(page, d.url, "qa")
            page.wait_for_selector("#app:not([hidden])", timeout=5000)
            page.goto(d.url + "history")
            page.wait_for_selector("body[data-ready=list]", timeout=5000)
            rows = page.query_selector_all("#calls tr.hcall")
            assert [r.get_attribute("data-call-id") for r in rows] == NEWEST_FIRST
            assert "已复核" in page.inner_text('#calls tr[data-call-id="h-2"]')
            assert "共 5 通" in page.inner_text("#total")
            pts = {
                (c.get_attribute("data-bucket"), c.get_attribute("data-value"))
                for c in page.query_selector_all('#trend-score-chart circle.pt[data-series="A1"]')
            }
            assert pts == {("2026-11-20", f"{filled['score']['h-1']:g}"), ("2026-11-21", "95")}
            assert page.query_selector("#trend-violation-chart circle.pt") is not None
            # drawn (an SVG element, not text): the points have a box inside the chart's
            dot = page.query_selector('#trend-score-chart circle.pt[data-series="A1"]')
            chart = page.query_selector("#trend-score-chart")
            assert dot is not None and chart is not None
            box, frame = dot.bounding_box(), chart.bounding_box()
            assert box is not None and frame is not None and box["width"] > 0
            assert frame["x"] <= box["x"] <= frame["x"] + frame["width"]
            assert frame["y"] <= box["y"] <= frame["y"] + frame["height"]
            page.screenshot(path=str(ARTIFACTS / "history-list.png"), full_page=True)
            # search: a term, the hit links to the call at its utterance
            page.fill("#q", "不能退")
            page.click("#f button[type=submit]")
            page.wait_for_selector("body[data-searched]", timeout=5000)
            found = page.query_selector_all("#search-results tr.shit")
            assert sorted(r.get_attribute("data-call-id") or "" for r in found) == [
                "h-2",
                "h-5",
            ]
            page.screenshot(path=str(ARTIFACTS / "history-search.png"), full_page=True)
            page.click('#search-results tr.shit[data-call-id="h-5"] a.snippet')
            page.wait_for_selector("body[data-ready=call]", timeout=5000)
            assert "target" in (page.get_attribute("#u2", "class") or "")
            page.goto(d.url + "history")
            page.wait_for_selector("body[data-ready=list]", timeout=5000)
            # filter: one team; the export link carries it
            page.fill("#f input[name=team]", "east")
            page.click("#f button[type=submit]")
            # (no wait_for_function: the page's CSP allows no eval)
            page.wait_for_selector('#calls tr[data-call-id="h-1"]', state="detached")
            got = [r.get_attribute("data-call-id") for r in page.query_selector_all("#calls tr")]
            assert got == ["h-4", "h-3"]
            with page.expect_download(timeout=5000) as dl:
                page.click("#export-csv")
            data = Path(dl.value.path()).read_bytes()
            assert data.startswith(b"\xef\xbb\xbf")
            assert [ln.split(",")[0] for ln in data.decode("utf-8-sig").splitlines()[1:]] == [
                "h-4",
                "h-3",
            ]
            # an agent's page
            page.goto(d.url + "history/agents/A1")
            page.wait_for_selector("body[data-ready=agent]", timeout=5000)
            assert page.inner_text("#agent-mean") == f"{(filled['score']['h-1'] + 95) / 2:g}"
            top = page.query_selector("#top-violations li.topv")
            assert top is not None and top.get_attribute("data-rule") == "OPEN-NAME"
            assert top.get_attribute("data-count") == "2"
            assert page.get_attribute("#review-counts", "data-reviews") == "1"
            assert (
                len(page.query_selector_all('#agent-score-chart circle.pt[data-series="A1"]')) == 2
            )
            page.screenshot(path=str(ARTIFACTS / "history-agent.png"), full_page=True)
            # a stored call, at an utterance
            page.goto(d.url + "history/calls/h-5#u2")
            page.wait_for_selector("body[data-ready=call]", timeout=5000)
            assert "不能退" in page.inner_text("#u2") and "target" in (
                page.get_attribute("#u2", "class") or ""
            )
            row = page.query_selector(f'#verdicts tr[data-rule="{UNCERTAIN_RULE}"]')
            assert row is not None and row.get_attribute("data-verdict") == "uncertain"
            assert page.query_selector('#findings .finding[data-rule="BAN-POLICY"]') is not None
            # ▶ the evidence from the redacted recording: the page's session fetches the clip
            player = page.query_selector(
                '#findings .finding[data-rule="BAN-POLICY"] .ev[data-utt-index="2"] .play audio'
            )
            assert player is not None
            src = player.get_attribute("src") or ""
            assert src.startswith("/api/calls/h-5/audio?start=")
            clip = page.request.get(d.url.rstrip("/") + src)
            assert clip.status == 200 and clip.body()[:4] == b"RIFF"
            page.screenshot(path=str(ARTIFACTS / "history-call.png"), full_page=True)
    finally:
        stop(d)


def test_scope_places_a_call_without_team_by_its_agent(filled: dict[str, Any]) -> None:
    """A supervisor sees a team-less call when its agent belongs to one of its teams (the
    users file), as the live page decides; no team and no such agent: nobody scoped."""
    with Store(filled["url"], readonly=True) as store:
        sup = Scope(teams=frozenset({"west"}), team_agents=frozenset({"C1"}))
        assert ids(list_calls(store, CallFilter(), sup)) == ["h-5"]
        assert ids(list_calls(store, CallFilter(), Scope(teams=frozenset({"west"})))) == []
        both = Scope(teams=frozenset({"north"}), team_agents=frozenset({"C1", "B1"}))
        # B1's calls carry team east: their own team decides, not the agent's
        assert ids(list_calls(store, CallFilter(), both)) == ["h-5", "h-2", "h-1"]
        assert call_detail(store, "h-3", both, text=True) is None
        t = score_trend(store, TrendQuery(group="team"), sup)
        assert [s["key"] for s in t["series"]] == ["—"]


def test_search_scope_is_exact_beyond_a_page(store_url: str) -> None:
    """A supervisor's search in the history: its two teams' calls (more than a page each)
    and the team-less calls of their agents, counted exactly and paged without a gap or a
    repeat (the scope is in the search's SQL, as in the call list); a third team's calls
    never, even where they are the newest 1,000 hits; an agent its own calls only."""
    with Store(store_url) as store:
        rows = []
        for i in range(90):
            team = ("north", "south", "west")[i % 3] if i % 10 else None
            agent = {"north": "N1", "south": "S1", "west": "W1", None: ("N1", "W1")[i % 20 // 10]}
            rows.append((f"q-{i:04d}", agent[team], team, float(i)))
        # the newest 1,000 matching calls are another team's (a scope applied after the
        # search's first 1,000 hits would find none of the supervisor's)
        rows += [(f"q-{i:04d}", "W1", "west", float(i)) for i in range(90, 1090)]
        store.executemany(
            "INSERT INTO calls (call_id, audio_sha256, settings_hash, call, updated_at, "
            "agent_id, team, started_epoch) VALUES (?, 'a', 's', '{}', 0, ?, ?, ?)",
            rows,
        )
        store.executemany(
            "INSERT INTO utterances (call_id, idx, channel, role, start_s, end_s, text) "
            "VALUES (?, 0, 0, 'customer', 0, 1, '我要投诉')",
            [(r[0],) for r in rows],
        )
        store.commit()
        sync_index(store, wait=True)
        sup = Scope(teams=frozenset({"north", "south"}), team_agents=frozenset({"N1", "S1"}))
        want = {
            cid
            for cid, agent, team, _ in rows
            if team in ("north", "south") or (team is None and agent == "N1")
        }
        got: list[str] = []
        for page in range(1, 6):
            body = search_calls(store, "投诉", CallFilter(page=page, per_page=10), sup, text=True)
            assert body["total"] == len(want) == 59 and body["pages"] == 6
            got += [h["call_id"] for h in body["hits"]]
        last = search_calls(store, "投诉", CallFilter(page=6, per_page=10), sup, text=True)
        got += [h["call_id"] for h in last["hits"]]
        assert len(got) == len(set(got)) and set(got) == want
        agent = search_calls(
            store, "投诉", CallFilter(per_page=100), Scope(agent_id="W1"), text=True
        )
        w1 = {cid for cid, a, _, _ in rows if a == "W1"}
        assert agent["total"] == len(w1) == 1031 and len(agent["hits"]) == 100
        assert {h["call_id"] for h in agent["hits"]} <= w1


def test_evidence_clips_of_stored_calls(
    hist: Dashboard, filled: dict[str, Any], tmp_path: Path
) -> None:
    """▶ on a stored call: the evidence span cut from its redacted recording (the store's
    ``recordings`` row), as the live route cuts it; never an unredacted one, never for a
    viewer or a call out of scope; each clip heard is audited with its span."""
    import numpy as np
    import soundfile as sf

    from qa_pipeline.store.recordings import put_recording

    wav = tmp_path / "h-5.wav"
    sf.write(str(wav), np.zeros(8000 * 30, dtype="int16"), 8000, subtype="PCM_16")
    with Store(filled["url"]) as store:
        put_recording(
            store, "h-5", wav, sample_rate=8000, channels=1, duration_s=30.0, redacted=True
        )
        put_recording(
            store, "h-2", wav, sample_rate=8000, channels=1, duration_s=30.0, redacted=False
        )
    qa = hist.session("qa")
    status, d = hist.get("/api/history/calls/h-5", cookie=qa)
    assert status == 200 and d["audio"] is True
    assert hist.get("/api/history/calls/h-1", cookie=qa)[1]["audio"] is False
    status, headers, body = fetch(hist, "/api/calls/h-5/audio?start=10.94&end=16.44", Cookie=qa)
    assert status == 200 and headers["Content-Type"] == "audio/wav" and body[:4] == b"RIFF"
    info = sf.info(io.BytesIO(body))
    assert abs(info.duration - (16.44 - 10.94 + 1.0)) < 0.01  # 0.5 s of context each side
    agent_a = hist.session("agent-a")
    for path, cookie, want in (
        ("/api/calls/h-5/audio?start=1&end=2", agent_a, 404),  # C1's call
        ("/api/calls/h-2/audio?start=1&end=2", agent_a, 409),  # not redacted
        ("/api/calls/h-1/audio?start=1&end=2", qa, 404),  # none kept
        ("/api/calls/h-5/audio?start=40&end=41", qa, 400),  # past the end
        ("/api/history/calls/h-5/audio?start=1&end=2", qa, 404),  # one clip route only
    ):
        assert fetch(hist, path, Cookie=cookie)[0] == want, path
    assert (
        fetch(
            hist,
            "/api/calls/h-5/audio?start=1&end=2",
            Authorization=f"Bearer {VIEWER_TOKEN}",
        )[0]
        == 403
    )
    heard = [r for r in read_audit(tmp_path / "audit.jsonl") if r["route"].endswith("/audio")]
    assert [(r["user"], r["call_id"], r["start"], r["end"]) for r in heard] == [
        ("qa", "h-5", "10.94", "16.44")
    ]


def test_trends_count_what_the_store_says_counts(filled: dict[str, Any]) -> None:
    """The trends, summed in the database, are what Store.current_verdicts (failed
    verdicts of current, complete results) and Store.current_results (current scores)
    say counts, bucket by bucket, in any scope and time zone."""
    from collections import Counter
    from datetime import timedelta, timezone

    from qa_pipeline.dashboard.history import bucket_start, violation_trend

    with Store(filled["url"], readonly=True) as store:
        for scope, tz, bucket in (
            (Scope(), timezone(timedelta(hours=8)), "day"),
            (Scope(teams=frozenset({"north"}), team_agents=frozenset({"C1"})), UTC, "week"),
            (Scope(agent_id="B1"), timezone(timedelta(hours=-10)), "day"),
        ):
            want: Counter[tuple[str, str]] = Counter(
                (r["rule_id"], bucket_start(r["started_epoch"], bucket, tz))
                for r in store.current_verdicts()
                if r["verdict"] == "failed" and scope.sees(r)
            )
            got = violation_trend(store, TrendQuery(bucket=bucket, tz=tz), scope)
            counted = Counter(
                {(s["key"], p["bucket"]): p["count"] for s in got["series"] for p in s["points"]}
            )
            assert counted == want and sum(want.values()) > 0, (scope, bucket)
            # the score trend: Store.current_results' scores, averaged per agent and bucket
            sums: dict[tuple[str, str], list[float]] = {}
            for r in store.current_results():
                if scope.sees(r):
                    b = bucket_start(r["started_epoch"], bucket, tz)
                    sums.setdefault((r["agent_id"], b), []).append(r["score"])
            means = {k: (round(sum(v) / len(v), 2), len(v)) for k, v in sums.items()}
            trend = score_trend(store, TrendQuery(bucket=bucket, tz=tz), scope)
            got_means = {
                (s["key"], p["bucket"]): (p["mean"], p["calls"])
                for s in trend["series"]
                for p in s["points"]
            }
            assert got_means == means and means, (scope, bucket)


def sq(query: str) -> str:
    """The search route with ``query`` URL-encoded."""
    return "/api/history/search?" + urlencode(parse_qsl(query, keep_blank_values=True))


def test_search_with_filters_and_scope(hist: Dashboard, tmp_path: Path) -> None:
    """Full-text search from the dashboard: every term said, the list's filters, the
    principal's scope; each hit links to the call at its matching utterance."""
    status, body = hist.get(sq("q=不能退"), TOKEN)
    assert status == 200 and sorted(h["call_id"] for h in body["hits"]) == ["h-2", "h-5"]
    hit = next(h for h in body["hits"] if h["call_id"] == "h-5")
    assert hit["utterance_index"] == 2 and hit["link"] == "/history/calls/h-5#u2"
    assert "不能退" in hit["snippet"].replace("【", "").replace("】", "")
    for query, want in (
        ("q=不能退&agent=A1", ["h-2"]),
        ("q=不能退&since=2026-11-27", ["h-5"]),
        ("q=不能退&score_max=60", ["h-5"]),  # h-2 counts its reviewed 95
        ("q=不能退 再见", ["h-2", "h-5"]),
        ("q=退款&rule=BAN-POLICY", ["h-2", "h-5"]),
        ("q=不能退&rule=OPEN-GREET&verdict=uncertain", ["h-5"]),
        ("q=没有这句话", []),
    ):
        status, body = hist.get(sq(query), TOKEN)
        assert status == 200 and sorted(h["call_id"] for h in body["hits"]) == want, query
        assert body["total"] == len(want), query
    assert hist.get(sq("q="), TOKEN)[0] == 400
    # qa-pipeline search prints /calls/<id>#u<idx>: the dashboard sends it to the history page
    status, headers, _ = fetch(hist, "/calls/h-5")
    assert status in (302, 303) and headers["Location"] == "/history/calls/h-5"
    status, body = hist.get(sq("q=不能退"), cookie=hist.session("agent-a"))
    assert [h["call_id"] for h in body["hits"]] == ["h-2"] and body["total"] == 1
    status, body = hist.get(sq("q=不能退"), cookie=hist.session("sup-east"))
    assert body["hits"] == [] and body["total"] == 0
    status, body = hist.get(sq("q=不能退"), VIEWER_TOKEN)
    assert len(body["hits"]) == 2 and all(h["snippet"] is None for h in body["hits"])
    rows = [r for r in read_audit(tmp_path / "audit.jsonl") if r["route"].endswith("/search")]
    assert ("agent-a", "h-2") in {(r["user"], r["call_id"]) for r in rows}
