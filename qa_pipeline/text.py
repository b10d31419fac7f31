"""Text normalisation for Chinese ASR output.

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
import re
import unicodedata

import opencc

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


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese (OpenCC ``t2s``)."""
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
