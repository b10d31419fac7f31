"""Review tests: a store on each backend (the ``store_url`` fixture: a SQLite file, a fresh
PostgreSQL database), a small pack, calls scored by it and stored as the pipeline stores
them."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa_pipeline.messages import Scorecard
from qa_pipeline.rules import RulePack, load_pack, score_transcript
from qa_pipeline.store import Store, open_store, result_row
from qa_pipeline.testing import transcript
from qa_pipeline.transcript import Transcript

HEADER = """\
name: revtest
version: "1.0"
settings:
  fail_grade: 不满意
  grades:
    - {name: 非常满意, label: very satisfied, min_score: 90}
    - {name: 满意, label: satisfied, min_score: 80}
    - {name: 基本满意, label: basically satisfied, min_score: 70}
    - {name: 不满意, label: dissatisfied, min_score: 0}
  uncertain_confidence: 0.5
"""

RULES = """\
rules:
  - id: GREET
    description: 问候
    severity: major
    weight: 10
    scope: {role: agent, first_turns: 2}
    require: {keyword: [您好]}
  - id: BAN-POLICY
    description: 不推诿
    severity: critical
    weight: 20
    scope: {role: agent}
    forbid: {keyword: [公司规定]}
  - id: NO-PHONE
    description: 坐席不复述客户手机号
    severity: minor
    weight: 5
    scope: {role: agent}
    forbid: {entity: mobile}
  - id: BAN-N
    description: 不说不知道（按次扣分）
    severity: minor
    weight: 2
    deduct: per_occurrence
    scope: {role: agent}
    forbid: {keyword: [不知道]}
"""


def write_pack(d: Path, rules: str = RULES) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "pack.yaml").write_text(HEADER, encoding="utf-8")
    (d / "rules.yaml").write_text(textwrap.dedent(rules), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pack(tmp_path_factory.mktemp("revpack"))


@pytest.fixture(scope="session")
def pack(pack_dir: Path) -> RulePack:
    return load_pack(pack_dir)


def call_a(call_id: str = "A1") -> Transcript:
    """Greeted; the agent reads the customer's mobile back (NO-PHONE fails), says 不知道
    twice (BAN-N: 2 x 2), and 公司规定 heard at low confidence (BAN-POLICY uncertain)."""
    t = transcript(
        [
            ("a", 0.5, 3.0, "您好，请问有什么可以帮您"),
            ("c", 3.5, 7.0, "我的手机号是13812345678"),
            ("a", 7.5, 11.0, "好的，您的号码是13812345678对吗"),
            ("a", 11.5, 13.0, "不知道"),
            ("a", 13.5, 15.0, "这个我不知道"),
            ("a", 15.5, 18.0, "这是公司规定"),
        ],
        call_id=call_id,
    )
    utts = list(t.utterances)
    from qa_pipeline.messages import replace

    utts[5] = replace(utts[5], confidence=0.3)
    from dataclasses import replace as dc_replace

    return dc_replace(t, utterances=tuple(utts))


def call_clean(call_id: str = "B1") -> Transcript:
    return transcript(
        [("a", 0.5, 3.0, "您好，请问有什么可以帮您"), ("c", 3.5, 5.0, "查一下话费")],
        call_id=call_id,
    )


def store_call(
    st: Store,
    t: Transcript,
    pack: RulePack,
    *,
    run_id: str = "active-1",
    role: str = "active",
    created: float | None = None,
) -> Scorecard:
    """Score ``t`` with ``pack`` and store transcript, run and result as the pipeline does."""
    card = score_transcript(pack, t)
    cid = t.call.call_id
    st.put_transcript(t, audio_sha=f"sha-{cid}", settings_hash_="s1")
    st.start_run(
        run_id, pack_name=pack.name, pack_version=pack.version, role=role, inputs="", args={},
        fresh=False,
    )  # fmt: skip
    now = created if created is not None else time.time()
    st.put_results([result_row(run_id, cid, f"sha-{cid}:s1", card, now)])
    return card


@pytest.fixture
def db(store_url: str) -> Iterator[Store]:
    """A store on each backend (``store_url``: SQLite, a fresh PostgreSQL database)."""
    with open_store(store_url) as st:
        yield st
