"""Evidence clips: ``GET /api/calls/<id>/audio?start=&end=`` cut from the call's redacted
recording, found through the store's ``recordings`` rows (SQLite and PostgreSQL).

Two calls of the generated "stonewalling" scenario, agent A1's and agent B1's, each with a
recording of its own (noise at a level per call, so a clip says which file it came from).
Checked: who may hear which call, the clip's bounds (padding, the recording's ends, the
cap, bad values named), that only a redacted recording is played, the audit log."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from dashboard_helpers import TOKEN, VIEWER_TOKEN, Dashboard, start_test_dashboard
from generated_calls import call_events, generated_call

from qa_pipeline.dashboard.recordings import MAX_CLIP_S, PAD_S, store_recordings
from qa_pipeline.store import Store
from qa_pipeline.store.recordings import put_recording

RATE = 8000
CALLS = {"c-a": "A1", "c-b": "B1"}


def _recording(path: Path, seconds: float, level: float) -> np.ndarray:
    rng = np.random.default_rng(int(level * 1000))
    data = np.clip(rng.standard_normal((int(seconds * RATE), 2)) * level, -1, 1)
    sf.write(path, data, RATE, subtype="PCM_16")
    return sf.read(path, dtype="int16", always_2d=True)[0]


class Clips:
    def __init__(self, d: Dashboard, samples: dict[str, np.ndarray], store: str) -> None:
        self.d = d
        self.samples = samples
        self.store = store

    def get(self, path: str, **cred: str) -> tuple[int, str, bytes]:
        h = {}
        if "token" in cred:
            h["Authorization"] = f"Bearer {cred['token']}"
        if "cookie" in cred:
            h["Cookie"] = cred["cookie"]
        req = urllib.request.Request(self.d.url.rstrip("/") + path, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read()


@pytest.fixture
def clips(tmp_path: Path, store_url: str) -> Iterator[Clips]:
    samples = {}
    with Store(store_url) as db:
        for i, (cid, agent) in enumerate(CALLS.items()):
            transcript, _ = generated_call("stonewalling", cid, agent_id=agent)
            wav = tmp_path / f"{cid}.wav"
            samples[cid] = _recording(wav, transcript.duration, 0.05 * (i + 1))
            put_recording(
                db, cid, wav, sample_rate=RATE, channels=2, duration_s=transcript.duration,
                redacted=True,
            )  # fmt: skip
    d = start_test_dashboard(tmp_path, recordings=store_recordings(store_url))
    for cid, agent in CALLS.items():
        transcript, _ = generated_call("stonewalling", cid, agent_id=agent)
        d.sink.call_started(transcript.call)
        for e in call_events("stonewalling", cid, agent_id=agent):
            d.sink.emit(e)
    try:
        yield Clips(d, samples, store_url)
    finally:
        d.stop()


def _wav(body: bytes) -> np.ndarray:
    data, rate = sf.read(io.BytesIO(body), dtype="int16", always_2d=True)
    assert rate == RATE
    return data


def test_an_agent_hears_its_own_calls_only(clips: Clips) -> None:
    mine = clips.d.session("agent-a")
    status, ctype, body = clips.get("/api/calls/c-a/audio?start=10.94&end=16.44", cookie=mine)
    assert (status, ctype) == (200, "audio/wav")
    got = _wav(body)
    a, b = int((10.94 - PAD_S) * RATE), int(np.ceil((16.44 + PAD_S) * RATE))
    assert np.array_equal(got, clips.samples["c-a"][a:b])  # from this call's file
    # another agent's call: as for a call not kept (its existence is not told)
    status, _, body = clips.get("/api/calls/c-b/audio?start=10.94&end=16.44", cookie=mine)
    assert status == 404 and b"no such call" in body
    # the viewer (no transcript text) hears nothing; the supervisor of the team does
    status, _, body = clips.get("/api/calls/c-a/audio?start=1&end=2", token=VIEWER_TOKEN)
    assert status == 403 and b"may not hear" in body, body
    sup = clips.d.session("sup-east")
    assert clips.get("/api/calls/c-b/audio?start=1&end=2", cookie=sup)[0] == 200
    assert clips.get("/api/calls/c-a/audio?start=1&end=2", cookie=sup)[0] == 404
    assert clips.get("/api/calls/c-a/audio?start=1&end=2")[0] == 401


def test_clip_bounds(clips: Clips) -> None:
    rec = clips.samples["c-a"]
    total = len(rec) / RATE

    def clip(q: str) -> tuple[int, Any]:
        status, _, body = clips.get(f"/api/calls/c-a/audio?{q}", token=TOKEN)
        return status, _wav(body) if status == 200 else json.loads(body)["detail"]

    status, got = clip("start=0.2&end=1.0")  # the padding stops at the start
    assert status == 200 and np.array_equal(got, rec[: int(1.5 * RATE)])
    status, got = clip(f"start={total - 1:.2f}&end={total + 5:.2f}")  # and at the end
    assert status == 200 and np.array_equal(got, rec[int((total - 1 - PAD_S) * RATE) :])
    for q, why in [
        ("start=3", "start and end"),
        ("start=a&end=2", "numbers"),
        ("start=-1&end=2", "0 <= start < end"),
        ("start=5&end=4", "0 <= start < end"),
        ("start=nan&end=4", "0 <= start < end"),
        (f"start=0&end={MAX_CLIP_S}", "at most"),
        (f"start={total + 1:.2f}&end={total + 2:.2f}", "past the recording's end"),
    ]:
        status, detail = clip(q)
        assert status == 400 and why in detail, (q, detail)


def test_only_a_redacted_recording_is_played(clips: Clips, tmp_path: Path) -> None:
    with Store(clips.store) as db:  # the call's audio as scored: not redacted
        put_recording(
            db, "c-a", tmp_path / "c-a.wav", sample_rate=RATE, channels=2, duration_s=29.6,
            redacted=False,
        )  # fmt: skip
        db.execute("DELETE FROM recordings WHERE call_id = ?", ("c-b",))
        db.commit()
    status, _, body = clips.get("/api/calls/c-a/audio?start=1&end=2", token=TOKEN)
    assert status == 409 and b"not redacted" in body
    status, _, body = clips.get("/api/calls/c-b/audio?start=1&end=2", token=TOKEN)
    assert status == 404 and b"no recording" in body
    # the call's summary says whether a recording was kept (the page's play control)
    assert clips.d.state.detail("c-a")["call"]["audio"] is False  # type: ignore[index]


def test_clips_heard_are_audit_logged(clips: Clips, tmp_path: Path) -> None:
    assert clips.get("/api/calls/c-a/audio?start=1&end=2", cookie=clips.d.session("qa"))[0] == 200
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    heard = [x for x in lines if x.get("route") == "/api/calls/c-a/audio"]
    assert heard, lines
    assert {k: heard[-1][k] for k in ("user", "role", "call_id", "start", "end")} == {
        "user": "qa", "role": "qa", "call_id": "c-a", "start": "1", "end": "2",
    }  # fmt: skip


def test_a_store_behind_the_code_still_plays(clips: Clips) -> None:
    """A later migration not yet applied (a writer applies it at its next open): the
    recordings table is read as it is; the dashboard migrates nothing."""
    with Store(clips.store) as db:
        db.execute("DELETE FROM schema_migrations WHERE version = 2")  # "not applied yet"
        db.commit()
    assert clips.get("/api/calls/c-a/audio?start=1&end=2", token=TOKEN)[0] == 200
    with Store(clips.store, migrate=False) as db:
        versions = {r[0] for r in db.execute("SELECT version FROM schema_migrations").fetchall()}
    assert 2 not in versions and 350 in versions
