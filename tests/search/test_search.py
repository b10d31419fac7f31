"""Transcript search on both backends: exact matches for 1-, 2-, 4-character and ASCII
terms, no hit across utterances or masks, filters, pagination and totals, the index kept
current by the change triggers."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import pytest

from qa_pipeline.store import Store as Db
from qa_pipeline.store import search as S
from qa_pipeline.text import match_form

DAY = 86400.0


def add_call(
    db: Db,
    call_id: str,
    texts: list[str],
    *,
    agent: str = "A1",
    team: str = "T1",
    direction: str = "inbound",
    epoch: float = 1_000_000.0,
) -> None:
    db.execute(
        "INSERT INTO calls (call_id, audio_sha256, settings_hash, call, updated_at, agent_id, "
        "team, direction, started_epoch) VALUES (?, 'a', 's', '{}', 0, ?, ?, ?, ?)",
        (call_id, agent, team, direction, epoch),
    )
    db.executemany(
        "INSERT INTO utterances (call_id, idx, channel, role, start_s, end_s, text) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (call_id, i, i % 2, "agent" if i % 2 == 0 else "customer", 2.0 * i, 2.0 * i + 1, t)
            for i, t in enumerate(texts)
        ],
    )
    db.commit()


def add_run(db: Db, run_id: str, role: str, started: float) -> None:
    db.execute(
        "INSERT INTO runs (run_id, pack_name, pack_version, role, inputs, args, started) "
        "VALUES (?, 'p', '1', ?, '', '{}', ?)",
        (run_id, role, started),
    )
    db.commit()


def add_result(
    db: Db, run_id: str, call_id: str, score: float, verdicts: dict[str, str], at: float = 0.0
) -> None:
    db.execute(
        "INSERT INTO results (run_id, call_id, transcript_key, status, score, created_at, "
        "complete) VALUES (?, ?, 'k', 'ok', ?, ?, 1)",
        (run_id, call_id, score, at),
    )
    db.executemany(
        "INSERT INTO verdicts (run_id, call_id, rule_id, verdict) VALUES (?, ?, ?, ?)",
        [(run_id, call_id, r, v) for r, v in verdicts.items()],
    )
    db.commit()


def found(db: Db, terms: str, filters: S.Filters | None = None, **kw: Any) -> dict[str, list[int]]:
    page = S.search(db, terms, filters, limit=kw.pop("limit", 1000), **kw)
    return {h.call_id: [u.index for u in h.utterances] for h in page.hits}


CORPUS = {
    "c-hello": ["您好，请问有什么可以帮您？", "我要投诉，你们的服务太差了"],
    "c-refund": ["退款什么时候能到账", "非常抱歉给您带来不便"],
    "c-split": ["请问有什么可以帮您", "我要退货"],  # 帮您|我要: 您我 only across utterances
    "c-scatter": ["非常好，常抱怨，抱歉"],  # 非常 常抱 抱歉 all there, 非常抱歉 not
    "c-mask": ["我的手机号是[手机号]好的", "身份证[身份证号…123X]已登记", "卡号[银行卡号#ab12]"],
    "c-ascii": ["VIP 会员 abc 123，订单号A1234", "您的卡号abc123已绑定"],
    "c-trad": ["我要投訴，退款還沒到賬"],
    "c-one": ["嗯", "好的"],
}


@pytest.fixture
def corpus(db: Db) -> Db:
    for k, (cid, texts) in enumerate(CORPUS.items()):
        add_call(db, cid, texts, epoch=1_000_000.0 + k)
    return db


def oracle(term: str) -> dict[str, list[int]]:
    """Plain substring search in the match form of each utterance's text between masks."""
    want = match_form(term)
    out: dict[str, list[int]] = {}
    for cid, texts in CORPUS.items():
        for i, t in enumerate(texts):
            pieces = re.split(r"\[[^\]]*\]", t)
            if any(want in match_form(p) for p in pieces):
                out.setdefault(cid, []).append(i)
    return out


