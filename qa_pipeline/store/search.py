"""Full-text search over the stored calls' transcripts, with filters, on SQLite and
PostgreSQL (``qa-pipeline search``; the dashboard links a hit as ``/calls/<id>#u<index>``).

The index (migrations ``0100_search.sql``)
-------------------------------------------
Chinese has no spaces, and the words a QA team looks for are short: 投诉, 退款 (two
characters), 您好, 再见, sometimes one (嗯) or four (非常抱歉). Each utterance's text (as
stored: redacted, normalised) is cut into **units** — one CJK (or other non-ASCII)
character, or a whole run of ASCII letters/digits (``vip``, ``2024``) — and a call is
indexed as two token streams over its utterances in order:

* its **unigrams** (every unit), which answer one-unit terms (嗯, ``vip``, ``5000``);
* its **bigrams** (every two adjacent units) at consecutive positions, which answer every
  longer term *exactly* as a phrase: 非常抱歉 is the phrase 非常 常抱 抱歉, which only
  matches where the three bigrams stand at consecutive positions, i.e. where the four
  characters stand in a row. No candidate needs a second check on the text.

Between two utterances, and at a personal-data mask (``[手机号]``, ``[身份证号…123X]``),
the positions jump: no phrase spans them. A mask is not indexed at all (its label, digest
and visible tail are never tokens: ``123`` does not find ``[身份证号…123X]``). Punctuation
and spaces are skipped (like the rules, the search reads 您好，请问 as 您好请问). Terms and
text are read in simplified characters, lower case, NFKC (投訴 finds 投诉). A search for
several terms finds the calls that hold them all; its hits are each call's matching
utterances, marked.

* **SQLite**: an FTS5 table ``search_fts(uni, bi)``, one row per call (rowid = the call's
  key in ``search_calls``), ``unicode61`` over the pre-cut token strings (a private-use
  character fills a gap, another joins two ASCII units in a bigram so ``abc 123`` stays
  apart from ``abc123``). A term is ``uni : "退"`` or the phrase ``bi : "退款 款到 到账"``.
* **PostgreSQL**: ``search_calls.tsv``, a ``tsvector`` written directly in its input form
  (``'退' '款' '退款':3 '款到':4 ...``: unigrams without positions, bigrams at theirs; no
  parser, locale or dictionary touches the tokens) under a GIN index; a term is ``'退'`` or
  ``'退款' <-> '款到' <-> '到账'``. Kept in the row, lz4-compressed, so a phrase recheck
  needs no TOAST look-up. Counting the calls that hold a frequent term reads every such
  row (~2.4 KB each; a tsvector match is always rechecked, so even the GIN bitmap scan
  fetches them), so the total of a one-token search without filters comes from
  ``search_df`` (calls per token, kept by the sync), as SQLite's doclists give it. (A tsvector holds positions up to 16383 and 256 per lexeme: in a
  call longer than that a phrase may be missed in its tail; a one-unit term never is.)

One row per **call**, not per utterance: the totals are counts of calls (what a QA lead
asks: how many calls mention 投诉), a frequent term's postings are 15x fewer, and the
call's filter columns sit beside its tokens in ``search_calls`` (agent, team, direction,
start, the current result's run and score), indexed, so a filtered search joins nothing
but the verdicts.

Measured (``benchmarks/bench_search.py``: 100,000 calls, 1.45 M utterances, 2-core shared
machine; the table is in ``benchmarks/README.md``), first page of 20 plus the total: on
SQLite every query kind — frequent and rare 1-, 2-, 4-character and ASCII terms, with and
without filters — is under 300 ms at p95 (worst 194 ms); on PostgreSQL all but two: a
frequent 4-character phrase and two frequent terms with a weak filter count by a
sequential scan of ``search_calls`` (p95 221–505 ms under load, ~150 ms quiet) when
the table (256 MB) does not fit PostgreSQL's ``shared_buffers``; with 512 MB
(``scripts/postgres.sh``, as a deployment sizes it) the worst p95 is 142–152 ms.
The alternatives, on the same store:
**trigrams** cannot answer a 1- or 2-character term from the index (SQLite's FTS5
``trigram`` tokenizer finds nothing for 退款; ``pg_trgm`` turns ``LIKE '%退款%'`` into a
scan of every row), and those are the terms that matter here; a **LIKE scan** of the
utterances takes ~0.4–0.5 s on SQLite per term before any filter or count, and grows with
the archive. ``pg_bigm`` would serve 2-grams but is not packaged for Debian's PostgreSQL.

Keeping the index current
-------------------------
Triggers mark changed calls in ``search_dirty``: on ``utterances`` (the text changed: the
call is cut again), on ``calls`` and ``results`` (only the filter columns are refreshed).
:func:`sync_index`, run by :func:`search` first, catches up when the index is behind
(:func:`index_behind`, reads only: a search of a current index writes nothing and needs no
lock, so a read-only store answers it; a read-only store whose index is behind is searched
as indexed, and the page says by how many calls it is behind), on PostgreSQL one at a time,
under an advisory lock (the marks are upserts that row-lock, so a sync never loses a mark
made by a writer whose transaction is still open). A review
is caught by comparing each reviewed score (``call_reviews``, created by a later
migration, so no trigger of ours can watch it) with the indexed one at every check. A
re-score's run promoted to ``active`` (``store promote``) marks its calls itself; a role
changed by other means needs :func:`rebuild_index`.

Filters
-------
Agent, team, a principal's scope (several teams, a team-less call placed by its agent:
the history pages' condition, :func:`.base.team_scope_sql`, so a scoped page and total
are exact), direction, start time (``calls``) and the call's **current result** as
``Store.current_results`` defines it (a reviewed score in ``call_reviews`` first, else the
latest result of an ``active`` run; error or incomplete results carry no score): score
range, and a rule with a verdict (the ``verdicts`` rows of that result). On SQLite the
search starts from whichever is fewest — the terms' index entries, the calls the filters
pick, or the calls with the rule's verdict (:func:`choose_driver`); PostgreSQL's planner
chooses itself. Hits: newest-indexed call first.
"""

