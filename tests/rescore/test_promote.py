"""``qa-pipeline store promote``: a re-score's run made the record (README, "Which score
counts"), on both backends."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from qa_pipeline.cli import app
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.store import Store, error_row, result_row, store_label
from qa_pipeline.store.promote import promote_run, refusal
from qa_pipeline.transcript import Transcript

from .synth import make_call

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