TERMS = ["好", "您", "嗯", "投诉", "退款", "您好", "帮您", "非常抱歉", "退款什么", "什么时候能",
         "您我", "是好", "常抱", "非常抱", "账", "已登记"]  # fmt: skip


def test_cjk_terms_match_exactly(corpus: Db) -> None:
    for term in TERMS:
        want = oracle(term)
        assert found(corpus, term) == want, term
        assert S.search(corpus, term).total_calls == len(want), term


def test_no_hit_across_utterances_masks_or_scattered_bigrams(corpus: Db) -> None:
    assert found(corpus, "您我") == {}  # 帮您 | 我要: two utterances
    assert found(corpus, "是好") == {}  # 是[手机号]好: the mask is a boundary
    assert found(corpus, "非常抱歉") == {"c-refund": [1]}  # not c-scatter's 非常…常抱…抱歉
    assert "c-scatter" in found(corpus, "常抱")


def test_masks_are_not_searchable(corpus: Db) -> None:
    assert found(corpus, "123") == {"c-ascii": [0]}  # the whole token, not [身份证号…123X]
    assert found(corpus, "123x") == {}
    assert found(corpus, "ab12") == {}  # a mask's digest
    assert found(corpus, "身份证号") == {}  # the mask's label
    assert found(corpus, "手机号") == {"c-mask": [0]}  # said in words, not the mask
    with pytest.raises(S.SearchError, match=r"\[手机号\]"):
        S.search(corpus, "[手机号]")


def test_ascii_words_and_digit_runs(corpus: Db) -> None:
    assert found(corpus, "vip") == {"c-ascii": [0]}
    assert found(corpus, "VIP会员") == {"c-ascii": [0]}  # case, and the space skipped
    assert found(corpus, "abc") == {"c-ascii": [0]}  # a whole word: not inside abc123
    assert found(corpus, "abc123") == {"c-ascii": [1]}
    assert found(corpus, "a1234") == {"c-ascii": [0]}
    assert found(corpus, "卡号abc123") == {"c-ascii": [1]}


def test_traditional_query_and_text(corpus: Db) -> None:
    # query and text are both read in simplified characters
    assert found(corpus, "投訴") == found(corpus, "投诉") == {"c-hello": [1], "c-trad": [0]}
    assert found(corpus, "到账") == {"c-refund": [0], "c-trad": [0]}


def test_several_terms_all_in_the_call(corpus: Db) -> None:
    assert found(corpus, "您好 投诉") == {"c-hello": [0, 1]}
    assert found(corpus, ["退款", "抱歉"]) == {"c-refund": [0, 1]}
    assert found(corpus, "您好 退货") == {}


def test_snippet_marks_the_match_and_links_to_the_utterance(corpus: Db) -> None:
    page = S.search(corpus, "退款")
    hit = next(h for h in page.hits if h.call_id == "c-refund")
    assert hit.first.snippet == "【退款】什么时候能到账"
    assert hit.link == "/calls/c-refund#u0"
    assert hit.first.role == "agent" and hit.first.start_s == 0.0
    assert hit.as_dict()["utterance_index"] == 0


def test_pagination_and_total(db: Db) -> None:
    for i in range(25):
        add_call(db, f"p{i:02d}", ["您好", "投诉" if i % 2 else "咨询"])
    pages = [S.search(db, "投诉", limit=5, offset=o) for o in (0, 5, 10)]
    assert [p.total_calls for p in pages] == [12, 12, 12]
    ids = [h.call_id for p in pages for h in p.hits]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert ids == sorted(ids, reverse=True)  # newest indexed first
    assert S.search(db, "投诉", limit=5, offset=15).hits == []


