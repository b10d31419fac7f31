"""Transcript search on 100,000 stored calls, SQLite and PostgreSQL: p50/p95 per query kind.

    .venv/bin/python benchmarks/bench_search.py [--calls 100000] [--reps 15] [--force]
        [--backends sqlite,postgres] [--pg URL] [--plans] [--baselines]

Generates ``--calls`` synthetic Mandarin call-centre calls (10–20 utterances each, ~15 on
average, from the sentence banks of ``qa_pipeline/testing/calls.py`` as the store holds
them: a scripted opening, customer and agent lines, a closing; 您好 in ~90 % of calls,
投诉/退款 in a third, a few rare lines such as 媒体曝光 or 诈骗 in 0.1–0.5 %; phone numbers
already masked as ``[手机号]``), 500 agents in 20 teams, a year of start times, 80 %
inbound, one active run with a score and 8 rule verdicts per call. The calls go in with a
bulk loader (``executemany`` on SQLite, ``COPY`` on PostgreSQL) and are indexed with the
search module's own tokens (``sqlite_tokens`` / ``tsvector_text``) in bulk, the GIN index
built after the load. The stores are cached (``out/bench-search/``, PostgreSQL database
``search_bench_<calls>``): a rerun measures only; ``--force`` builds them again.

Each query kind runs ``--reps`` times, cycling through a few terms (and filter values) of
its kind, as ``search()`` runs it: the first page of 20 hits (with snippets) plus the
totals (matching utterances and calls). The table shows p50/p95 in ms per kind per
backend; ``--plans`` prints each kind's query plans (``EXPLAIN QUERY PLAN`` /
``EXPLAIN (ANALYZE, BUFFERS)``); ``--baselines`` times the alternatives (a ``LIKE`` scan,
trigram indexes) for the README's comparison. Target: p95 < 300 ms for every kind.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "search"))

from qa_pipeline.store import Store  # noqa: E402
from qa_pipeline.store import search as S  # noqa: E402
from qa_pipeline.testing import calls as C  # noqa: E402

PG_ADMIN = os.environ.get("QA_SEARCH_PG", "postgresql://postgres@127.0.0.1:55400/postgres")


def pg_url(name: str, admin: str = PG_ADMIN) -> str:
    return admin.rsplit("/", 1)[0] + "/" + name


def create_pg_database(name: str, admin: str = PG_ADMIN) -> str:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name, admin)


# The sentences are the shared banks of the test and benchmark calls
# (qa_pipeline/testing/calls.py) as the store holds them: ASR slips heard right, the phone
# number masked as the redactor masks it. A few lines of this corpus only: openings
# without 您好, a second refund line, and the agents' "company rules" line among the
# ordinary answers (the shared banks keep it for the 4 % of bad lines).
STORED = {
    "您好，请问有什么可疑方林？": "您好，请问有什么可以帮您？",
    "好的，千年少等，我帮您查询一下": "好的，请您稍等，我帮您查询一下",
    "我的手机号是1{phone}": "我的手机号是[手机号]",
}


def stored(bank: list[str]) -> list[str]:
    """A shared bank's lines as stored (in its order: the draws pick the same lines)."""
    return [STORED.get(line, line) for line in bank]


OPEN = stored(C.OPEN_AGENT)
OPEN_NO_HELLO = ["喂，{company}客服中心，请讲", "{company}客服，请讲"]
CUSTOMER = [*stored(C.CUSTOMER), "我要退款，这个东西有问题"]
AGENT = [*stored(C.AGENT), C.AGENT_BAD[0]]
CLOSE = C.CLOSE_AGENT[:3]
_missing = set(STORED) - {line for bank in (C.OPEN_AGENT, C.CUSTOMER, C.AGENT) for line in bank}
if _missing:  # the shared banks changed: this corpus (and every figure) would change too
    raise SystemExit(f"bench_search: lines no longer in qa_pipeline/testing/calls.py: {_missing}")
#: rare lines, each put in a call with the given probability
RARE = [
    ("再不解决我就找媒体曝光", 0.002),
    ("你们这是诈骗吧", 0.003),
    ("我已经找了律师，要求赔偿", 0.004),
    ("我要打一二三一五", 0.002),
    ("VIP会员的权益什么时候生效", 0.005),
    ("订单号是A{n}，请核对", 0.01),
]
NAMES = C.NAMES
RULES = [
    "OPEN-GREETING",
    "OPEN-IDENT",
    "CLOSE-THANKS",
    "NO-BLAME",
    "EMPATHY",
    "HOLD-ASK",
    "NO-PROMISE",
    "SILENCE",
]
AGENTS = 500
TEAMS = 20
YEAR0 = 1767225600.0  # 2026-01-01 UTC
DAY = 86400.0


