"""Overturned verdicts as rule fixtures (``qa-pipeline rules fixtures-from-reviews``): every
human correction becomes a regression test of the pack.

One fixture per overturned (call, rule): the call's stored, redacted turns with personal
data as placeholders the fixture runner reads as masks (``[手机号]``;
:func:`qa_pipeline.rules.fixtures.fixture_from_transcript`), its metadata, and ``expect``
the reviewed verdict of that rule (``ok`` for passed, ``fire`` for failed). One YAML file
per call, ``review-<call id>.yaml``, holding its fixtures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..rules.fixtures import EXPECT_OF, fixture_from_transcript
from .model import ReviewError
from .repo import Db, Overturn, overturned, transcript

__all__ = ["Exported", "export_fixtures"]

_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")


@dataclass(frozen=True, slots=True)
class Exported:
    path: Path
    fixtures: int


def _safe(s: str) -> str:
    return _UNSAFE.sub("_", s).strip("._") or "call"


def export_fixtures(db: Db, out: Path, since: float | None = None) -> list[Exported]:
    """Write the fixtures of every overturn (at or after ``since``) under ``out``; the
    files written. A call whose transcript is no longer stored is an error naming it."""
    by_call: dict[str, list[Overturn]] = {}
    for o in overturned(db, since):
        by_call.setdefault(o.call_id, []).append(o)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cid, items in sorted(by_call.items()):
        t = transcript(db, cid)
        if t is None:
            raise ReviewError(f"call {cid}: its transcript is no longer in the store")
        fixtures = []
        for o in items:
            desc = (
                f"复核推翻: {o.rule_id} {o.machine.value} -> {o.reviewed.value} "
                f"({o.reviewer}, v{o.version}){': ' + o.comment if o.comment else ''}"
            )
            fixtures.append(
                fixture_from_transcript(
                    f"review-{cid}-{o.rule_id}", t, {o.rule_id: EXPECT_OF[o.reviewed]}, desc
                )
            )
        path = out / f"review-{_safe(cid)}.yaml"
        header = f"# overturned verdicts of call {cid} (qa-pipeline rules fixtures-from-reviews)\n"
        path.write_text(
            header + yaml.safe_dump({"fixtures": fixtures}, allow_unicode=True, sort_keys=False),
            encoding="utf-8",
        )
        written.append(Exported(path, len(fixtures)))
    return written