def test_filters_combined(db: Db) -> None:
    add_run(db, "old", "active", 1.0)
    add_run(db, "new", "active", 2.0)
    add_run(db, "cand", "candidate", 3.0)
    specs = [  # call, agent, team, direction, day, score(new), verdict of EMPATHY
        ("f1", "A1", "T1", "inbound", 0, 95, "passed"),
        ("f2", "A1", "T1", "outbound", 1, 60, "failed"),
        ("f3", "A2", "T1", "inbound", 2, 80, "failed"),
        ("f4", "A3", "T2", "inbound", 3, 40, "uncertain"),
        ("f5", "A3", "T2", "outbound", 4, 90, "passed"),
    ]
    for cid, agent, team, direction, day, score, verdict in specs:
        add_call(
            db,
            cid,
            ["您好，我要投诉"],
            agent=agent,
            team=team,
            direction=direction,
            epoch=day * DAY,
        )
        add_result(db, "old", cid, 10, {"EMPATHY": "failed"}, at=1.0)
        add_result(db, "new", cid, score, {"EMPATHY": verdict}, at=2.0)
        add_result(db, "cand", cid, 100 - score, {"EMPATHY": "passed"}, at=3.0)
    F = S.Filters

    def ids(f: S.Filters) -> set[str]:
        return set(found(db, "投诉", f))

    assert ids(F()) == {"f1", "f2", "f3", "f4", "f5"}
    assert ids(F(agent="A1")) == {"f1", "f2"}
    assert ids(F(team="T2", direction="outbound")) == {"f5"}
    assert ids(F(since=1 * DAY, until=3 * DAY)) == {"f2", "f3"}
    # the current result is the newest active run's, not the candidate's or the older one's
    assert ids(F(min_score=80)) == {"f1", "f3", "f5"}
    assert ids(F(max_score=60, team="T1")) == {"f2"}
    assert ids(F(rule="EMPATHY", verdict="failed")) == {"f2", "f3"}
    assert ids(F(rule="EMPATHY", verdict="failed", agent="A2", min_score=70)) == {"f3"}
    assert ids(F(verdict="uncertain")) == {"f4"}
    assert ids(F(rule="NO-SUCH-RULE")) == set()
    page = S.search(db, "投诉", F(team="T1", direction="inbound"))
    assert page.total_calls == 2 and {h.call_id for h in page.hits} == {"f1", "f3"}


def test_index_follows_changes(db: Db) -> None:
    add_call(db, "x1", ["我要退款"])
    assert found(db, "退款") == {"x1": [0]}
    db.execute("DELETE FROM utterances WHERE call_id = 'x1'")
    db.executemany(
        "INSERT INTO utterances (call_id, idx, text) VALUES (?, ?, ?)",
        [("x1", 0, "您好"), ("x1", 1, "我要投诉")],
    )
    db.commit()
    assert found(db, "退款") == {}
    assert found(db, "投诉") == {"x1": [1]}
    db.execute("UPDATE calls SET agent_id = 'B9' WHERE call_id = 'x1'")
    db.commit()
    assert found(db, "投诉", S.Filters(agent="B9")) == {"x1": [1]}
    add_run(db, "r", "active", 1.0)
    add_result(db, "r", "x1", 55, {})
    assert found(db, "投诉", S.Filters(max_score=60)) == {"x1": [1]}
    db.execute("DELETE FROM utterances WHERE call_id = 'x1'")
    db.commit()
    assert S.search(db, "投诉").total_calls == 0


def test_bad_input_is_named(db: Db) -> None:
    with pytest.raises(S.SearchError, match="no search term"):
        S.search(db, "  ")
    with pytest.raises(S.SearchError, match="'，。'"):
        S.search(db, "，。")
    with pytest.raises(S.SearchError, match="verdict 'bad'"):
        S.Filters(verdict="bad")
    with pytest.raises(S.SearchError, match="direction 'sideways'"):
        S.Filters(direction="sideways")
    with pytest.raises(S.SearchError, match="min score 90"):
        S.Filters(min_score=90, max_score=10)
    with pytest.raises(S.SearchError, match="limit 0"):
        S.search(db, "好", limit=0)


