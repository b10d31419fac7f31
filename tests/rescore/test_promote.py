"""``qa-pipeline store promote``: a re-score's run made the record (README, "Which score
counts"), on both backends."""

from __future__ import annotations

import json
import random
import shlex
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from qa_pipeline.cli import app
from qa_pipeline.rules import default_pack_path, load_pack, score_transcript
from qa_pipeline.store import Store, error_row, result_row, store_label
from qa_pipeline.store import search as S
from qa_pipeline.store.promote import promote_run, refusal
from qa_pipeline.transcript import Transcript

from .synth import NEW_PHRASE, changed_pack, make_call

PACK = load_pack()


def _live(st: Store, calls: list[Transcript]) -> dict[str, float]:
    """Store the calls and score them as the pack in service does (run ``scored:<v>``,
    role active); their scores."""
    h = st.put_settings({"asr": {"model": "synthetic"}})
    scores = {}
    for t in calls:
        key = st.put_transcript(t, audio_sha=f"a-{t.call.call_id}", settings_hash_=h)
        card = score_transcript(PACK, t)
        st.record_score(t, card, PACK, key=key.transcript_key)
        scores[t.call.call_id] = round(card.score, 2)
    return scores


def _current(st: Store) -> dict[str, tuple[str, float]]:
    return {r["call_id"]: (r["run_id"], r["score"]) for r in st.current_results()}


def _low_scored(st: Store, threshold: float) -> tuple[set[str], set[str]]:
    """The calls with the new phrase whose score is at most ``threshold``: as the search
    finds them (the index's score column), and as ``current_results`` has them."""
    page = S.search(st, NEW_PHRASE, S.Filters(max_score=threshold), limit=100)
    said = {h.call_id for h in S.search(st, NEW_PHRASE, limit=100).hits}
    want = {c for c, (_, score) in _current(st).items() if c in said and score <= threshold}
    return {h.call_id for h in page.hits}, want


def _rescore(store_url: str, pack: Path, out: Path, *extra: str) -> Any:
    args = ["rescore", "--store", store_url, "--rules", str(pack), "--out", str(out), "-q"]
    args += ["--baseline", str(default_pack_path()), "--no-xlsx", *extra]
    return CliRunner().invoke(app, args)


