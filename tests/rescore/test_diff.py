"""A rule change shows up in the diff exactly for the calls it should."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from qa_pipeline.rescore import RescoreOptions, rescore
from qa_pipeline.rescore.html import anchor

from .synth import NEW_LINE, NEW_PHRASE, OLD_LINE, changed_pack, fill_store, make_call

N = 600


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], set[str]]:
    tmp = tmp_path_factory.mktemp("diff")
    rng = random.Random(11)
    calls = []
    expected: set[str] = set()
    customer_only: set[str] = set()
    for i in range(N):
        k = i % 10
        agent_new = k in (1, 4)  # the agent says the new phrase
        agent_old = k in (4, 7)  # ... an already banned one (k=4: both)
        customer_new = k in (2, 7)  # the customer says it (agent rules must not care)
        t = make_call(i, rng, agent_new=agent_new, agent_old=agent_old, customer_new=customer_new)
        calls.append(t)
        if agent_new and not agent_old:
            expected.add(t.call.call_id)
        if customer_new and not agent_new:
            customer_only.add(t.call.call_id)
    store = tmp / "qa.sqlite"
    fill_store(store, calls)
    return store, expected, customer_only


def test_diff_lists_exactly_the_calls_with_the_new_phrase(
    archive: tuple[Path, set[str], set[str]], tmp_path: Path
) -> None:
    store, expected, customer_only = archive
    new_pack = changed_pack(tmp_path)
    out = tmp_path / "out"
    summary = rescore(
        RescoreOptions(store=store, rules=new_pack, baseline=None, out=out, progress=False)
    )
    assert summary.calls == N and not summary.errors
    # The baseline defaults to nothing; now compare with the default pack.
    from qa_pipeline.rules import default_pack_path

    summary = rescore(
        RescoreOptions(
            store=store, rules=new_pack, baseline=default_pack_path(), out=out, progress=False
        )
    )
    assert summary.reused == N  # the new pack's results were committed by the first run
    assert summary.scored == N  # ... only the baseline still had to be scored

    lines = [json.loads(x) for x in (out / "diff.jsonl").read_text(encoding="utf-8").splitlines()]
    rules = {x["rule_id"]: x for x in lines if x["type"] == "rule"}
    assert set(rules) == {"OVER-PROMISE"}, "only the changed rule may flag other calls"
    assert set(rules["OVER-PROMISE"]["newly_flagged"]) == expected
    assert rules["OVER-PROMISE"]["no_longer_flagged"] == []
    assert not expected & customer_only
    changed = {x["call_id"] for x in lines if x["type"] == "call"}
    assert changed == expected
    for x in lines:
        if x["type"] == "call":
            assert x["new_score"] < x["old_score"]
            ev = x["evidence"]["OVER-PROMISE"]
            assert ev["side"] == "new"
            texts = [e["text"] for f in ev["findings"] for e in f["evidence"]]
            assert NEW_LINE in texts and OLD_LINE not in texts
            matched = {e["matched"] for f in ev["findings"] for e in f["evidence"]}
            assert NEW_PHRASE in matched

    # per-call results: the new pack's verdicts
    res = [json.loads(x) for x in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(res) == N
    flagged = {r["call_id"] for r in res if "OVER-PROMISE" in r["failed_rules"]}
    assert expected <= flagged
    raw = (out / "results.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    csv_lines = raw[3:].decode("utf-8").split("\r\n")
    assert csv_lines[0].startswith("call_id,status,score,grade") and len(csv_lines) == N + 2
    assert csv_lines[-1] == ""
    # numbers as numbers, times as Excel reads them
    first = dict(zip(csv_lines[0].split(","), csv_lines[1].split(","), strict=True))
    assert float(first["score"]) > 0 and first["findings"].isdigit()
    assert re.fullmatch(r"2026-03-0\d \d\d:\d\d:00", first["started_at"])
    wb = openpyxl.load_workbook(out / "results.xlsx", read_only=True)
    xrows = list(wb["results"].iter_rows(values_only=True))
    assert len(xrows) == N + 1 and xrows[1][0] == first["call_id"]
    assert isinstance(xrows[1][3], datetime) and isinstance(xrows[1][4], (int, float))
    n_findings = sum(1 for _ in wb["findings"].iter_rows(min_row=2))
    assert n_findings == sum(
        len(x["findings"])
        for x in map(json.loads, (out / "results.jsonl").read_text("utf-8").splitlines())
    )
    wb.close()

    # the report links every newly flagged call to its evidence
    html = (out / "report.html").read_text(encoding="utf-8")
    some = sorted(expected)[0]
    assert f'href="#{anchor(some)}"' in html and f'id="{anchor(some)}"' in html
    assert "<mark>" + NEW_PHRASE + "</mark>" in html
    assert "勿过度承诺" in html  # Chinese rule descriptions
    assert html.count("<svg") >= 5


def test_unchanged_pack_gives_empty_diff(
    archive: tuple[Path, set[str], set[str]], tmp_path: Path
) -> None:
    store, _, _ = archive
    from qa_pipeline.rules import default_pack_path

    out = tmp_path / "out"
    summary = rescore(
        RescoreOptions(store=store, baseline=default_pack_path(), out=out, progress=False)
    )
    assert summary.diff["changed_calls"] == 0
    lines = (out / "diff.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["changed_calls"] == 0