def make_calls(n: int, seed: int = 18) -> tuple[list[tuple[Any, ...]], ...]:
    """Rows for calls, utterances, results and verdicts (deterministic)."""
    rng = random.Random(seed)
    calls, utts, results, verdicts = [], [], [], []
    for i in range(n):
        cid = f"call-{i:06d}"
        agent = rng.randrange(AGENTS)
        start = YEAR0 + rng.random() * 365 * DAY
        outbound = rng.random() < 0.2

        def fill(s: str) -> str:
            return s.format(
                n=rng.randrange(10, 9999),
                name=rng.choice(NAMES),
                d=rng.randrange(1, 5),
                company="优家",
            )

        lines: list[tuple[str, str]] = []
        bank = OPEN if rng.random() < 0.9 else OPEN_NO_HELLO
        lines.append(("agent", fill(rng.choice(bank))))
        body = rng.randrange(8, 18)
        for k in range(body):
            if k % 2 == 0:
                lines.append(("customer", fill(rng.choice(CUSTOMER))))
            else:
                lines.append(("agent", fill(rng.choice(AGENT))))
        for text, p in RARE:
            if rng.random() < p:
                lines.insert(rng.randrange(1, len(lines)), ("customer", fill(text)))
        lines.append(("agent", fill(rng.choice(CLOSE))))
        t = 0.5
        for idx, (role, text) in enumerate(lines):
            dur = max(len(text) / 4.5, 0.4)
            utts.append(
                (cid, idx, 0 if role == "agent" else 1, role, round(t, 2), round(t + dur, 2), text)
            )
            t += dur + rng.choice([0.3, 0.6, 1.0])
        calls.append(
            (
                cid,
                f"sha{i}",
                "set",
                "bench",
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                f"A{agent:03d}",
                "{}",
                float(i),
                f"T{agent % TEAMS:02d}",
                "outbound" if outbound else "inbound",
                start,
                round(t, 2),
            )
        )
        failed = [r for r in RULES if rng.random() < 0.08]
        score = max(0.0, 100.0 - 15 * len(failed) - rng.choice([0, 0, 5]))
        results.append(
            (
                "run-active",
                cid,
                f"sha{i}:set",
                "ok",
                None,
                score,
                None,
                int(len(failed) > 0),
                "[]",
                "[]",
                "{}",
                float(i),
                1,
                0,
            )
        )
        for r in RULES:
            v = "failed" if r in failed else ("uncertain" if rng.random() < 0.03 else "passed")
            verdicts.append(("run-active", cid, r, v, "major", 15.0 if v == "failed" else 0.0, 0.0))
    return calls, utts, results, verdicts


CALL_COLS = "call_id, audio_sha256, settings_hash, source, started_at, agent_id, call, updated_at, team, direction, started_epoch, duration_s"
UTT_COLS = "call_id, idx, channel, role, start_s, end_s, text"
RES_COLS = "run_id, call_id, transcript_key, status, error, score, grade, failed, failed_rules, findings, verdicts, created_at, complete, review"
VER_COLS = "run_id, call_id, rule_id, verdict, severity, deduction, pending_deduction"
RUN = ("run-active", "default", "1", "active", "", "{}", 0.0, 1.0)
RUN_COLS = "run_id, pack_name, pack_version, role, inputs, args, started, finished"