from __future__ import annotations

import re
import sqlite3
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import QAError
from ..privacy.entities import MASK_RE
from ..text import to_simplified
from .base import REVIEWED_SCORES, team_scope_sql

#: fills the gap at a mask in SQLite's bigram stream (a private-use character: a token
#: character for unicode61, never in normalised text)
GAP = "\ue000"
#: joins two ASCII units in a bigram (``abc 123`` -> ``abc`` + JOIN + ``123``)
JOIN = "\ue001"
#: longest unit kept (a pasted blob is cut; PostgreSQL's lexemes stop at 2 KB)
MAX_UNIT = 64
#: calls re-cut per transaction by :func:`sync_index`
SYNC_BATCH = 2000

_UNIT_RE = re.compile(r"[0-9A-Za-z]+|[^\W_]")
_ASCII_RE = re.compile(r"[0-9a-z]+")
VERDICTS = ("passed", "failed", "not_applicable", "uncertain")
DIRECTIONS = ("inbound", "outbound")


class SearchError(QAError, ValueError):
    """A search that cannot run as asked (names the input)."""


class Db(Protocol):
    """What search needs of a store: ``Store`` has it (``?`` placeholders on both)."""

    @property
    def dialect(self) -> str: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


# -- cutting text into units and tokens ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    text: str
    start: int  # offsets in the text it was cut from
    end: int


def segments(text: str) -> list[list[Unit]]:
    """The text's units, in runs between masks (a mask ends a run and is dropped)."""
    out: list[list[Unit]] = []
    pos = 0
    for m in [*MASK_RE.finditer(text), None]:
        end = m.start() if m is not None else len(text)
        run = [
            Unit(_unit(u.group()), u.start(), u.end()) for u in _UNIT_RE.finditer(text, pos, end)
        ]
        if run:
            out.append(run)
        if m is not None:
            pos = m.end()
    return out


def _unit(text: str) -> str:
    if len(text) == 1 and not text.isascii():
        return to_simplified(text)  # (stored text is simplified already: a set lookup)
    return text.lower()[:MAX_UNIT]


def _bigram(a: str, b: str) -> str:
    if _ASCII_RE.fullmatch(a) and _ASCII_RE.fullmatch(b):
        return a + JOIN + b
    return a + b


def query_units(term: str) -> list[str]:
    """A query term's units (NFKC, simplified, lower case; masks and punctuation dropped)."""
    text = to_simplified(unicodedata.normalize("NFKC", term))
    return [u.text for run in segments(text) for u in run]


def sqlite_tokens(texts: Iterable[str]) -> tuple[str, str]:
    """A call's (unigram, bigram) token strings for the FTS5 table: its utterances in
    order, a gap token between utterances and at masks."""
    uni: list[str] = []
    bi: list[str] = []
    for text in texts:
        for run in segments(text):
            if bi:
                bi.append(GAP)
            uni.extend(u.text for u in run)
            bi.extend(_bigram(a.text, b.text) for a, b in zip(run, run[1:], strict=False))
    return " ".join(uni), " ".join(bi)


#: the highest position a tsvector holds; later ones are clamped to it
MAX_POS = 16383


def tsvector_text(texts: Iterable[str]) -> str:
    """A call as ``tsvector`` input: its unigrams (without positions: a one-unit term is
    never part of a phrase) and its bigrams at their positions, a skipped position between
    utterances and at masks."""
    return _tsvector(texts)[0]