def test_a_promoted_rescore_counts_for_exactly_the_calls_it_scored(
    store_url: str, tmp_path: Path
) -> None:
    rng = random.Random(18)
    # calls 0-2 have the agent promise only the changed pack flags (包退包换)
    first = [make_call(i, rng, agent_new=i < 3) for i in range(6)]
    later = [make_call(i, rng) for i in range(6, 8)]
    pack = changed_pack(tmp_path)
    label = store_label(store_url)
    with Store(store_url) as st:
        live = _live(st, first)

    res = _rescore(store_url, pack, tmp_path / "o", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    run, base = summary["run_id"], summary["baseline_run_id"]
    assert summary["promote"] == f"qa-pipeline store promote {run} --store {shlex.quote(label)}"
    assert summary["promote_refused"] is None

    time.sleep(0.02)
    with Store(store_url) as st:
        scored = {r["call_id"]: r["score"] for r in st.results(run)}
        assert set(scored) == {t.call.call_id for t in first}
        changed = {c for c in scored if scored[c] != live[c]}
        assert changed == {f"call-{i:05d}" for i in range(3)}  # the new phrase only
        # candidate runs never count
        assert _current(st) == {c: (f"scored:{PACK.version}", s) for c, s in live.items()}
        # after the rescore: two new calls, and call 2 scored live again (a later result)
        live.update(_live(st, later))
        again = _live(st, [first[2]])
        st.commit()
        # the search's score filter: the live scores
        threshold = max(scored["call-00000"], scored["call-00001"])
        hits_before, want = _low_scored(st, threshold)
        assert hits_before == want

    # the command the summary printed, as printed (its --store, the run id)
    argv = shlex.split(summary["promote"])
    assert argv[:3] == ["qa-pipeline", "store", "promote"]
    res = CliRunner().invoke(app, [*argv[1:], "--by", "qa-lead"])
    assert res.exit_code == 0, res.output
    assert f"run {run} (" in res.stdout and "now counts" in res.stdout
    assert "6 calls scored, 5 with it as their current result; 1 keep" in res.stdout

    with Store(store_url) as st:
        cur = _current(st)
        live_run = f"scored:{PACK.version}"
        # the run counts for the calls it scored, except call 2: its live result is later
        assert {c for c, (r, _) in cur.items() if r == run} == set(scored) - {"call-00002"}
        assert cur["call-00002"] == (live_run, again["call-00002"])
        for c in ("call-00006", "call-00007"):
            assert cur[c] == (live_run, live[c])
        for c in set(scored) - {"call-00002"}:
            assert cur[c][1] == scored[c]
        assert cur["call-00000"][1] < live["call-00000"]  # the changed pack's deduction
        # the search index follows (its score column is refreshed for the run's calls)
        hits, want = _low_scored(st, threshold)
        assert hits == want and hits != hits_before and "call-00000" in hits
        # verdict rows follow: the promoted run's failed promise for calls 0 and 1
        vs = st.current_verdicts()
        assert {(v["call_id"], v["run_id"]) for v in vs} == {(c, r) for c, (r, _) in cur.items()}
        # the baseline run is still a candidate, and the promotion is recorded
        roles = dict(st.execute("SELECT run_id, role FROM runs").fetchall())
        assert roles[base] == "baseline" and roles[run] == "active"
        by, at, was = st.execute(
            "SELECT promoted_by, promoted_at, promoted_from FROM runs WHERE run_id = ?", (run,)
        ).fetchone()
        assert (by, was) == ("qa-lead", "new") and time.time() - at < 60

        # promoting twice is harmless: nothing written, the first promotion kept
        p = promote_run(st, run, by="someone-else")
        assert not p.changed and (p.promoted_by, p.promoted_at) == ("qa-lead", at)
        assert (p.results, p.current) == (6, 5)
        assert _current(st) == cur
    res = CliRunner().invoke(app, [*argv[1:], "--by", "x"])
    assert res.exit_code == 0 and "already counts: promoted by qa-lead" in res.stdout

    # the same re-score again: the promoted run is the record and is not written again,
    # the scores go to a new candidate run, which the summary offers to promote
    with Store(store_url) as st:
        stamps = st.execute("SELECT call_id, created_at FROM results WHERE run_id = ?", (run,))
        before = sorted(map(tuple, stamps.fetchall()))
    res = _rescore(store_url, pack, tmp_path / "o2")
    assert res.exit_code == 0, res.output
    assert f"qa-pipeline store promote {run}-2 --store" in res.stdout
    with Store(store_url) as st:
        stamps = st.execute("SELECT call_id, created_at FROM results WHERE run_id = ?", (run,))
        assert sorted(map(tuple, stamps.fetchall())) == before
        assert len(st.results(f"{run}-2")) == 8
        assert _current(st) == cur


def test_promote_refuses_what_cannot_count(store_url: str, tmp_path: Path) -> None:
    calls = [make_call(i, random.Random(i)) for i in range(3)]
    label = store_label(store_url)
    with Store(store_url) as st:
        live = _live(st, calls)
        key = st.calls()[0].transcript_key
        card = score_transcript(PACK, calls[0])

        def run(rid: str, rows: list[Any], *, finish: bool) -> None:
            st.start_run(rid, pack_name="cand", pack_version="9", role="new", inputs="",
                         args={}, fresh=True)  # fmt: skip
            st.put_results(rows)
            if finish:
                st.finish_run(rid)

        now = time.time() + 10  # later than the live results: they would count
        run("killed", [result_row("killed", "call-00000", key, card, now)], finish=False)
        run("broken", [result_row("broken", "call-00000", key, card, now)]
            + [error_row("broken", c.call.call_id, "", "x.wav: unreadable", now)
               for c in calls[1:]], finish=True)  # fmt: skip
        run("empty", [], finish=True)
        assert refusal(st, "killed") is not None and refusal(st, "empty") is not None

    def promote(rid: str, store: str = store_url) -> Any:
        return CliRunner().invoke(app, ["store", "promote", rid, "--store", store, "--by", "q"])

    res = promote("nope")
    assert res.exit_code == 2
    assert f"error: run 'nope': no such run in {label}" in res.stderr
    res = promote("killed")
    assert res.exit_code == 2 and "error: run 'killed' (cand 9) is incomplete" in res.stderr
    res = promote("broken")
    assert res.exit_code == 2
    assert "error: run 'broken' (cand 9) failed for 2 call(s) (call-00001, call-00002)" in (
        res.stderr
    )
    res = promote("empty")
    assert res.exit_code == 2 and "has no result to promote" in res.stderr
    missing = tmp_path / "nowhere" / "store.sqlite"
    res = promote("killed", str(missing))
    assert res.exit_code == 2 and f"error: {missing}: no such store" in res.stderr
    assert not missing.exists()

    with Store(store_url) as st:
        roles = dict(st.execute("SELECT run_id, role FROM runs").fetchall())
        assert [roles[r] for r in ("killed", "broken", "empty")] == ["new"] * 3
        assert _current(st) == {c: (f"scored:{PACK.version}", s) for c, s in live.items()}
        # a killed run resumed and finished can be promoted; resuming makes it unfinished
        st.start_run("killed", pack_name="cand", pack_version="9", role="new", inputs="",
                     args={}, fresh=False)  # fmt: skip
        assert "incomplete" in (refusal(st, "killed") or "")
        st.finish_run("killed")
        assert refusal(st, "killed") is None
    res = promote("killed")
    assert res.exit_code == 0, res.output
    with Store(store_url) as st:
        assert _current(st)["call-00000"] == ("killed", round(card.score, 2))
        # the pack in service's own run is active already: nothing to do
        p = promote_run(st, f"scored:{PACK.version}", by="q")
        assert not p.changed and p.promoted_by is None and p.promoted_from is None
