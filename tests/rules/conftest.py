"""Helpers: build small packs and calls in tmp dirs."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.messages import CallEnded, CallInfo, Direction, Role, Utterance
from qa_pipeline.rules import RulePack, load_pack
from qa_pipeline.transcript import Transcript

PACK_HEADER = """\
name: test
version: "0.1"
settings:
  company_name: 华冠
  thresholds: {gap: 5}
  phrases: {hold: [请稍候, 请您稍等]}
"""

Turn = tuple[str, float, float, str] | tuple[str, float, float, str, float]


@pytest.fixture(scope="session")
def default_pack() -> RulePack:
    return load_pack()


@pytest.fixture
def make_pack(tmp_path: Path) -> Callable[..., RulePack]:
    counter = {"n": 0}

    def make(rules: str, header: str = PACK_HEADER, **kw: Any) -> RulePack:
        counter["n"] += 1
        d = tmp_path / f"pack{counter['n']}"
        d.mkdir()
        (d / "pack.yaml").write_text(textwrap.dedent(header), encoding="utf-8")
        (d / "rules.yaml").write_text(textwrap.dedent(rules), encoding="utf-8")
        return load_pack(d, **kw)

    return make


def transcript(
    turns: Sequence[Turn],
    *,
    direction: str = "inbound",
    started_at: datetime | None = datetime(2026, 3, 3, 10, 0),
    duration: float | None = None,
    channel_ends: tuple[float, ...] = (),
    call_id: str = "t",
) -> Transcript:
    utts = []
    for i, t in enumerate(turns):
        role = Role("agent" if t[0] in ("a", "agent") else "customer")
        utts.append(
            Utterance(
                call_id=call_id,
                index=i,
                channel=0 if role == Role.AGENT else 1,
                role=role,
                start=t[1],
                end=t[2],
                text=t[3],
                level_dbfs=t[4] if len(t) > 4 else None,  # type: ignore[misc]
            )
        )
    end = duration if duration is not None else max((u.end for u in utts), default=0.0)
    call = CallInfo(call_id=call_id, started_at=started_at, direction=Direction(direction))
    return Transcript(
        call=call,
        utterances=tuple(utts),
        ended=CallEnded(call_id=call_id, end=end, channel_ends=channel_ends),
    )


def verdict(card: Any, rule_id: str) -> str:
    for v in card.verdicts:
        if v.rule_id == rule_id:
            return str(v.verdict.value)
    raise KeyError(rule_id)