def test_the_store_write_path_is_searchable(db: Db) -> None:
    """Transcripts stored by the store itself (redacted by the text step) are found; a
    transcript rewritten under the call moves the hits."""
    from qa_pipeline.testing.calls import transcript

    t = transcript(
        [
            ("a", 0.0, 2.0, "您好，请问有什么可以帮您？"),
            ("c", 2.5, 5.0, "我的手机号是13812345678，我要退款"),
        ],
        call_id="w1",
    )
    assert "[手机号" in t.utterances[1].text  # redacted before it is stored
    db.put_transcript(t, audio_sha="sha-w1", settings_hash_="h")
    # stored again before any search: the call's upsert updates it while its mark is
    # there (a trigger's INSERT OR IGNORE would take the upsert's ABORT and fail)
    db.put_transcript(t, audio_sha="sha-w1", settings_hash_="h")
    assert found(db, "退款") == {"w1": [1]}
    assert found(db, "5678") == {} and found(db, "13812345678") == {}
    t2 = transcript([("c", 0.0, 2.0, "退货怎么办理")], call_id="w1")
    db.put_transcript(t2, audio_sha="sha-w1b", settings_hash_="h")
    assert found(db, "退款") == {}
    assert found(db, "退货") == {"w1": [0]}


def test_every_driver_gives_the_same_hits(db: Db) -> None:
    """SQLite starts a filtered search from the terms, the filtered calls or the rule's
    verdicts (whichever is fewest): all three give the same page and count."""
    add_run(db, "r", "active", 1.0)
    for i in range(40):
        cid = f"d{i:02d}"
        add_call(db, cid, ["您好", "我要投诉" if i % 3 else "咨询"], agent=f"A{i % 4}")
        add_result(db, "r", cid, 50 + i, {"EMPATHY": "failed" if i % 5 == 0 else "passed"})
    S.sync_index(db)
    terms = S.parse_terms("投诉")
    for f in (
        S.Filters(agent="A1"),
        S.Filters(rule="EMPATHY", verdict="failed"),
        S.Filters(rule="EMPATHY", verdict="failed", min_score=60, agent="A2"),
        S.Filters(verdict="passed", max_score=70),
    ):
        seen = set()
        for driver in ("terms", "filters", "verdicts"):
            page_sql, count_sql, params = S._queries(db, terms, f, driver)
            keys = tuple(r[0] for r in db.execute(page_sql, [*params, 100, 0]).fetchall())
            total = db.execute(count_sql, params).fetchone()[0]
            assert total == len(keys)
            seen.add(keys)
        assert len(seen) == 1, f
        assert S.search(db, terms=["投诉"], filters=f).total_calls == len(seen.pop())


def test_a_reviewed_score_is_the_score_filtered_on(db: Db) -> None:
    add_run(db, "r", "active", 1.0)
    add_call(db, "v1", ["我要投诉"])
    add_result(db, "r", "v1", 40, {"EMPATHY": "failed"})
    assert found(db, "投诉", S.Filters(max_score=50)) == {"v1": [0]}
    db.execute(
        "INSERT INTO call_reviews (call_id, run_id, version, score, grade, failed, reviewer, "
        "reviewed_at) VALUES ('v1', 'r', 1, 95, 'A', 0, 'qa1', 1.0)"
    )
    db.commit()
    assert found(db, "投诉", S.Filters(max_score=50)) == {}
    assert found(db, "投诉", S.Filters(min_score=90)) == {"v1": [0]}


