"""Helpers: build small packs and calls in tmp dirs."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.rules import RulePack, load_pack
from qa_pipeline.testing import Turn as Turn
from qa_pipeline.testing import transcript as transcript

PACK_HEADER = """\
name: test
version: "0.1"
settings:
  company_name: 华冠
  thresholds: {gap: 5}
  phrases: {hold: [请稍候, 请您稍等]}
"""


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


def verdict(card: Any, rule_id: str) -> str:
    for v in card.verdicts:
        if v.rule_id == rule_id:
            return str(v.verdict.value)
    raise KeyError(rule_id)
