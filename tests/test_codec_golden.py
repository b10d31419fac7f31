"""The message codecs write what they always wrote: every encoding in
``tests/data/codec_golden.json`` (messages, transcript documents, events, store keys and
rows) was produced by the hand-written codecs before the codecs were derived from the
message types, and must come out byte for byte the same."""

from __future__ import annotations

import json

import pytest
from codec_samples import GOLDEN, encodings

_GOLDEN: dict[str, str] = json.loads(GOLDEN.read_text(encoding="utf-8"))
_NOW = encodings()


def test_golden_covers_every_encoding() -> None:
    assert sorted(_NOW) == sorted(_GOLDEN)


@pytest.mark.parametrize("name", sorted(_GOLDEN))
def test_encoding_unchanged(name: str) -> None:
    assert _NOW[name] == _GOLDEN[name]