def test_a_current_index_is_searched_without_writing(db: Db) -> None:
    """A search that finds the index up to date writes nothing, so a read-only store
    answers it; a change or a reviewed score not yet indexed puts the index behind, and
    only then does a search sync. A read-only store cannot: it is searched as indexed and
    the page says by how many calls the index is behind."""
    add_run(db, "r", "active", 1.0)
    add_call(db, "q1", ["我要投诉"])
    add_result(db, "r", "q1", 40, {"EMPATHY": "failed"})
    assert S.index_behind(db)
    assert found(db, "投诉", S.Filters(max_score=50)) == {"q1": [0]}  # the writer syncs
    assert not S.index_behind(db)
    review = (
        "INSERT INTO call_reviews (call_id, run_id, version, score, grade, failed, reviewer, "
        "reviewed_at) VALUES ('q1', 'r', 1, 95, 'A', 0, 'qa1', 1.0)"
    )
    db.execute(review)
    db.commit()
    assert S.index_behind(db)  # a reviewed score the index does not have yet
    assert S.sync_index(db) == 1 and not S.index_behind(db)
    with Db(db.url, readonly=True) as ro:
        for _ in range(2):
            page = S.search(ro, "投诉", S.Filters(min_score=90))
            assert [(h.call_id, h.score) for h in page.hits] == [("q1", 95)]
        assert S.sync_index(ro) == 0
        assert page.index_behind == 0
    add_call(db, "q2", ["投诉电话"])
    db.execute("UPDATE call_reviews SET score = 40 WHERE call_id = 'q1'")
    db.commit()
    assert S.index_behind(db) and S.calls_behind(db) == 2  # q2 new, q1's review changed
    with Db(db.url, readonly=True) as ro:
        for _ in range(2):  # (the failed sync left the connection usable)
            page = S.search(ro, "投诉", S.Filters(min_score=90))
            # as indexed: q2 not there yet, q1 with the reviewed score the index holds
            assert [(h.call_id, h.score) for h in page.hits] == [("q1", 95)]
            assert page.index_behind == 2 and page.total_calls == 1
        assert S.index_behind(ro)  # nothing written
        if ro.dialect == "postgres":  # the syncs that failed let go of their lock
            pid = ro.execute("SELECT pg_backend_pid()").fetchone()[0]
            held = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = ?"
            assert ro.execute(held, (pid,)).fetchone()[0] == 0
    page = S.search(db, "投诉")  # a writer brings it up to date
    assert page.index_behind == 0 and not S.index_behind(db)
    assert {h.call_id: h.score for h in page.hits} == {"q1": 40, "q2": None}


def test_a_store_that_cannot_be_written_is_told_apart() -> None:
    """Only a write the store refuses (read-only) makes a search read what is indexed;
    other database errors are raised as they are."""
    ro = sqlite3.connect(":memory:")
    ro.execute("CREATE TABLE t (x INTEGER)")
    ro.execute("PRAGMA query_only = ON")
    with pytest.raises(sqlite3.OperationalError) as readonly:
        ro.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError) as missing:
        ro.execute("SELECT * FROM nowhere")
    assert S.cannot_write(readonly.value) and not S.cannot_write(missing.value)


def test_token_counts_follow_every_change(db: Db) -> None:
    """PostgreSQL answers a one-token search's total from per-token call counts kept by
    the sync: after adds, rewrites and removals they equal a count over the index."""
    add_call(db, "k1", ["您好", "我要投诉"])
    add_call(db, "k2", ["您好，投诉"])
    add_call(db, "k3", ["退款"])
    S.sync_index(db)
    db.execute("DELETE FROM utterances WHERE call_id = 'k2'")
    db.executemany(
        "INSERT INTO utterances (call_id, idx, text) VALUES (?, ?, ?)",
        [("k2", 0, "退款到账了吗")],
    )
    db.execute("DELETE FROM utterances WHERE call_id = 'k3'")
    db.commit()
    add_call(db, "k4", ["您好您好"])
    want = {"您好": {"k1", "k4"}, "投诉": {"k1"}, "退款": {"k2"}, "好": {"k1", "k4"}, "账": {"k2"}}
    for term, ids in want.items():
        page = S.search(db, term)
        assert page.total_calls == len(ids), term
        assert {h.call_id for h in page.hits} == ids, term
    if db.dialect == "postgres":
        rows = dict(db.execute("SELECT token, calls FROM search_df WHERE calls <> 0").fetchall())
        counted = dict(
            db.execute(
                "SELECT lexeme, count(*) FROM search_calls, unnest(tsv) GROUP BY lexeme"
            ).fetchall()
        )
        assert rows == counted