def _tsvector(texts: Iterable[str]) -> tuple[str, set[str]]:
    """(``tsvector`` input, its lexemes)."""
    unigrams: set[str] = set()
    bigrams: dict[str, list[int]] = {}
    pos = 0
    for text in texts:
        for run in segments(text):
            pos += 1  # a gap before every run: no phrase spans a mask or two utterances
            unigrams.update(u.text for u in run)
            for i in range(len(run) - 1):
                p = min(pos + i, MAX_POS)
                bigrams.setdefault(_bigram(run[i].text, run[i + 1].text), []).append(p)
            pos += len(run)
    out = [f"'{u}'" for u in unigrams]
    out += [f"'{b}':{','.join(map(str, ps[:256]))}" for b, ps in bigrams.items()]
    return " ".join(out), unigrams | set(bigrams)


# -- queries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    text: str  # as given
    units: tuple[str, ...]

    @property
    def grams(self) -> tuple[str, ...]:
        """The tokens the index is asked for: the unigram, or the bigrams in a row."""
        if len(self.units) == 1:
            return self.units
        return tuple(_bigram(a, b) for a, b in zip(self.units, self.units[1:], strict=False))


def parse_terms(terms: str | Sequence[str]) -> list[Term]:
    """Search terms (a string is split on spaces); every one must hold something
    searchable."""
    words = terms.split() if isinstance(terms, str) else [w for t in terms for w in t.split()]
    if not words:
        raise SearchError("no search term given")
    out = []
    for w in words:
        units = query_units(w)
        if not units:
            raise SearchError(
                f"search term {w!r} has nothing searchable (only punctuation or a mask)"
            )
        out.append(Term(w, tuple(units)))
    return out


def fts5_query(terms: Sequence[Term]) -> str:
    parts = []
    for t in terms:
        col = "uni" if len(t.units) == 1 else "bi"
        parts.append(f'{col} : "{" ".join(t.grams)}"')
    return " AND ".join(parts)


def tsquery_text(terms: Sequence[Term]) -> str:
    return " & ".join("(" + " <-> ".join(f"'{g}'" for g in t.grams) + ")" for t in terms)


def match_spans(text: str, terms: Sequence[Term]) -> list[tuple[int, int]]:
    """Where the terms stand in ``text`` (character spans, in order, merged): the same
    matching as the index (units in a row within a run between masks)."""
    spans: list[tuple[int, int]] = []
    for run in segments(text):
        words = [u.text for u in run]
        for t in terms:
            n = len(t.units)
            for i in range(len(words) - n + 1):
                if tuple(words[i : i + n]) == t.units:
                    spans.append((run[i].start, run[i + n - 1].end))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def snippet(text: str, terms: Sequence[Term], mark: tuple[str, str] = ("【", "】")) -> str:
    """The utterance with every match marked (long ones cut around the first match)."""
    spans = match_spans(text, terms)
    out, pos = [], 0
    for s, e in spans:
        out += [text[pos:s], mark[0], text[s:e], mark[1]]
        pos = e
    out.append(text[pos:])
    marked = "".join(out)
    if len(marked) > 120 and spans:
        first = marked.index(mark[0])
        lo = max(0, first - 40)
        marked = ("…" if lo else "") + marked[lo : lo + 110] + "…"
    return marked


