"""Retention of recordings: the purge's ``audio`` kind removes expired ``recordings`` rows
of the store together with their files (SQLite and PostgreSQL); a recording ages from its
call's start when the store knows it, else from when it was kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from qa_pipeline.purge import Removed, run_purge
from qa_pipeline.retention import RetentionConfig
from qa_pipeline.store import Store
from qa_pipeline.store.recordings import get_recording, put_recording

NOW = datetime.now(UTC)
DAY = 86400.0


def test_expired_recordings_go_with_their_files(store_url: str, tmp_path: Path) -> None:
    files = {}
    with Store(store_url) as db:
        # (call id, days since kept); "old_call" was kept lately but its call is old
        for cid, days in [("old", 120), ("young", 10), ("gone_file", 100), ("old_call", 1)]:
            f = files[cid] = tmp_path / f"{cid}.wav"
            f.write_bytes(b"RIFF")
            put_recording(
                db, cid, f, sample_rate=8000, channels=2, duration_s=3.0, redacted=True,
                created_at=NOW.timestamp() - days * DAY,
            )  # fmt: skip
        db.execute(
            "INSERT INTO calls (call_id, audio_sha256, settings_hash, call, updated_at, "
            "started_epoch) VALUES (?, ?, ?, ?, ?, ?)",
            ("old_call", "sha", "h", "{}", NOW.timestamp(), NOW.timestamp() - 200 * DAY),
        )
        db.commit()
    files["gone_file"].unlink()  # deleted by hand: the row still goes
    ret = RetentionConfig(audio=90, transcripts=None, scorecards=None)

    dry = run_purge(ret, store=store_url, now=NOW, dry_run=True)
    assert Removed("audio", "store", "recordings", 3) in dry.removed
    assert all(files[c].exists() for c in ("old", "young", "old_call"))

    report = run_purge(ret, store=store_url, now=NOW)
    assert not report.errors, report.errors
    assert Removed("audio", "store", "recordings", 3) in report.removed
    assert {c for c, f in files.items() if f.exists()} == {"young"}
    with Store(store_url) as db:
        left = {r[0] for r in db.execute("SELECT call_id FROM recordings").fetchall()}
        assert left == {"young"}
        young = get_recording(db, "young")
        assert young is not None and young.path == str(files["young"].absolute())
    again = run_purge(ret, store=store_url, now=NOW + timedelta(seconds=1))
    assert Removed("audio", "store", "recordings", 0) in again.removed