def test_phrases_keep_ascii_words_whole(db: Db) -> None:
    """A term of three units or more matches its units in a row, an ASCII word whole
    (``vip`` is not inside ``vipx``), punctuation skipped."""
    add_call(db, "a1", ["会员vip卡abc 123号"])
    add_call(db, "a2", ["会员vipx卡，abc123号"])
    assert found(db, "员vip卡") == {"a1": [0]}
    assert found(db, "员vipx卡") == {"a2": [0]}
    assert found(db, "员vi卡") == {}
    assert found(db, "卡abc 123号") == {"a1": [0]}
    assert found(db, "卡abc123号") == {"a2": [0]}  # (punctuation is skipped)
    assert found(db, "abc123号") == {"a2": [0]}


def test_a_supervisors_scope_is_exact_on_every_page(db: Db) -> None:
    """A principal's scope is a filter of the search's SQL: a supervisor of two teams
    (each with more matching calls than a page), team-less calls placed by their agent's
    teams, a third team left out; the total is exact and the pages are stable."""
    mine: set[str] = set()
    n = 0

    def call(team: str | None, agent: str, said: bool) -> str:
        nonlocal n
        n += 1
        cid = f"s{n:03d}"
        db.execute(
            "INSERT INTO calls (call_id, audio_sha256, settings_hash, call, updated_at, "
            "agent_id, team, started_epoch) VALUES (?, 'a', 's', '{}', 0, ?, ?, ?)",
            (cid, agent, team, float(n)),
        )
        db.execute(
            "INSERT INTO utterances (call_id, idx, channel, role, start_s, end_s, text) "
            "VALUES (?, 0, 0, 'customer', 0, 1, ?)",
            (cid, "我要投诉" if said else "我要咨询"),
        )
        return cid

    for i in range(12):
        for team, agent in (("T1", f"A1{i % 2}"), ("T2", "A2"), ("T3", "A3")):
            cid = call(team, agent, said=True)
            if team != "T3":
                mine.add(cid)
        call("T1", "A10", said=False)
    for agent in ("A10", "A2", "A3", "A9"):  # no team: placed by the agent's teams
        cid = call(None, agent, said=True)
        if agent in ("A10", "A2"):
            mine.add(cid)
    db.commit()
    scope = S.Filters(teams=["T2", "T1", "T2"], team_agents=["A10", "A11", "A2"])
    assert scope.teams == ("T1", "T2")
    pages = [S.search(db, "投诉", scope, limit=5, offset=o) for o in range(0, 30, 5)]
    assert {p.total_calls for p in pages} == {len(mine)} and len(mine) == 26
    ids = [h.call_id for p in pages for h in p.hits]
    assert len(ids) == len(set(ids)) and set(ids) == mine  # every call once, none else
    assert S.search(db, "投诉", scope, limit=5, offset=10).hits == pages[2].hits
    # with the list's own filters on top
    one = S.search(db, "投诉", S.Filters(team="T2", teams=("T1", "T2"), team_agents=("A2",)))
    assert one.total_calls == 12 and {h.team for h in one.hits} == {"T2"}
    assert S.search(db, "投诉", S.Filters(team="T3", teams=("T1", "T2"))).total_calls == 0
    assert S.search(db, "投诉", S.Filters(teams=())).total_calls == 0
    # an agent sees its own calls only
    agent = S.search(db, "投诉", S.Filters(agent="A10"), limit=100)
    assert agent.total_calls == 7 and {h.agent_id for h in agent.hits} == {"A10"}
    # SQLite: the same page and count whichever side drives
    terms = S.parse_terms("投诉")
    seen = set()
    for driver in ("terms", "filters", "verdicts"):
        page_sql, count_sql, params = S._queries(db, terms, scope, driver)
        keys = tuple(r[0] for r in db.execute(page_sql, [*params, 100, 0]).fetchall())
        assert db.execute(count_sql, params).fetchone()[0] == len(keys) == len(mine)
        seen.add(keys)
    assert len(seen) == 1
    with pytest.raises(S.SearchError, match="teams 'T1'"):
        S.Filters(teams="T1")