@dataclass(frozen=True, slots=True)
class Filters:
    """What a hit's call must be. Times are UTC epoch seconds (``calls.started_epoch``);
    ``until`` is exclusive. ``teams`` (a principal's scope, on top of ``team``): the calls
    of those teams, or without a team whose agent is one of ``team_agents``
    (:func:`.base.team_scope_sql`, the history pages' rule); an empty ``teams``: none."""

    agent: str | None = None
    team: str | None = None
    teams: Sequence[str] | None = None  # kept as a sorted tuple
    team_agents: Sequence[str] = ()
    direction: str | None = None
    since: float | None = None
    until: float | None = None
    rule: str | None = None
    verdict: str | None = None
    min_score: float | None = None
    max_score: float | None = None

    def __post_init__(self) -> None:
        for name in ("teams", "team_agents"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise SearchError(f"{name} {value!r}: give a sequence of names, not one string")
            if value is not None:
                object.__setattr__(self, name, tuple(sorted(set(value))))
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise SearchError(f"direction {self.direction!r}: one of {', '.join(DIRECTIONS)}")
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise SearchError(f"verdict {self.verdict!r}: one of {', '.join(VERDICTS)}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise SearchError(f"since ({self.since}) is not before until ({self.until})")
        lo, hi = self.min_score, self.max_score
        if lo is not None and hi is not None and lo > hi:
            raise SearchError(f"min score {lo} is above max score {hi}")

    @property
    def indexed(self) -> bool:
        """Whether a filter other than rule/verdict narrows the calls (an index serves it)."""
        return any(
            v is not None
            for v in (
                self.agent,
                self.team,
                self.teams,
                self.direction,
                self.since,
                self.until,
                self.min_score,
                self.max_score,
            )
        )

    @property
    def any(self) -> bool:
        return self.indexed or self.rule is not None or self.verdict is not None


#: the call's current result, as ``Store.current_results`` has it: the latest result
#: (``created_at``) of a run whose role is ``active``
CURRENT_RUN = (
    "(SELECT r2.run_id FROM results r2 JOIN runs u2 ON u2.run_id = r2.run_id "
    "WHERE r2.call_id = c.call_id AND u2.role = 'active' "
    "ORDER BY r2.created_at DESC, r2.run_id DESC LIMIT 1)"
)


def filter_sql(
    f: Filters, *, verdicts: bool = True, plain: bool = False
) -> tuple[list[str], list[Any]]:
    """WHERE clauses on ``search_calls s`` with their parameters. ``plain``: the columns
    written ``+s.col`` (SQLite then uses no index for them: another clause drives).

    The rule/verdict filter with a rule is a set of call keys read through the verdicts'
    (rule_id, verdict) index; with a verdict alone, a look-up per candidate call."""
    where: list[str] = []
    params: list[Any] = []
    col = "+s." if plain else "s."
    for name, text in (("agent_id", f.agent), ("team", f.team), ("direction", f.direction)):
        if text is not None:
            where.append(f"{col}{name} = ?")
            params.append(text)
    if f.teams is not None:
        cond, scope = team_scope_sql(f.teams, f.team_agents, col=col)
        where.append(cond)
        params += scope
    for clause, val in (
        ("started_epoch >= ?", f.since),
        ("started_epoch < ?", f.until),
        ("score >= ?", f.min_score),
        ("score <= ?", f.max_score),
    ):
        if val is not None:
            where.append(col + clause)
            params.append(val)
    if verdicts and f.rule is not None:
        cond = "v.rule_id = ?" + (" AND v.verdict = ?" if f.verdict is not None else "")
        where.append(
            "s.call_key IN (SELECT s2.call_key FROM verdicts v CROSS JOIN search_calls s2 "
            f"WHERE {cond} AND s2.call_id = v.call_id AND s2.run_id = v.run_id)"
        )
        params += [f.rule] if f.verdict is None else [f.rule, f.verdict]
    elif verdicts and f.verdict is not None:
        where.append(
            "EXISTS (SELECT 1 FROM verdicts v WHERE v.run_id = s.run_id "
            "AND v.call_id = s.call_id AND v.verdict = ?)"
        )
        params.append(f.verdict)
    return where, params


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UtteranceHit:
    index: int
    start_s: float | None
    end_s: float | None
    role: str | None
    text: str
    snippet: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A matching call and its matching utterances (in order; the first is the link)."""

    call_id: str
    agent_id: str | None
    team: str | None
    started_epoch: float | None
    score: float | None
    utterances: tuple[UtteranceHit, ...]

    @property
    def first(self) -> UtteranceHit:
        return self.utterances[0]

    @property
    def link(self) -> str:
        """Where the dashboard shows the call at its first matching utterance."""
        return link(self.call_id, self.first.index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "utterance_index": self.first.index,
            "start_s": self.first.start_s,
            "role": self.first.role,
            "snippet": self.first.snippet,
            "link": self.link,
            "agent_id": self.agent_id,
            "team": self.team,
            "started_epoch": self.started_epoch,
            "score": self.score,
            "matches": [
                {
                    "utterance_index": u.index,
                    "start_s": u.start_s,
                    "end_s": u.end_s,
                    "role": u.role,
                    "snippet": u.snippet,
                    "link": link(self.call_id, u.index),
                }
                for u in self.utterances
            ],
        }


def link(call_id: str, index: int) -> str:
    """The dashboard's address of a call at one utterance."""
    return f"/calls/{quote(call_id, safe='')}#u{index}"


@dataclass(frozen=True, slots=True)
class Page:
    terms: list[Term]
    hits: list[Hit]
    total_calls: int
    offset: int
    limit: int
    driver: str = "terms"  # which side drove the query: "terms" or "filters"
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: calls changed since the index was last brought up to date that the search could
    #: not index first, the store being read-only here: it read what is indexed, which
    #: may miss or misreport them (0: the index was current)
    index_behind: int = 0


# -- keeping the index current ------------------------------------------------------------


def sync_index(db: Db, *, batch: int = SYNC_BATCH, wait: bool = False) -> int:
    """Bring the index up to date with every call marked in ``search_dirty``; returns how
    many calls were looked at.

    An index found up to date (:func:`index_behind`, reads only) is left alone: no write
    transaction, no lock, so a search of a current index needs none. On PostgreSQL one
    sync runs at a time (a session advisory lock): a sync that finds another one running
    returns at once (``wait``: waits for it instead), and the search reads what is
    indexed."""
    if not index_behind(db):
        return 0
    if db.dialect != "postgres":
        return _sync(db, batch)
    lock = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
    got = db.execute(f"SELECT {lock}(hashtext('qa_pipeline.search'))").fetchone()[0]
    if got is False:
        return 0
    try:
        return _sync(db, batch)
    except BaseException:
        db.rollback()  # a failed statement aborts the transaction: the unlock needs a new one
        raise
    finally:
        db.execute("SELECT pg_advisory_unlock(hashtext('qa_pipeline.search'))")


def _sync(db: Db, batch: int) -> int:
    _mark_reviewed(db)
    done = 0
    while True:
        if db.dialect == "postgres":
            rows = db.execute(
                "DELETE FROM search_dirty WHERE call_id IN "
                "(SELECT call_id FROM search_dirty LIMIT ? FOR UPDATE) RETURNING call_id, text",
                (batch,),
            ).fetchall()
        else:
            rows = db.execute("SELECT call_id, text FROM search_dirty LIMIT ?", (batch,)).fetchall()
        if not rows:
            db.commit()
            return done
        _reindex(db, {r[0]: bool(r[1]) for r in rows})
        if db.dialect != "postgres":
            db.executemany("DELETE FROM search_dirty WHERE call_id = ?", [(r[0],) for r in rows])
        db.commit()
        done += len(rows)


def index_behind(db: Db) -> bool:
    """Whether the index has something to catch up on: a call marked in ``search_dirty``,
    or a reviewed score that is not the one indexed. Reads only (a read-only store can
    answer it)."""
    if db.execute("SELECT 1 FROM search_dirty LIMIT 1").fetchone() is not None:
        return True
    if not _has_table(db, REVIEWED_SCORES):
        return False
    return db.execute(f"SELECT 1 {_reviewed_differ(db)} LIMIT 1").fetchone() is not None


def calls_behind(db: Db) -> int:
    """How many calls the index has to catch up on (:func:`index_behind`'s count)."""
    reviewed = f" UNION SELECT r.call_id {_reviewed_differ(db)}"
    sql = "SELECT call_id FROM search_dirty" + (reviewed if _has_table(db, REVIEWED_SCORES) else "")
    return int(db.execute(f"SELECT COUNT(*) FROM ({sql}) behind").fetchone()[0])


def cannot_write(error: BaseException) -> bool:
    """Whether ``error`` is a write refused because the store cannot be written here: a
    read-only open or file (SQLite's ``SQLITE_READONLY``), a read-only transaction
    (PostgreSQL's 25006: a read-only open, a standby server,
    ``default_transaction_read_only``) or a role without the right (42501)."""
    if isinstance(error, sqlite3.Error):
        return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_READONLY
    return getattr(error, "sqlstate", None) in ("25006", "42501")


def _sync_or_behind(db: Db) -> int:
    """Bring the index up to date; on a store that cannot be written here, leave it as it
    is and return how many calls it is behind (the search reads what is indexed)."""
    try:
        sync_index(db)
    except Exception as e:
        if not cannot_write(e):
            raise
        db.rollback()
        return calls_behind(db)
    return 0


def _reviewed_differ(db: Db) -> str:
    """FROM ... WHERE: the calls whose reviewed score is not the one indexed (``r``)."""
    differs = "IS NOT" if db.dialect == "sqlite" else "IS DISTINCT FROM"
    return (
        f"FROM {REVIEWED_SCORES} r JOIN search_calls s ON s.call_id = r.call_id "
        f"WHERE s.score {differs} r.score"
    )


def _mark_reviewed(db: Db) -> None:
    """Mark the calls whose reviewed score is not the one indexed (the review tables come
    after this migration, so no trigger watches them; reviewed calls are few)."""
    if not _has_table(db, REVIEWED_SCORES):
        return
    db.execute(
        f"INSERT INTO search_dirty (call_id, text) SELECT r.call_id, 0 {_reviewed_differ(db)} "
        "ON CONFLICT (call_id) DO NOTHING"
    )


def _in(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _reindex(db: Db, dirty: dict[str, bool]) -> None:
    """Re-cut the calls whose text changed (or that are not indexed yet) and refresh every
    marked call's filter columns; calls without utterances leave the index."""
    ids = list(dirty)
    keys = dict(
        db.execute(
            f"SELECT call_id, call_key FROM search_calls WHERE call_id IN ({_in(ids)})", ids
        ).fetchall()
    )
    attrs = _attrs(db, ids)
    recut = [cid for cid in ids if dirty[cid] or cid not in keys]
    texts: dict[str, list[str]] = {cid: [] for cid in recut}
    if recut:
        for cid, text in db.execute(
            f"SELECT call_id, text FROM utterances WHERE call_id IN ({_in(recut)}) "
            "ORDER BY call_id, idx",
            recut,
        ).fetchall():
            texts[cid].append(text or "")
    gone = [cid for cid in ids if cid not in attrs or (cid in texts and not texts[cid])]
    gone_keys = [(keys[c],) for c in gone if c in keys]
    # PostgreSQL: each token's count of calls (search_df), less the old tokens of the
    # calls cut again or gone, plus their new ones
    df: Counter[str] = Counter()
    old_lexemes: dict[int, list[str]] = {}
    if db.dialect == "postgres":
        cut = [keys[c] for c in {*gone, *recut} if c in keys]
        if cut:
            old_lexemes = dict(
                db.execute(
                    "SELECT call_key, tsvector_to_array(tsv) FROM search_calls "
                    f"WHERE call_key IN ({_in(cut)})",
                    cut,
                ).fetchall()
            )
    if gone_keys:
        if db.dialect == "sqlite":
            db.executemany("DELETE FROM search_fts WHERE rowid = ?", gone_keys)
        db.executemany("DELETE FROM search_calls WHERE call_key = ?", gone_keys)
    gone_set = set(gone)
    meta = [(*attrs[c], keys[c]) for c in ids if c in keys and c not in gone_set]
    if meta:
        db.executemany(
            "UPDATE search_calls SET agent_id = ?, team = ?, direction = ?, started_epoch = ?, "
            "run_id = ?, score = ? WHERE call_key = ?",
            meta,
        )
    fresh = [c for c in recut if c not in gone_set]
    if db.dialect == "sqlite":
        for cid in fresh:
            if cid not in keys:
                keys[cid] = db.execute(
                    "INSERT INTO search_calls (call_id, agent_id, team, direction, "
                    "started_epoch, run_id, score) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING call_key",
                    (cid, *attrs[cid]),
                ).fetchone()[0]
            else:
                db.execute("DELETE FROM search_fts WHERE rowid = ?", (keys[cid],))
        db.executemany(
            "INSERT INTO search_fts (rowid, uni, bi) VALUES (?, ?, ?)",
            [(keys[c], *sqlite_tokens(texts[c])) for c in fresh],
        )
    else:
        tsv = {c: _tsvector(texts[c]) for c in fresh}
        for before in old_lexemes.values():
            df.update({t: -1 for t in before})
        for _, after in tsv.values():
            df.update({t: 1 for t in after})
        old = [(tsv[c][0], keys[c]) for c in fresh if c in keys]
        if old:
            db.executemany("UPDATE search_calls SET tsv = ?::tsvector WHERE call_key = ?", old)
        for cid in fresh:
            if cid not in keys:
                db.execute(
                    "INSERT INTO search_calls (call_id, agent_id, team, direction, "
                    "started_epoch, run_id, score, tsv) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    "?::tsvector)",
                    (cid, *attrs[cid], tsv[cid][0]),
                )
        delta = sorted((t, n) for t, n in df.items() if n)
        if delta:
            db.executemany(
                "INSERT INTO search_df (token, calls) VALUES (?, ?) ON CONFLICT (token) "
                "DO UPDATE SET calls = search_df.calls + excluded.calls",
                delta,
            )


def _attrs(db: Db, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """The calls' filter columns: (agent, team, direction, started_epoch, run_id, score).

    The score is the current one as ``Store.current_results`` has it: a reviewed score
    when there is one, else the current result's when it is ``ok`` and complete (an
    ``error`` or incomplete current result: no score); ``run_id`` names the current
    result whose verdict rows the rule/verdict filter reads (``ok`` results only)."""
    reviewed = _has_table(db, REVIEWED_SCORES)
    join = f"LEFT JOIN {REVIEWED_SCORES} v ON v.call_id = c.call_id " if reviewed else ""
    review = "v.score" if reviewed else "NULL"
    rows = db.execute(
        "SELECT c.call_id, c.agent_id, c.team, c.direction, c.started_epoch, "
        "CASE WHEN r.status = 'ok' THEN r.run_id END, "
        f"COALESCE({review}, CASE WHEN r.status = 'ok' AND r.complete = 1 THEN r.score END) "
        f"FROM calls c LEFT JOIN results r ON r.call_id = c.call_id AND r.run_id = {CURRENT_RUN} "
        f"{join}WHERE c.call_id IN ({_in(ids)})",
        list(ids),
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def _has_table(db: Db, name: str) -> bool:
    has = getattr(db, "has_table", None)
    return bool(has(name)) if has is not None else False


def rebuild_index(db: Db) -> int:
    """Mark every call and re-cut them all (after a restore, a pack promoted to active,
    or to adopt a store written before the search migration)."""
    db.execute("DELETE FROM search_dirty")
    db.execute(
        "INSERT INTO search_dirty (call_id, text) SELECT call_id, 1 FROM calls "
        "UNION SELECT call_id, 1 FROM search_calls"
    )
    db.commit()
    return sync_index(db, wait=True)


# -- the search ------------------------------------------------------------------------------


def _queries(
    db: Db, terms: Sequence[Term], filters: Filters, driver: str
) -> tuple[str, str, list[Any]]:
    """(SELECT call keys in order, SELECT count, parameters) for one search."""
    where, fparams = filter_sql(filters, plain=driver == "verdicts" and db.dialect == "sqlite")
    if db.dialect == "postgres":
        body = "FROM search_calls s WHERE " + " AND ".join(["s.tsv @@ ?::tsquery", *where])
        params: list[Any] = [tsquery_text(terms), *fparams]
        key = "s.call_key"
    elif not filters.any:
        body = "FROM search_fts f WHERE search_fts MATCH ?"
        params = [fts5_query(terms)]
        key = "f.rowid"
    elif driver == "terms":
        body = "FROM search_fts f CROSS JOIN search_calls s WHERE " + " AND ".join(
            ["search_fts MATCH ?", "s.call_key = f.rowid", *where]
        )
        params = [fts5_query(terms), *fparams]
        key = "f.rowid"
    else:  # "filters" or "verdicts": the calls first, the terms' index sought per call
        body = "FROM search_calls s CROSS JOIN search_fts f WHERE " + " AND ".join(
            [*where, "f.rowid = s.call_key", "search_fts MATCH ?"]
        )
        params = [*fparams, fts5_query(terms)]
        key = "s.call_key"
    page = f"SELECT {key} {body} ORDER BY {key} DESC LIMIT ? OFFSET ?"
    count = f"SELECT count(*) {body}"
    return page, count, params


def choose_driver(db: Db, terms: Sequence[Term], filters: Filters) -> str:
    """Which side drives a filtered search on SQLite, by the fewest rows to start from:
    the terms' index entries (``terms``: each matching call's filter columns looked up),
    the calls the indexed filters pick (``filters``), or the calls with the rule's verdict
    (``verdicts``); the last two seek the terms' index per call (a seek costs a few index
    entries read in a row). PostgreSQL's planner chooses by itself."""
    if db.dialect != "sqlite" or not filters.any:
        return "terms"
    rare = min(_doc_freq(db, g) for t in terms for g in t.grams)
    cap = rare // 4 + 1
    best, least = "terms", cap
    if filters.indexed:
        where, params = filter_sql(filters, verdicts=False)
        n = _count(db, f"SELECT 1 FROM search_calls s WHERE {' AND '.join(where)}", params, least)
        if n < least:
            best, least = "filters", n
    if filters.rule is not None:
        cond = "rule_id = ?" + (" AND verdict = ?" if filters.verdict is not None else "")
        params = [filters.rule] if filters.verdict is None else [filters.rule, filters.verdict]
        n = _count(db, f"SELECT 1 FROM verdicts WHERE {cond}", params, least)
        if n < least:
            best, least = "verdicts", n
    return best


def _count(db: Db, sql: str, params: Sequence[Any], cap: int) -> int:
    """How many rows ``sql`` gives, counting no further than ``cap``."""
    row = db.execute(f"SELECT count(*) FROM ({sql} LIMIT ?) AS n", [*params, cap]).fetchone()
    return int(row[0])


def _doc_freq(db: Db, token: str) -> int:
    row = db.execute("SELECT doc FROM search_vocab WHERE term = ?", (token,)).fetchone()
    return int(row[0]) if row else 0


def search(
    db: Db,
    terms: str | Sequence[str],
    filters: Filters | None = None,
    *,
    limit: int = 20,
    offset: int = 0,
    sync: bool = True,
) -> Page:
    """The calls where every term is said (newest-indexed first), ``limit`` of them after
    ``offset``, each with its matching utterances; and how many calls match in all.

    ``sync``: bring the index up to date first. A store that cannot be written here (opened
    read-only, a read-only file, a standby server) is searched as it is indexed, and the
    page says by how many calls the index is behind (:attr:`Page.index_behind`): those
    calls' changes are not seen until a search with write access (or the dashboard) syncs."""
    if limit < 1 or limit > 1000:
        raise SearchError(f"limit {limit}: between 1 and 1000")
    if offset < 0:
        raise SearchError(f"offset {offset}: not negative")
    parsed = parse_terms(terms)
    filters = filters or Filters()
    t0 = time.perf_counter()
    behind = _sync_or_behind(db) if sync else 0
    t1 = time.perf_counter()
    driver = choose_driver(db, parsed, filters)
    page_sql, count_sql, params = _queries(db, parsed, filters, driver)
    keys = [r[0] for r in db.execute(page_sql, [*params, limit, offset]).fetchall()]
    t2 = time.perf_counter()
    total = _total(db, count_sql, params, parsed, filters)
    t3 = time.perf_counter()
    hits = _hits(db, keys, parsed)
    if db.dialect == "postgres":
        db.commit()  # ends the read transaction
    t4 = time.perf_counter()
    ms = {"sync": t1 - t0, "page": t2 - t1, "count": t3 - t2, "hits": t4 - t3}
    return Page(
        parsed,
        hits,
        int(total),
        offset,
        limit,
        driver,
        {k: round(v * 1000, 2) for k, v in ms.items()},
        index_behind=behind,
    )


def _total(
    db: Db, count_sql: str, params: Sequence[Any], terms: Sequence[Term], filters: Filters
) -> int:
    """The count; on PostgreSQL, one token without filters is read from ``search_df``
    (counting its calls there reads every row that holds it: the rows are wide)."""
    one = len(terms) == 1 and len(terms[0].grams) == 1
    if db.dialect == "postgres" and not filters.any and one:
        row = db.execute(
            "SELECT calls FROM search_df WHERE token = ?", (terms[0].grams[0],)
        ).fetchone()
        return int(row[0]) if row else 0
    return int(db.execute(count_sql, params).fetchone()[0])


def _hits(db: Db, keys: Sequence[int], terms: Sequence[Term]) -> list[Hit]:
    if not keys:
        return []
    calls = {
        row[0]: row[1:]
        for row in db.execute(
            "SELECT call_key, call_id, agent_id, team, started_epoch, score FROM search_calls "
            f"WHERE call_key IN ({_in(keys)})",
            list(keys),
        ).fetchall()
    }
    ids = [c[0] for c in calls.values()]
    utts: dict[str, list[UtteranceHit]] = {cid: [] for cid in ids}
    for cid, idx, start, end, role, text in db.execute(
        "SELECT call_id, idx, start_s, end_s, role, text FROM utterances "
        f"WHERE call_id IN ({_in(ids)}) ORDER BY call_id, idx",
        ids,
    ).fetchall():
        if text and match_spans(text, terms):
            utts[cid].append(UtteranceHit(idx, start, end, role, text, snippet(text, terms)))
    out = []
    for k in keys:
        if k not in calls:
            continue
        cid, agent, team, epoch, score = calls[k]
        if utts[cid]:  # (none: changed since indexed; the next sync re-cuts it)
            out.append(Hit(cid, agent, team, epoch, score, tuple(utts[cid])))
    return out


def explain(db: Db, terms: str | Sequence[str], filters: Filters | None = None) -> str:
    """The query plans of a search's page and count queries (``EXPLAIN QUERY PLAN`` on
    SQLite, ``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL)."""
    parsed = parse_terms(terms)
    filters = filters or Filters()
    driver = choose_driver(db, parsed, filters)
    page_sql, count_sql, params = _queries(db, parsed, filters, driver)
    out = [f"driver: {driver}"]
    for name, sql, p in (
        ("page", page_sql, [*params, 20, 0]),
        ("count", count_sql, params),
    ):
        out.append(f"-- {name}: {sql}")
        if db.dialect == "sqlite":
            rows = db.execute("EXPLAIN QUERY PLAN " + sql, p).fetchall()
            out += [f"   {r[3]}" for r in rows]
        else:
            rows = db.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, p).fetchall()
            out += [f"   {r[0]}" for r in rows]
    if db.dialect == "postgres":
        db.commit()
    return "\n".join(out)


# -- opening a store ---------------------------------------------------------------------


def open_store_for_search(url: str) -> Any:
    """The store at ``url`` (a path, ``sqlite:///path`` or ``postgresql://``), which must
    exist: a search never creates an empty store. Opened as a writer, so pending
    migrations (the search tables among them) are applied and the index can be synced;
    opening it takes no lock when nothing is pending, and a search that finds the index
    current writes nothing."""
    from pathlib import Path

    from .base import Store, store_path

    path = store_path(url)
    if path is not None and not Path(path).is_file():
        raise SearchError(f"no store at {path}")
    return Store(url)
