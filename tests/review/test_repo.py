"""The queue, reviews, appeals and their versions in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from qa_pipeline.messages import Verdict
from qa_pipeline.review import Action, Decision, QueueState, Reason, ReviewError, repo
from qa_pipeline.rules import RulePack, load_pack, score_transcript
from qa_pipeline.store import Store, open_store, result_row
from qa_pipeline.testing import transcript

from .conftest import call_a, call_clean, store_call


def reviewed(db: Store) -> dict[str, tuple[object, ...]]:
    rows = db.execute(
        "SELECT call_id, run_id, version, score, grade, reviewer FROM call_reviews"
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_queue_scan_and_states(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack)
    store_call(db, call_clean("B1"), pack)
    assert repo.scan(db, below=None) == ["A1"]  # uncertain verdict; B1 is clean
    assert repo.scan(db, below=None) == []  # queued once
    [item] = repo.queue(db)
    assert (item.call_id, item.run_id, item.state) == ("A1", "active-1", QueueState.OPEN)
    assert item.reasons == (Reason.UNCERTAIN,) and item.pending_rules == ("BAN-POLICY",)
    assert item.machine_score == 91.0
    # a threshold above a clean call's score does not queue it (100 is not below 100)
    assert repo.scan(db, below=100) == []
    item = repo.claim(db, "A1", "质检员王")
    assert (item.state, item.assignee) == (QueueState.IN_REVIEW, "质检员王")
    with pytest.raises(ReviewError, match="B1 is not in the review queue"):
        repo.claim(db, "B1", "x")


def test_low_score_enters(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack)
    assert repo.scan(db, below=95) == ["A1"]
    assert repo.queue(db)[0].reasons == (Reason.UNCERTAIN, Reason.LOW_SCORE)


def test_review_versions_and_reviewed_score(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack)
    repo.scan(db, below=None)
    assert reviewed(db) == {}
    v1 = repo.review(
        db,
        pack,
        "A1",
        "质检员王",
        [
            Decision("BAN-POLICY", Action.CONFIRM, comment="确实说了公司规定"),
            Decision("NO-PHONE", Action.OVERTURN, Verdict.PASSED, "客户要求核对号码"),
        ],
    )
    assert (v1.version, v1.kind, v1.score, v1.grade, v1.failed) == (
        1,
        "review",
        76.0,
        "不满意",
        True,
    )
    assert v1.verdicts_before["BAN-POLICY"].verdict is Verdict.UNCERTAIN
    assert v1.verdicts_after["BAN-POLICY"].verdict is Verdict.FAILED
    assert "客户要求核对号码" in v1.why
    assert repo.queue_item(db, "A1").state is QueueState.DONE  # type: ignore[union-attr]
    assert reviewed(db) == {"A1": ("active-1", 1, 76.0, "不满意", "质检员王")}
    # a second review changes its mind: a new version, the first kept as it was
    v2 = repo.review(
        db,
        pack,
        "A1",
        "组长李",
        [Decision("BAN-POLICY", Action.OVERTURN, Verdict.PASSED, "复听：是客户说的")],
    )
    assert (v2.version, v2.score, v2.grade, v2.failed) == (2, 96.0, "非常满意", False)
    assert v2.verdicts_before["BAN-POLICY"].verdict is Verdict.FAILED
    hist = repo.history(db, "A1")
    assert [(h.version, h.actor, h.score) for h in hist] == [
        (1, "质检员王", 76.0),
        (2, "组长李", 96.0),
    ]
    assert [
        (d.rule_id, d.action, d.verdict_before, d.verdict_after) for d in hist[0].decisions
    ] == [
        ("BAN-POLICY", Action.CONFIRM, Verdict.UNCERTAIN, Verdict.FAILED),
        ("NO-PHONE", Action.OVERTURN, Verdict.FAILED, Verdict.PASSED),
    ]
    assert hist[0].recorded_at <= hist[1].recorded_at
    assert reviewed(db) == {"A1": ("active-1", 2, 96.0, "非常满意", "组长李")}


def test_appeal_enters_the_queue_and_a_review_resolves_it(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack)
    with pytest.raises(ReviewError, match="needs a reason"):
        repo.appeal(db, pack, "A1", "A007", ["NO-PHONE"], " ")
    with pytest.raises(ReviewError, match="GREET is passed"):
        repo.appeal(db, pack, "A1", "A007", ["GREET"], "我问候了")
    v = repo.appeal(db, pack, "A1", "A007", ["NO-PHONE", "BAN-N"], "客户要求我复述号码")
    assert (v.version, v.kind, v.actor, v.score) == (1, "appeal", "A007", 91.0)
    assert v.verdicts_after == v.verdicts_before
    assert reviewed(db) == {}  # an appeal is not a reviewed score
    item = repo.queue_item(db, "A1")
    assert item is not None and item.reasons == (Reason.APPEAL,)
    assert item.state is QueueState.OPEN and item.pending_rules == ("NO-PHONE", "BAN-N")
    repo.review(
        db,
        pack,
        "A1",
        "质检员王",
        [Decision("NO-PHONE", Action.OVERTURN, Verdict.PASSED, "申诉成立")],
    )
    item = repo.queue_item(db, "A1")
    assert item is not None and item.state is QueueState.IN_REVIEW  # BAN-N still pending
    v3 = repo.review(
        db, pack, "A1", "质检员王", [Decision("BAN-N", Action.CONFIRM, comment="申诉不成立")]
    )
    assert v3.version == 3 and v3.score == 96.0
    item = repo.queue_item(db, "A1")
    assert item is not None and item.state is QueueState.DONE
    # a later appeal reopens the done item
    repo.appeal(db, pack, "A1", "A007", ["BAN-N"], "再次申诉")
    item = repo.queue_item(db, "A1")
    assert item is not None and item.state is QueueState.OPEN and item.pending_rules == ("BAN-N",)


def test_versions_are_never_overwritten(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack)
    repo.review(db, pack, "A1", "w", [Decision("GREET", Action.CONFIRM)])
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        db.execute(
            "INSERT INTO review_versions (call_id, version, run_id, kind, actor, recorded_at, "
            "why, pack_name, pack_version, verdicts_before, verdicts_after, score, grade, failed) "
            "VALUES ('A1', 1, 'active-1', 'review', 'x', 0, '', 'p', 'v', '{}', '{}', 0, 'g', 0)"
        )
    db.rollback()
    assert [h.actor for h in repo.history(db, "A1")] == ["w"]


def test_refusals_leave_nothing(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack)
    with pytest.raises(ReviewError, match="no scored result"):
        repo.review(db, pack, "NOPE", "w", [Decision("GREET", Action.CONFIRM)])
    with pytest.raises(ReviewError, match="already passed"):
        repo.review(db, pack, "A1", "w", [Decision("GREET", Action.OVERTURN, Verdict.PASSED)])
    with pytest.raises(ReviewError, match="must be named"):
        repo.review(db, pack, "A1", " ", [Decision("GREET", Action.CONFIRM)])
    with pytest.raises(ReviewError, match="scored by rule pack revtest, not default"):
        repo.review(db, load_pack(), "A1", "w", [Decision("GREET", Action.CONFIRM)])
    assert repo.history(db, "A1") == []


def test_machine_result_prefers_the_active_run(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack, run_id="cand-9", role="candidate", created=2000.0)
    db.execute("DELETE FROM transcripts")
    db.execute("DELETE FROM calls")
    db.commit()
    store_call(db, call_a("A1"), pack, run_id="active-1", created=1000.0)
    assert repo.machine_result(db, "A1").run_id == "active-1"
    assert repo.machine_result(db, "A1", "cand-9").run_id == "cand-9"
    # a call only a candidate pack scored has no result to review, and is not queued
    store_call(db, call_a("C1"), pack, run_id="cand-9", role="candidate")
    with pytest.raises(ReviewError, match="call C1: no scored result in the store by the pack"):
        repo.machine_result(db, "C1")
    assert repo.scan(db, below=None) == ["A1"]


def test_a_racing_review_is_refused(
    store_url: str, pack: RulePack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reviewers read the same version; the second to write is refused (the primary
    key), and the first one's version stands."""
    with open_store(store_url) as a, open_store(store_url) as b:
        store_call(a, call_a("A1"), pack)
        seen = repo.current_verdicts(b, "A1")  # b read version 0 before a wrote version 1
        repo.review(a, pack, "A1", "甲", [Decision("GREET", Action.CONFIRM)])
        monkeypatch.setattr(repo, "current_verdicts", lambda db, cid, run_id=None: seen)
        with pytest.raises(ReviewError, match="version 1 was recorded by someone else"):
            repo.review(b, pack, "A1", "乙", [Decision("BAN-N", Action.CONFIRM)])
        assert [h.actor for h in repo.history(b, "A1")] == ["甲"]


