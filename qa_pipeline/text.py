"""The text step, between the ASR and the rules: a kept decode becomes an utterance, its
text normalised once (:func:`utterance`, :func:`utterances`); and the normalisation itself.

The ASR hands on its decode as Whisper wrote it (:attr:`AsrResult.text
<qa_pipeline.asr.result.AsrResult>`, after the hallucination guard); ``Utterance.text`` is
normalised here (:func:`normalise`) and nowhere else on the way, so the rules can trust it.

Whisper writes traditional characters, full-width forms, mixed punctuation and both
Chinese numerals and digits. Rules match against a *match form*: simplified,
half-width, lower-case, without punctuation or spaces.

* :func:`normalise` -> display text: simplified, NFKC (full-width -> half-width),
  Chinese punctuation kept but unified, runs of spaces collapsed.
* :func:`match_form` -> the form phrase rules match against.
* :func:`to_digits` / :func:`to_chinese_numerals` -> numeral variants for rules.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

import opencc

from .messages import Utterance
from .privacy import Redactor, default_redactor, redact_utterance

if TYPE_CHECKING:
    from .asr.result import AsrResult

_PUNCT_RE = re.compile(r"[\s\W_]+", re.UNICODE)
_SPACES_RE = re.compile(r"\s+")
# NFKC turns Chinese full stops/commas into ASCII; restore the Chinese forms for display
# after the width fold so the transcript reads naturally.
_DISPLAY_PUNCT = str.maketrans({",": "，", "?": "？", "!": "！", ";": "；", ":": "："})
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")


@functools.lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


#: characters OpenCC's ``t2s`` changes only inside a phrase of its dictionary (沈浸 -> 沉浸,
#: 打坏 -> 打坯, 反覆 -> 反复, 明瞭 -> 明了, ...): every phrase of opencc 1.4.2's TSPhrases
#: whose conversion differs from it holds one of these or a character ``t2s`` changes alone
_PHRASE_ONLY = "沈坏覆藉瞭哩甦衹"
# where the characters t2s changes alone lie (CJK radicals to Yi, compatibility
# ideographs, the supplementary ideographic planes)
_T2S_RANGES = ((0x2E80, 0xA000), (0xF900, 0xFB00), (0x20000, 0x32000))


@functools.lru_cache(maxsize=1)
def _t2s_changes() -> frozenset[str]:
    """Every character ``t2s`` converts on its own (one conversion of them all, newline
    apart: no dictionary key holds a newline), and :data:`_PHRASE_ONLY`."""
    chars = [chr(i) for lo, hi in _T2S_RANGES for i in range(lo, hi)]
    out = str(_t2s().convert("\n".join(chars))).split("\n")
    return frozenset(c for c, o in zip(chars, out, strict=True) if o != c) | frozenset(_PHRASE_ONLY)


def is_simplified(text: str) -> bool:
    """Whether ``t2s`` would leave ``text`` as it is, told without converting it: it holds
    none of the characters that ``t2s`` changes alone or in a phrase. (Normalised text,
    ``Utterance.text``, is simplified already: this is what a second pass costs.)"""
    return _t2s_changes().isdisjoint(text)


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese (OpenCC ``t2s``); text that is simplified already
    (:func:`is_simplified`) is returned without a conversion."""
    if _t2s_changes().isdisjoint(text):
        return text
    return str(_t2s().convert(text))


def normalise(text: str) -> str:
    """Display form: simplified, half-width letters/digits, Chinese punctuation."""
    text = unicodedata.normalize("NFKC", text)
    text = to_simplified(text)
    text = _SPACES_RE.sub(" ", text).strip()
    text = _SPACE_BETWEEN_CJK.sub("，", text)
    if re.search(f"[{_CJK}]", text):
        text = text.translate(_DISPLAY_PUNCT)
    return text


def match_form(text: str) -> str:
    """The form rules match on: simplified, half-width, lower-case, no punctuation/spaces."""
    if not unicodedata.is_normalized("NFKC", text):  # a quick check; half the time it is
        text = unicodedata.normalize("NFKC", text)
    text = to_simplified(text).lower()
    return _PUNCT_RE.sub("", text)


def to_digits(text: str) -> str:
    """Chinese numerals -> Arabic digits (``三百二十`` -> ``320``), via cn2an."""
    import cn2an

    try:
        return str(cn2an.transform(text, "cn2an"))
    except (ValueError, KeyError, IndexError):
        return text


def to_chinese_numerals(text: str) -> str:
    """Arabic digits -> Chinese numerals (``320`` -> ``三百二十``), via cn2an."""
    import cn2an

    try:
        return str(cn2an.transform(text, "an2cn"))
    except (ValueError, KeyError, IndexError):
        return text


def has_cjk(text: str) -> bool:
    return re.search(f"[{_CJK}]", text) is not None


def utterance(r: AsrResult, index: int, redactor: Redactor | None = None) -> Utterance:
    """The text step for one kept result: the utterance the rules see, its text the
    normalised decode (none for speech dropped as unreadable; audio level measured here),
    personal data redacted (``text`` and ``raw_text`` masked, the masks' spans in
    ``entities``) by ``redactor`` (default: the default ``privacy:`` section's; the
    pipeline and the live service pass the configured one)."""
    from .audio import level_dbfs

    s = r.segment
    lvl = level_dbfs(s.samples)
    dropped = r.dropped_reason is not None
    u = Utterance(
        call_id=s.call_id,
        index=index,
        channel=s.channel,
        role=s.role,
        start=s.start,
        end=s.end,
        text="" if dropped or not r.text else normalise(r.text),
        raw_text=r.raw_text,
        confidence=0.0 if dropped else r.confidence,
        no_speech_prob=r.no_speech_prob,
        level_dbfs=round(lvl, 2) if math.isfinite(lvl) else None,
        language=r.language,
    )
    return redact_utterance(u, redactor if redactor is not None else default_redactor())


def utterances(results: Iterable[AsrResult], redactor: Redactor | None = None) -> list[Utterance]:
    """Kept results -> Utterances, numbered in call order (start time, then channel),
    redacted as :func:`utterance` says. Speech whose decode was dropped as unreadable
    (:data:`~qa_pipeline.asr.result.UNREADABLE_REASONS`) is kept as an utterance without
    text at confidence 0 (its decode, redacted, in ``raw_text``)."""
    from .asr.result import kept_in_order

    return [utterance(r, i, redactor) for i, r in enumerate(kept_in_order(results))]
