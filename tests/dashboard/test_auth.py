"""Who may see what: users with roles and teams, sessions, API keys in headers only, every
data route and the event stream filtered per principal (two teams), the transcript audit log,
and the ``qa-pipeline dashboard users`` / ``audit`` commands.

Four calls of the generated "stonewalling" scenario (a critical finding, so an alert, in
each): ``c-north`` (agent A1, team north by the users file), ``c-east`` (agent B1, team east
by the users file), ``c-meta`` (agent X9, no user, team east by its call metadata) and
``c-none`` (agent Z0, no team at all)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from dashboard_helpers import PASSWORD, TOKEN, VIEWER_TOKEN, Dashboard, write_users
from generated_calls import call_events, generated_call
from typer.testing import CliRunner

from qa_pipeline.dashboard import DashboardState, start_dashboard
from qa_pipeline.dashboard.audit import read_audit
from qa_pipeline.dashboard.auth import Sessions
from qa_pipeline.dashboard.cli import dashboard_app
from qa_pipeline.dashboard.users import load_users, verify_password

CALLS = {
    "c-north": ("A1", ()),
    "c-east": ("B1", ()),
    "c-meta": ("X9", (("team", "east"),)),
    "c-none": ("Z0", ()),
}
ALL = set(CALLS)
#: who sees which calls, and whether with transcript text
SEES: dict[str, tuple[set[str], bool]] = {
    "admin": (ALL, True),
    "qa": (ALL, True),
    "viewer": (ALL, False),
    "sup-north": ({"c-north"}, True),
    "sup-east": ({"c-east", "c-meta"}, True),
    "agent-a": ({"c-north"}, True),
    "agent-b": ({"c-east"}, True),
}
#: an utterance of the call (the agent's): transcript text
TEXT = "超过七天就不能退了"


def feed(d: Dashboard, calls: dict[str, tuple[str, tuple[tuple[str, str], ...]]]) -> None:
    """Each call as serve feeds it: call started (agent id, metadata), then its events."""
    for cid, (agent, meta) in calls.items():
        transcript, _ = generated_call("stonewalling", cid, agent_id=agent, metadata=meta)
        d.sink.call_started(transcript.call)
        for e in call_events("stonewalling", cid, agent_id=agent, metadata=meta):
            d.sink.emit(e)


def credentials(d: Dashboard, who: str) -> dict[str, Any]:
    if who == "api-key":
        return {"token": TOKEN}
    if who == "viewer-key":
        return {"X-API-Key": VIEWER_TOKEN}
    return {"cookie": d.session(who)}


def mentioned(body: Any) -> set[str]:
    text = json.dumps(body, ensure_ascii=False)
    return {cid for cid in CALLS if cid in text}


@pytest.mark.parametrize("who", [*SEES, "api-key", "viewer-key"])
def test_each_role_sees_its_calls_on_every_route(dashboard: Dashboard, who: str) -> None:
    feed(dashboard, CALLS)
    sees, text = SEES.get(who, (ALL, who == "api-key"))
    cred = credentials(dashboard, who)
    status, snap = dashboard.get("/api/state", **cred)
    assert status == 200
    assert {c["call_id"] for c in snap["calls"]} == sees
    assert {a["call_id"] for a in snap["alerts"]} == sees
    assert set(snap["details"]) == sees
    assert mentioned(snap) == sees  # no other call's id anywhere in it
    # the per-agent table and the chart count only the calls seen
    agents = {a["agent_id"] for a in snap["stats"]["agents"]}
    assert agents == {CALLS[c][0] for c in sees}
    per_call = sum(
        1
        for e in call_events("stonewalling", "x")
        if e.kind.value == "finding" and e.payload.get("rule_id") == "BAN-POLICY"
    )
    assert snap["stats"]["violations"]["day"]["BAN-POLICY"] == per_call * len(sees)
    assert (TEXT in json.dumps(snap, ensure_ascii=False)) is text
    for cid in CALLS:
        status, detail = dashboard.get(f"/api/calls/{cid}", **cred)
        if cid in sees:
            assert status == 200 and detail["call"]["call_id"] == cid
            assert (TEXT in json.dumps(detail, ensure_ascii=False)) is text
            utt = detail["utterances"][0]
            assert ("text" in utt) is text and ("raw_text" in utt) is text
            for f in detail["findings"]:  # no finding text quoting the call for a viewer
                assert text or not any("matched" in e or "text" in e for e in f["evidence"])
        else:  # as if it did not exist
            assert status == 404 and cid not in json.dumps(detail)


class Stream:
    """An open ``/api/events`` stream, read in a thread: (event name, data) pairs."""

    def __init__(self, d: Dashboard, headers: dict[str, str]) -> None:
        u = urlsplit(d.url)
        self.conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
        self.conn.request("GET", "/api/events", headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.raw: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name = ""
        while True:
            try:
                line = self.resp.fp.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            s = line.decode().rstrip("\n")
            if s.startswith("event: "):
                name = s[7:]
            elif s.startswith("data: "):
                self.raw.append(s[6:])
                self.got.append((name, json.loads(s[6:])))

    def close(self) -> None:
        self.conn.close()


def headers_of(d: Dashboard, who: str) -> dict[str, str]:
    if who == "api-key":
        return {"Authorization": f"Bearer {TOKEN}"}
    return {"Cookie": d.session(who)}


def test_event_stream_carries_only_the_calls_of_the_principal(dashboard: Dashboard) -> None:
    """Streams opened before the calls: every pushed message of another team's call is held
    back, and the statistics pushed to a scoped user count its calls only."""
    watchers = ["sup-north", "sup-east", "agent-a", "agent-b", "viewer", "api-key"]
    streams = {w: Stream(dashboard, headers_of(dashboard, w)) for w in watchers}
    try:
        deadline = time.monotonic() + 5
        while not all(s.got for s in streams.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(s.got and s.got[0][0] == "snapshot" for s in streams.values())
        feed(dashboard, CALLS)
        n_all = len(call_events("stonewalling", "x")) * len(CALLS)
        deadline = time.monotonic() + 10
        while len(streams["api-key"].got) < n_all and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the others have had the same time
        for w, s in streams.items():
            sees, text = SEES.get(w, (ALL, True))
            updates = [m for name, m in s.got if name == "update"]
            assert updates, w
            seen = {m["call"]["call_id"] for m in updates}
            assert seen == sees, (w, seen)
            assert mentioned(s.raw) == sees, w
            assert (TEXT in "".join(s.raw)) is text, w
            alerts = {m["alert"]["call_id"] for m in updates if "alert" in m}
            assert alerts == sees, w
            last = [m["stats"] for m in updates if "stats" in m][-1]
            assert {a["agent_id"] for a in last["agents"]} == {CALLS[c][0] for c in sees}, w
    finally:
        for s in streams.values():
            s.close()


def test_transcript_openings_are_audited(dashboard: Dashboard, tmp_path: Path) -> None:
    feed(dashboard, {"c-north": CALLS["c-north"], "c-east": CALLS["c-east"]})
    log = tmp_path / "audit.jsonl"
    assert not log.exists()  # nothing opened yet: no file
    qa = dashboard.session("qa")
    assert dashboard.get("/api/calls/c-north", cookie=qa)[0] == 200
    # not audited: a viewer (no text), a call the user may not see, no login at all
    assert dashboard.get("/api/calls/c-north", cookie=dashboard.session("viewer"))[0] == 200
    assert dashboard.get("/api/calls/c-north", cookie=dashboard.session("sup-east"))[0] == 404
    assert dashboard.get("/api/calls/c-north")[0] == 401
    recs = list(read_audit(log))
    assert len(recs) == 1
    r = recs[0]
    assert (r["user"], r["role"], r["call_id"]) == ("qa", "qa", "c-north")
    assert r["route"] == "/api/calls/c-north" and r["client"] == "127.0.0.1"
    assert time.time() - time.mktime(time.strptime(r["time"][:19], "%Y-%m-%dT%H:%M:%S")) < 86400
    # a snapshot is an opening of every transcript in it: one record per call
    assert dashboard.get("/api/state", cookie=dashboard.session("sup-north"))[0] == 200
    assert dashboard.get("/api/state", TOKEN)[0] == 200
    assert dashboard.get("/api/state", VIEWER_TOKEN)[0] == 200  # no text: no record
    recs = list(read_audit(log))
    assert sorted((r["user"], r["call_id"], r["route"]) for r in recs[1:]) == [
        ("api-key", "c-east", "/api/state"),
        ("api-key", "c-north", "/api/state"),
        ("sup-north", "c-north", "/api/state"),
    ]
    # the stream: the snapshot's calls, then a new call once, when its text is first pushed
    s = Stream(dashboard, {"Cookie": dashboard.session("agent-b")})
    try:
        deadline = time.monotonic() + 5
        while not s.got and time.monotonic() < deadline:
            time.sleep(0.02)
        feed(dashboard, {"c-meta": CALLS["c-meta"], "c-east2": ("B1", ())})
        deadline = time.monotonic() + 5
        while (
            not any(
                m.get("call", {}).get("call_id") == "c-east2" and m.get("type") == "scorecard"
                for _, m in s.got
            )
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    finally:
        s.close()
    mine = [(r["call_id"], r["route"]) for r in read_audit(log, user="agent-b")]
    assert mine == [("c-east", "/api/events"), ("c-east2", "/api/events")]
    # the command reads it, filtered
    r = CliRunner().invoke(dashboard_app, ["audit", "--audit-log", str(log), "--call", "c-north"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 3 and all("\tc-north\t" in ln for ln in lines)
    r = CliRunner().invoke(
        dashboard_app, ["audit", "-f", str(log), "--user", "qa", "--json", "--since", "2000-01-01"]
    )
    assert r.exit_code == 0 and json.loads(r.output)["call_id"] == "c-north"
    assert log.stat().st_mode & 0o777 == 0o600


def test_users_commands_and_a_removed_user(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    run = CliRunner().invoke
    r = run(
        dashboard_app,
        ["users", "add", "zhao", "--role", "supervisor", "--team", "north", "-u", str(users)],
        input="s3cret-password-1\n",
    )
    assert r.exit_code == 0, r.output
    r = run(
        dashboard_app,
        [
            "users",
            "add",
            "li",
            "--role",
            "agent",
            "-t",
            "north",
            "--agent-id",
            "A1",
            "-u",
            str(users),
        ],
        input="another-password\n",
    )
    assert r.exit_code == 0, r.output
    # refused: an agent without an agent id, a short password, a taken name, a bad role
    for args, pw in (
        (["users", "add", "x", "--role", "agent"], "long-enough-pw"),
        (["users", "add", "y", "--role", "qa"], "short"),
        (["users", "add", "li", "--role", "qa"], "long-enough-pw"),
        (["users", "add", "z", "--role", "boss"], "long-enough-pw"),
    ):
        r = run(dashboard_app, [*args, "-u", str(users)], input=pw + "\n")
        assert r.exit_code == 2 and r.output.startswith("error: "), (args, r.output)
    assert "s3cret" not in users.read_text() and users.stat().st_mode & 0o777 == 0o600
    stored = {u.name: u for u in load_users(users)}
    assert set(stored) == {"zhao", "li"}
    assert stored["zhao"].password_hash.startswith("$argon2id$")
    assert verify_password(stored["zhao"].password_hash, "s3cret-password-1")
    assert not verify_password(stored["zhao"].password_hash, "s3cret-password-2")
    r = run(dashboard_app, ["users", "list", "-u", str(users)])
    assert r.exit_code == 0 and "zhao\tsupervisor\tnorth" in r.output and "li\tagent" in r.output
    assert "argon2" not in r.output
    r = run(dashboard_app, ["users", "passwd", "zhao", "-u", str(users)], input="new-password-22\n")
    assert r.exit_code == 0, r.output
    state = DashboardState()
    server = start_dashboard(
        state, "127.0.0.1", 0, users=users, audit_log=tmp_path / "a.jsonl", secure_cookie=True
    )
    try:
        d = Dashboard(server, state)
        assert d.login("zhao", "s3cret-password-1") == (303, "")  # the old password
        status, cookie = d.login("zhao", "new-password-22")
        assert status == 303 and "; Secure" in cookie
        zhao = cookie.split(";")[0]
        li = d.session("li", "another-password")
        assert d.get("/api/me", cookie=zhao)[1]["teams"] == ["north"]
        # no API key configured: a Bearer header opens nothing
        assert d.get("/api/state", TOKEN)[0] == 401
        r = run(dashboard_app, ["users", "remove", "zhao", "-u", str(users)])
        assert r.exit_code == 0, r.output
        time.sleep(1.1)  # the server looks at the file at most once a second
        assert d.get("/api/state", cookie=zhao)[0] == 401
        assert d.get("/api/state", cookie=li)[0] == 200
        assert d.login("zhao", "new-password-22") == (303, "")
    finally:
        state.close()
        server.stop()


def test_user_list_for_admins_only(dashboard: Dashboard) -> None:
    status, body = dashboard.get("/api/users", cookie=dashboard.session("admin"))
    assert status == 200 and {u["name"] for u in body["users"]} == set(SEES)
    assert "argon2" not in json.dumps(body) and "password_hash" not in json.dumps(body)
    assert dashboard.get("/api/users", TOKEN)[0] == 200  # the machines' key reads as admin
    for who in ("qa", "sup-north", "agent-a", "viewer"):
        assert dashboard.get("/api/users", cookie=dashboard.session(who))[0] == 403


def test_sessions_expire() -> None:
    now = [0.0]
    s = Sessions(idle_s=10, max_age_s=30, max_sessions=2, clock=lambda: now[0])
    a = s.create("a")
    assert s.lookup(a) == "a" and s.lookup("nope") is None and s.lookup(None) is None
    for t in (9, 18, 27):  # used within the idle time: kept ...
        now[0] = t
        assert s.lookup(a) == "a"
    now[0] = 31  # ... until its absolute age
    assert s.lookup(a) is None
    b = s.create("b")
    now[0] = 42
    assert s.lookup(b) is None  # idle too long
    c, d, e = s.create("c"), s.create("d"), s.create("e")
    assert s.lookup(c) is None and s.lookup(d) == "d" and s.lookup(e) == "e"  # at most 2
    s.end_user("d")
    assert s.lookup(d) is None and s.lookup(e) == "e"
    s.end(e)
    assert s.lookup(e) is None


def test_users_or_a_key_is_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa_pipeline.dashboard import DashboardError

    monkeypatch.delenv("QA_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("QA_DASHBOARD_USERS", raising=False)
    with pytest.raises(DashboardError, match="QA_DASHBOARD_USERS"):
        start_dashboard(DashboardState(), "127.0.0.1", 0)
    monkeypatch.setenv("QA_DASHBOARD_USERS", str(write_users(tmp_path / "u.yaml", ("qa",))))
    state = DashboardState()
    server = start_dashboard(state, "127.0.0.1", 0)
    try:
        d = Dashboard(server, state)
        assert d.get("/api/me", cookie=d.session("qa", PASSWORD))[1]["role"] == "qa"
    finally:
        server.stop()
    from qa_pipeline.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("users:\n  - {name: x, role: boss}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: users\[0\].role"):
        start_dashboard(DashboardState(), "127.0.0.1", 0, users=bad)
    # a "billion laughs" file is refused while parsing, as a config file would be
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bad.write_text("\n".join(laughs) + "\nusers: *a9\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        start_dashboard(DashboardState(), "127.0.0.1", 0, users=bad)


def test_a_call_that_becomes_visible_midway_arrives_whole(dashboard: Dashboard) -> None:
    """As from Kafka (no call-started message): the agent id only comes with the transcript
    event at the end. Until then no supervisor sees the call; then the north supervisor's
    stream gets what it held back (utterances, findings), the east one's still nothing."""
    north = Stream(dashboard, {"Cookie": dashboard.session("sup-north")})
    east = Stream(dashboard, {"Cookie": dashboard.session("sup-east")})
    try:
        deadline = time.monotonic() + 5
        while not (north.got and east.got) and time.monotonic() < deadline:
            time.sleep(0.02)
        events = call_events("stonewalling", "c-kafka", agent_id="A1")
        for e in events[:-1]:  # all but the transcript
            dashboard.sink.emit(e)
        time.sleep(0.5)
        assert [n for n, _ in north.got] == ["snapshot"] and "c-kafka" not in "".join(north.raw)
        dashboard.sink.emit(events[-1])
        deadline = time.monotonic() + 5
        while len(north.got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        updates = [m for n, m in north.got if n == "update"]
        n_utts = sum(1 for e in events if e.kind.value == "utterance")
        assert len([m for m in updates if "utterance" in m]) == n_utts
        assert any(m.get("finding", {}).get("rule_id") == "BAN-POLICY" for m in updates)
        assert TEXT in "".join(north.raw)
        assert "c-kafka" not in "".join(east.raw)
    finally:
        north.close()
        east.close()


def test_audit_log_survives_rotation(tmp_path: Path) -> None:
    from qa_pipeline.dashboard.audit import AuditError, AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    assert log.record(user="u", role="qa", call_ids=["a", "b"], route="/r", client=None) == 2
    (tmp_path / "audit.jsonl").rename(tmp_path / "audit.jsonl.1")
    log.record(user="u", role="qa", call_ids=["c"], route="/r", client=None)
    log.close()
    assert [r["call_id"] for r in read_audit(tmp_path / "audit.jsonl.1")] == ["a", "b"]
    assert [r["call_id"] for r in read_audit(tmp_path / "audit.jsonl")] == ["c"]
    with pytest.raises(AuditError):
        AuditLog(tmp_path / "no-such-dir" / "audit.jsonl")
