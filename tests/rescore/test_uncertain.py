"""Uncertain verdicts in the re-score outputs: results, CSV, diff and report show them apart
from failures, and they do not count in scores."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

from qa_pipeline.messages import replace
from qa_pipeline.rescore import RescoreOptions, rescore
from qa_pipeline.rules import default_pack_path

from .synth import OLD_LINE, fill_store, make_call


def test_low_confidence_banned_phrase_is_uncertain_in_every_output(tmp_path: Path) -> None:
    rng = random.Random(5)
    calls = [make_call(i, rng, agent_old=(i < 2)) for i in range(4)]
    # call 0 says the banned line clearly; call 1 says it in a turn heard badly
    t = calls[1]
    utts = tuple(
        replace(u, confidence=0.2) if u.text == OLD_LINE else replace(u, confidence=0.9)
        for u in t.utterances
    )
    calls[1] = type(t)(call=t.call, utterances=utts, ended=t.ended)
    store = tmp_path / "qa.sqlite"
    fill_store(store, calls)
    strict = tmp_path / "strict-pack"  # the default pack with uncertain verdicts turned off
    shutil.copytree(default_pack_path(), strict, ignore=shutil.ignore_patterns("fixtures"))
    hdr = strict / "pack.yaml"
    text = hdr.read_text(encoding="utf-8")
    assert "uncertain_confidence: 0.5" in text
    hdr.write_text(text.replace("uncertain_confidence: 0.5", "uncertain_confidence: 0"), "utf-8")

    out = tmp_path / "out"
    rescore(RescoreOptions(store=store, out=out, progress=False))
    res = {
        r["call_id"]: r
        for r in map(json.loads, (out / "results.jsonl").read_text("utf-8").splitlines())
    }
    clear, unsure = res["call-00000"], res["call-00001"]
    assert "OVER-PROMISE" in clear["failed_rules"] and clear["review"] is False
    assert "OVER-PROMISE" not in unsure["failed_rules"] and unsure["review"] is True
    # other rules missing a phrase anywhere in the call rest on that turn too
    unsure_rules = unsure["uncertain_rules"]
    assert "OVER-PROMISE" in unsure_rules
    assert all(unsure["verdicts"][r][0] == "uncertain" for r in unsure_rules)
    verdict, deduction, pending, why = unsure["verdicts"]["OVER-PROMISE"]
    assert (verdict, deduction, pending) == ("uncertain", 0, 3) and "0.20" in why
    assert not any(f["rule_id"] in unsure_rules for f in unsure["findings"])
    rows = {
        r["call_id"]: r
        for r in csv.DictReader((out / "results.csv").open(encoding="utf-8-sig", newline=""))
    }
    assert rows["call-00001"]["review"] == "true" and rows["call-00000"]["review"] == "false"
    assert rows["call-00001"]["uncertain_rules"].split() == unsure_rules
    html = (out / "report.html").read_text("utf-8")
    assert "need review (uncertain verdicts)" in html

    # the same archive with uncertain verdicts turned off, against the default pack
    out2 = tmp_path / "out2"
    rescore(
        RescoreOptions(
            store=store, rules=strict, baseline=default_pack_path(), out=out2, progress=False
        )
    )
    lines = [json.loads(x) for x in (out2 / "diff.jsonl").read_text("utf-8").splitlines()]
    rule = next(x for x in lines if x["type"] == "rule" and x["rule_id"] == "OVER-PROMISE")
    assert rule["newly_flagged"] == ["call-00001"] and rule["no_longer_uncertain"] == ["call-00001"]
    call = next(x for x in lines if x["type"] == "call" and x["call_id"] == "call-00001")
    assert call["old_review"] is True and call["new_review"] is False
    assert sorted(call["no_longer_uncertain"]) == sorted(unsure_rules)
    assert set(unsure_rules) <= set(call["newly_flagged"])
    # the pending deductions were not taken: they are what turning review off costs
    pending_total = sum(unsure["verdicts"][r][2] for r in unsure_rules)
    assert call["new_score"] == max(unsure["score"] - pending_total, 0)