def test_comments_are_stored_redacted(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack)
    repo.appeal(db, pack, "A1", "A007", ["NO-PHONE"], "客户说的号码是13912345678，他要我核对")
    repo.review(
        db,
        pack,
        "A1",
        "w",
        [Decision("NO-PHONE", Action.OVERTURN, Verdict.PASSED, "回拨13912345678核实过")],
    )
    texts = [r for row in db.execute("SELECT why FROM review_versions").fetchall() for r in row]
    texts += [
        r for row in db.execute("SELECT comment FROM review_decisions").fetchall() for r in row
    ]
    assert len(texts) == 4 and not any("13912345678" in t for t in texts)
    assert "客户说的号码是[手机号]，他要我核对" in texts


def test_the_reviewed_score_counts(db: Store, pack: RulePack) -> None:
    """The store's current score of a call is its latest reviewed score, else the
    machine's; an appeal alone changes nothing."""
    store_call(db, call_a("A1"), pack)
    store_call(db, call_clean("B1"), pack)

    def current() -> dict[str, tuple[object, ...]]:
        return {r["call_id"]: (r["score"], r["reviewed"]) for r in db.current_results()}

    assert current() == {"A1": (91.0, 0), "B1": (100.0, 0)}
    repo.appeal(db, pack, "A1", "A007", ["BAN-N"], "没说")
    assert current() == {"A1": (91.0, 0), "B1": (100.0, 0)}
    repo.review(db, pack, "A1", "w", [Decision("BAN-POLICY", Action.CONFIRM)])
    assert current() == {"A1": (71.0, 1), "B1": (100.0, 0)}
    repo.review(db, pack, "A1", "w", [Decision("BAN-N", Action.OVERTURN, Verdict.PASSED)])
    assert current() == {"A1": (75.0, 1), "B1": (100.0, 0)}
    # the reviewed grade and pass/fail come with the reviewed score
    latest = db.execute("SELECT grade, failed FROM call_reviews WHERE call_id = 'A1'").fetchone()
    row = next(r for r in db.current_results() if r["call_id"] == "A1")
    assert (row["grade"], row["failed"]) == tuple(latest)


def test_scan_critical_and_latest_result_only(db: Store, pack: RulePack) -> None:
    rude = transcript(
        [("a", 0.5, 3.0, "您好，这是公司规定"), ("c", 3.5, 5.0, "好吧")], call_id="R1"
    )
    store_call(db, rude, pack)
    # A1: flagged in an older active run, clean in the latest one -> not queued
    store_call(db, call_a("A1"), pack, run_id="active-1", created=1000.0)
    clean = call_clean("A1")
    db.put_transcript(clean, audio_sha="sha-A1b", settings_hash_="s1")
    db.start_run(
        "active-2", pack_name=pack.name, pack_version=pack.version, role="active", inputs="",
        args={}, fresh=False,
    )  # fmt: skip
    db.put_results([result_row("active-2", "A1", "k", score_transcript(pack, clean), 2000.0)])
    assert repo.scan(db, below=None) == ["R1"]
    item = repo.queue_item(db, "R1")
    assert item is not None and item.reasons == (Reason.CRITICAL,)
    assert item.pending_rules == ("BAN-POLICY",)