def build_sqlite(path: Path, n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    calls, utts, results, verdicts = make_calls(n)
    t1 = time.perf_counter()
    path.unlink(missing_ok=True)
    db = Store(path)  # migrated: the store's tables and the search tables
    c: Any = db.db.raw
    c.execute("PRAGMA synchronous=OFF")
    # the change triggers would only mark every call dirty: the index is written below in
    # bulk, with the rows sync_index would write
    trig = c.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'search_%'"
    ).fetchall()
    for name, _ in trig:
        c.execute(f"DROP TRIGGER {name}")
    c.execute(f"INSERT INTO runs ({RUN_COLS}) VALUES (?,?,?,?,?,?,?,?)", RUN)
    for table, cols, rows in (
        ("calls", CALL_COLS, calls),
        ("results", RES_COLS, results),
        ("verdicts", VER_COLS, verdicts),
        ("utterances", UTT_COLS, utts),
    ):
        marks = ",".join("?" * len(rows[0]))
        c.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
    for _, sql in trig:
        c.execute(sql)
    c.commit()
    t2 = time.perf_counter()
    c.executemany(
        "INSERT INTO search_calls (call_key, call_id, agent_id, team, direction, started_epoch, run_id, score) VALUES (?,?,?,?,?,?,?,?)",
        _search_rows(calls, results),
    )
    c.executemany(
        "INSERT INTO search_fts (rowid, uni, bi) VALUES (?, ?, ?)",
        ((k, *S.sqlite_tokens(texts)) for k, texts in _call_texts(utts)),
    )
    c.execute("INSERT INTO search_fts (search_fts) VALUES ('optimize')")
    c.execute("DELETE FROM search_dirty")
    c.execute("CREATE TABLE IF NOT EXISTS bench_meta (calls INTEGER)")
    c.execute("INSERT INTO bench_meta VALUES (?)", (n,))
    c.commit()
    c.execute("ANALYZE")
    c.commit()
    t3 = time.perf_counter()
    db.close()
    return {"generate": t1 - t0, "load": t2 - t1, "index": t3 - t2}


def _copy(conn: Any, table: str, cols: str, rows: Any) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)


def build_postgres(url: str, n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    calls, utts, results, verdicts = make_calls(n)
    t1 = time.perf_counter()
    db = Store(url)
    c: Any = db.db.raw  # autocommit: each COPY is its own transaction
    c.execute(f"INSERT INTO runs ({RUN_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", RUN)
    _copy(c, "calls", CALL_COLS, calls)
    _copy(c, "results", RES_COLS, results)
    _copy(c, "verdicts", VER_COLS, verdicts)
    _copy(c, "utterances", UTT_COLS, utts)
    c.commit()
    t2 = time.perf_counter()
    c.execute("DROP INDEX search_calls_tsv")
    tsv = dict(_call_texts(utts))
    _copy(
        c,
        "search_calls",
        "call_key, call_id, agent_id, team, direction, started_epoch, run_id, score, tsv",
        ((*row, S.tsvector_text(tsv[row[0]])) for row in _search_rows(calls, results)),
    )
    c.execute(
        "SELECT setval(pg_get_serial_sequence('search_calls', 'call_key'), %s)", (len(calls),)
    )
    c.execute("SET maintenance_work_mem = '512MB'")
    c.execute("CREATE INDEX search_calls_tsv ON search_calls USING GIN (tsv)")
    c.execute(
        "INSERT INTO search_df (token, calls) SELECT lexeme, count(*) FROM search_calls, "
        "unnest(tsv) GROUP BY lexeme"
    )
    c.execute("DELETE FROM search_dirty")
    c.execute("CREATE TABLE bench_meta (calls INTEGER)")
    c.execute("INSERT INTO bench_meta VALUES (%s)", (n,))
    c.execute("VACUUM ANALYZE")
    t3 = time.perf_counter()
    db.close()
    return {"generate": t1 - t0, "load": t2 - t1, "index": t3 - t2}


def _search_rows(
    calls: list[tuple[Any, ...]], results: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """search_calls rows as sync_index writes them (call keys in load order)."""
    return [
        (k, c[0], c[5], c[8], c[9], c[10], r[0], r[5])
        for k, (c, r) in enumerate(zip(calls, results, strict=True), start=1)
    ]


def _call_texts(utts: list[tuple[Any, ...]]) -> Iterator[tuple[int, list[str]]]:
    """(call key, its utterances' texts in order) as the calls were generated."""
    k, cid = 0, None
    texts: list[str] = []
    for u in utts:
        if u[0] != cid:
            if cid is not None:
                yield k, texts
            k, cid, texts = k + 1, u[0], []
        texts.append(u[6])
    if cid is not None:
        yield k, texts


def _cached_sqlite(path: Path, n: int) -> bool:
    if not path.is_file():
        return False
    import sqlite3

    try:
        with sqlite3.connect(path) as c:
            return c.execute("SELECT calls FROM bench_meta").fetchone() == (n,)
    except sqlite3.Error:
        return False


def _cached_postgres(name: str, n: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(pg_url(name)) as c:
            return c.execute("SELECT calls FROM bench_meta").fetchone() == (n,)
    except psycopg.Error:
        return False


F = S.Filters
MONTH = 30 * DAY
#: kind -> [(terms, filters)] cycled through the reps
KINDS: dict[str, list[tuple[str, Callable[[int], S.Filters]]]] = {
    "1-char frequent (好 您 的)": [(t, lambda i: F()) for t in ("好", "您", "的")],
    "1-char rare (骗 曝 赔)": [(t, lambda i: F()) for t in ("骗", "曝", "赔")],
    "2-char frequent (您好 稍等 查询)": [(t, lambda i: F()) for t in ("您好", "稍等", "查询")],
    "2-char mid (投诉 退款)": [(t, lambda i: F()) for t in ("投诉", "退款")],
    "2-char rare (诈骗 律师 曝光)": [(t, lambda i: F()) for t in ("诈骗", "律师", "曝光")],
    "4-char frequent (请您稍等 非常抱歉)": [(t, lambda i: F()) for t in ("请您稍等", "非常抱歉")],
    "4-char rare (媒体曝光 要求赔偿)": [(t, lambda i: F()) for t in ("媒体曝光", "要求赔偿")],
    "ASCII (vip, a1234)": [(t, lambda i: F()) for t in ("vip", "A1234", "VIP会员")],
    "您好 + agent": [("您好", lambda i: F(agent=f"A{(i * 37) % AGENTS:03d}"))],
    "您好 + team + month": [
        (
            "您好",
            lambda i: F(
                team=f"T{i % TEAMS:02d}",
                since=YEAR0 + (i % 11) * MONTH,
                until=YEAR0 + (i % 11 + 1) * MONTH,
            ),
        )
    ],
    "您好 + direction + quarter": [
        (
            "您好",
            lambda i: F(
                direction="outbound",
                since=YEAR0 + (i % 3) * 3 * MONTH,
                until=YEAR0 + (i % 3 + 1) * 3 * MONTH,
            ),
        )
    ],
    "您好 + rule failed + score<=70": [
        ("您好", lambda i: F(rule=RULES[i % len(RULES)], verdict="failed", max_score=70))
    ],
    "投诉 + team + score>=90": [("投诉", lambda i: F(team=f"T{i % TEAMS:02d}", min_score=90))],
    "诈骗 + direction + month": [
        (
            "诈骗",
            lambda i: F(
                direction="inbound",
                since=YEAR0 + (i % 11) * MONTH,
                until=YEAR0 + (i % 11 + 2) * MONTH,
            ),
        )
    ],
    "好 + agent": [("好", lambda i: F(agent=f"A{(i * 41) % AGENTS:03d}"))],
    "您好 投诉 (both) + inbound": [("您好 投诉", lambda i: F(direction="inbound"))],
    "非常抱歉 + team + verdict uncertain": [
        ("非常抱歉", lambda i: F(team=f"T{i % TEAMS:02d}", rule="EMPATHY", verdict="uncertain"))
    ],
}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def measure(db: Store, reps: int, plans: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind, cases in KINDS.items():
        times: list[float] = []
        last: S.Page | None = None
        for i in range(reps + 1):
            terms, mk = cases[i % len(cases)]
            f = mk(i)
            t0 = time.perf_counter()
            page = S.search(db, terms, f, limit=20)
            dt = (time.perf_counter() - t0) * 1000
            if i:  # the first is a warm-up
                times.append(dt)
            last = page
        assert last is not None
        out[kind] = {
            "p50": statistics.median(times),
            "p95": pct(times, 0.95),
            "max": max(times),
            "calls": last.total_calls,
            "driver": last.driver,
        }
        if plans:
            terms, mk = cases[0]
            print(f"\n### {db.dialect}: {kind}")
            print(S.explain(db, terms, mk(0)))
    return out


def baselines(db: Store) -> None:
    """The alternatives: a LIKE scan of utterances; trigram indexes (pg_trgm, FTS5 trigram)
    for 2- and 4-character terms."""
    for term in ("退款", "诈骗", "媒体曝光"):
        t0 = time.perf_counter()
        n = db.execute(
            "SELECT count(*) FROM utterances WHERE text LIKE ?", (f"%{term}%",)
        ).fetchone()[0]
        print(
            f"{db.dialect} LIKE scan {term}: {n} utterances, {(time.perf_counter() - t0) * 1000:.0f} ms"
        )
    if db.dialect == "postgres":
        db.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        exists = db.execute(
            "SELECT 1 FROM pg_indexes WHERE indexname = 'bench_utt_trgm'"
        ).fetchone()
        if not exists:
            t0 = time.perf_counter()
            db.execute("CREATE INDEX bench_utt_trgm ON utterances USING GIN (text gin_trgm_ops)")
            db.commit()
            print(f"postgres trigram GIN built in {time.perf_counter() - t0:.0f} s")
        for term in ("退款", "诈骗", "媒体曝光"):
            plan = db.execute(
                "EXPLAIN ANALYZE SELECT count(*) FROM utterances WHERE text LIKE ?", (f"%{term}%",)
            ).fetchall()
            print(f"postgres pg_trgm LIKE {term}:")
            print("\n".join("   " + r[0] for r in plan))
        db.commit()
    else:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'bench_tri'").fetchone()
        if not exists:
            t0 = time.perf_counter()
            db.execute(
                "CREATE VIRTUAL TABLE bench_tri USING fts5(text, content='utterances', tokenize='trigram')"
            )
            db.execute("INSERT INTO bench_tri (bench_tri) VALUES ('rebuild')")
            db.commit()
            print(f"sqlite trigram FTS5 built in {time.perf_counter() - t0:.0f} s")
        for term in ("退款", "诈骗", "媒体曝光"):
            q = f'"{term}"'
            t0 = time.perf_counter()
            try:
                n = db.execute(
                    "SELECT count(*) FROM bench_tri WHERE bench_tri MATCH ?", (q,)
                ).fetchone()[0]
                how = "MATCH"
            except Exception as e:  # noqa: BLE001 - a term shorter than a trigram
                n, how = str(e), "MATCH fails"
            print(f"sqlite trigram {term}: {how} {n}, {(time.perf_counter() - t0) * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--force", action="store_true", help="build the stores again")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--plans", action="store_true", help="print the query plans")
    ap.add_argument("--baselines", action="store_true", help="time LIKE scans and trigram indexes")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench-search")
    ap.add_argument(
        "--pg-name", default=None, help="PostgreSQL database (default search_bench_<calls>)"
    )
    args = ap.parse_args()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"search-{args.calls}.sqlite"
            if args.force or not _cached_sqlite(path, args.calls):
                print(f"building {path} ...", flush=True)
                print(
                    "  "
                    + ", ".join(
                        f"{k} {v:.1f} s" for k, v in build_sqlite(path, args.calls).items()
                    ),
                    flush=True,
                )
            db = Store(path)
        else:
            name = args.pg_name or f"search_bench_{args.calls}"
            if args.force or not _cached_postgres(name, args.calls):
                print(f"building PostgreSQL database {name} ...", flush=True)
                url = create_pg_database(name)
                print(
                    "  "
                    + ", ".join(
                        f"{k} {v:.1f} s" for k, v in build_postgres(url, args.calls).items()
                    ),
                    flush=True,
                )
            db = Store(pg_url(name))
        n_utt = db.execute("SELECT count(*) FROM utterances").fetchone()[0]
        db.commit()
        print(f"{backend}: {args.calls} calls, {n_utt} utterances", flush=True)
        results[backend] = measure(db, args.reps, args.plans)
        if args.baselines:
            baselines(db)
        db.close()
    backends = list(results)
    print(f"\n{args.calls} calls, {args.reps} reps per kind, first page of 20 + totals, ms")
    head = (
        "| query | "
        + " | ".join(f"{b} p50 | {b} p95" for b in backends)
        + " | calls matched (last rep) |"
    )
    print(head)
    print("|" + "---|" * (2 + 2 * len(backends)))
    worst = 0.0
    for kind in KINDS:
        cells = []
        for b in backends:
            r = results[b][kind]
            cells += [f"{r['p50']:.1f}", f"{r['p95']:.1f}"]
            worst = max(worst, r["p95"])
        r0 = results[backends[0]][kind]
        print(f"| {kind} | " + " | ".join(cells) + f" | {r0['calls']} |")
    print(f"\nworst p95: {worst:.1f} ms (target < 300 ms): {'OK' if worst < 300 else 'MISSED'}")


if __name__ == "__main__":
    main()
