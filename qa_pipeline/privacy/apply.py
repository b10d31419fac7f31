"""Redaction applied to what the pipeline carries: utterances, transcripts, call metadata,
evidence, and the JSON documents and events written before redaction existed.

Every function here is idempotent: masks already in a text (an utterance's ``entities``,
or ``[手机号]``-style masks of ``label``/``hash`` mode recognised in the text) are kept as
they are and never searched again, so re-redacting redacted data changes nothing. The
original text is not kept anywhere.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from ..messages import CallInfo, EntitySpan, Utterance, from_dict, replace, to_dict
from ..transcript import Transcript
from .config import PrivacyConfig
from .entities import LABELS, MASK_RE, Kind
from .redact import Redacted, Redactor

__all__ = [
    "PHONE_KEYS",
    "default_redactor",
    "is_phone_key",
    "masks_in",
    "no_redaction",
    "redact_call",
    "redact_call_dict",
    "redact_evidence_dict",
    "redact_json",
    "redact_text",
    "redact_transcript",
    "redact_utterances",
    "redact_utterance",
    "redact_utterance_dict",
]

_KIND_OF_LABEL = {label: kind for kind, label in LABELS.items()}
#: words of call metadata keys whose value is a phone number (a telephony platform's caller
#: or called number: ``From``, ``caller_id``, ``callerNumber``, ``ANI``): such a value is
#: masked whole when it holds seven digits or more, whatever the recognisers say
PHONE_KEYS = frozenset(
    {"ani", "dnis", "cli", "caller", "callee", "called", "calling", "from", "to", "phone",
     "mobile", "tel", "telephone", "msisdn"}
)  # fmt: skip
_KEY_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
MIN_PHONE_DIGITS = 7
#: the last word of a metadata key that names a platform's identifier (``call_sid``,
#: ``streamSid``, ``uuid``, ``channel_id``): left as given, like the call id, unless the key
#: also names a phone (``caller_id``)
ID_KEY_ENDS = frozenset({"sid", "id", "uuid", "guid", "uniqueid", "linkedid"})


def is_identifier_key(key: str) -> bool:
    """Whether a metadata key names an identifier (:data:`ID_KEY_ENDS`), not a phone."""
    words = _KEY_WORDS.findall(key)
    return bool(words) and words[-1].lower() in ID_KEY_ENDS and not is_phone_key(key)


def is_phone_key(key: str) -> bool:
    """Whether a metadata key names a phone number (one of its words is in
    :data:`PHONE_KEYS`: ``caller_id``, ``callerNumber`` and ``From`` do, ``order_no``
    does not)."""
    return any(w.lower() in PHONE_KEYS for w in _KEY_WORDS.findall(key))


@functools.lru_cache(maxsize=1)
def default_redactor() -> Redactor:
    """A :class:`Redactor` of the default ``privacy:`` section (label mode; the keyed
    hash's key from the environment if set). Used where no configured one is passed."""
    return Redactor(PrivacyConfig())


@functools.lru_cache(maxsize=1)
def no_redaction() -> Redactor:
    """A redactor that changes nothing (``privacy.redact: false``)."""
    return Redactor(PrivacyConfig(redact=False))


def masks_in(text: str) -> tuple[EntitySpan, ...]:
    """The label/hash-mode masks already in ``text``, as spans (kind from the label)."""
    if "[" not in text:
        return ()
    return tuple(
        EntitySpan(
            _KIND_OF_LABEL[m.group(1)].value, m.start(), m.end(), m.group(2) or "", m.group(3) or ""
        )
        for m in MASK_RE.finditer(text)
    )


def _valid(spans: Sequence[EntitySpan], text: str) -> bool:
    pos = 0
    for s in spans:
        if s.start < pos or s.end <= s.start or s.end > len(text):
            return False
        pos = s.end
    return True


def redact_text(
    text: str, redactor: Redactor, keep: Sequence[EntitySpan] | None = None
) -> Redacted:
    """``text`` redacted, keeping the masks already in it: ``keep`` (an utterance's
    ``entities``) or, without them, the masks :func:`masks_in` recognises. Only the text
    between masks is searched; the result's spans hold the kept masks and the new ones."""
    if not text or not redactor.config.redact:
        return Redacted(text, tuple(keep or ()))
    old = tuple(keep) if keep else masks_in(text)
    if old and not _valid(old, text):
        old = masks_in(text)
    if not old:
        return redactor.redact(text)
    parts: list[str] = []
    spans: list[EntitySpan] = []
    pos = 0
    out = 0

    def gap(segment: str) -> None:
        nonlocal out
        r = redactor.redact(segment)
        parts.append(r.text)
        spans.extend(replace(s, start=s.start + out, end=s.end + out) for s in r.spans)
        out += len(r.text)

    for s in old:
        gap(text[pos : s.start])
        spans.append(replace(s, start=out, end=out + s.end - s.start))
        parts.append(text[s.start : s.end])
        out += s.end - s.start
        pos = s.end
    gap(text[pos:])
    return Redacted("".join(parts), tuple(spans))


def _redact_raw(raw: str, redactor: Redactor, found_in_text: int) -> str | None:
    """The ASR's raw decode redacted: as written, or in its NFKC form (full-width digits)
    when that finds more. None when it finds fewer entities than the normalised text held
    (a form the recognisers cannot read): the caller keeps the redacted text instead."""
    best = redact_text(raw, redactor)
    folded = unicodedata.normalize("NFKC", raw)
    if folded != raw:
        other = redact_text(folded, redactor)
        if len(other.spans) > len(best.spans):
            best = other
    if len(best.spans) < found_in_text:
        return None
    return best.text


def redact_utterance(u: Utterance, redactor: Redactor) -> Utterance:
    """``u`` with ``text`` and ``raw_text`` redacted and ``entities`` the masks of
    ``text`` (offsets in the redacted text)."""
    if not redactor.config.redact:
        return u
    r = redact_text(u.text, redactor, u.entities)
    raw = u.raw_text
    if raw:
        got = _redact_raw(raw, redactor, len(r.spans))
        raw = r.text if got is None else got
    if r.text == u.text and r.spans == u.entities and raw == u.raw_text:
        return u
    return replace(u, text=r.text, raw_text=raw, entities=r.spans)


def redact_utterances(t: Transcript, redactor: Redactor) -> Transcript:
    """Every utterance of ``t`` redacted (its call metadata as it is: redacted where it
    came in)."""
    if not redactor.config.redact:
        return t
    from dataclasses import replace as dc_replace

    return dc_replace(t, utterances=tuple(redact_utterance(u, redactor) for u in t.utterances))


def redact_transcript(t: Transcript, redactor: Redactor) -> Transcript:
    """Every utterance and the call metadata of ``t`` redacted."""
    if not redactor.config.redact:
        return t
    from dataclasses import replace as dc_replace

    return dc_replace(redact_utterances(t, redactor), call=redact_call(t.call, redactor))


def _redact_value(key: str, value: str, redactor: Redactor) -> str:
    if is_identifier_key(key):
        return value
    digits = "".join(c for c in MASK_RE.sub("", value) if c.isdigit())  # masks: kept
    if len(digits) >= MIN_PHONE_DIGITS and is_phone_key(key):
        kind = Kind.MOBILE if len(digits) >= 11 and digits[-11] == "1" else Kind.LANDLINE
        return redactor.mask_value(kind, value, digits[-11:] if kind is Kind.MOBILE else digits)
    return redact_text(value, redactor).text


def redact_call(info: CallInfo, redactor: Redactor) -> CallInfo:
    """Call metadata from outside (a telephony platform's start frame, a sidecar file)
    redacted: every metadata value (a value under a phone-like key such as ``caller`` or
    ``from`` masked whole) and ``source`` (a file name may hold a number). The call id,
    the agent id and metadata keys naming identifiers (:func:`is_identifier_key`: a
    Twilio ``call_sid``, a ``uuid``) stay as they are."""
    if not redactor.config.redact:
        return info
    meta = tuple((k, _redact_value(k, v, redactor)) for k, v in info.metadata)
    source = redact_text(info.source, redactor).text if info.source else info.source
    if meta == info.metadata and source == info.source:
        return info
    return replace(info, metadata=meta, source=source)


# -- JSON documents and events written before redaction (migration, imports) --------------


def _spans_of(d: dict[str, Any]) -> list[EntitySpan]:
    """The spans an utterance object carries (one that does not fit is left out)."""
    out = []
    for e in d.get("entities") or ():
        with contextlib.suppress(ValueError, TypeError):
            out.append(from_dict(e, EntitySpan))
    return out


def redact_utterance_dict(d: dict[str, Any], redactor: Redactor) -> bool:
    """An utterance object of a document or event (``text``, ``raw_text``,
    ``entities``), redacted in place. Whether it changed."""
    text = d.get("text")
    if not isinstance(text, str):
        return False
    r = redact_text(text, redactor, _spans_of(d))
    changed = False
    if r.text != text:
        d["text"] = r.text
        d["entities"] = to_dict(r.spans)
        changed = True
    raw = d.get("raw_text")
    if isinstance(raw, str) and raw:
        got = _redact_raw(raw, redactor, len(r.spans))
        new_raw = r.text if got is None else got
        if new_raw != raw:
            d["raw_text"] = new_raw
            changed = True
    return changed


def redact_call_dict(d: dict[str, Any], redactor: Redactor) -> bool:
    """A ``call`` object (metadata values, ``source``) redacted in place."""
    changed = False
    meta = d.get("metadata")
    if isinstance(meta, dict):
        for k, v in list(meta.items()):
            if isinstance(v, str):
                nv = _redact_value(str(k), v, redactor)
                if nv != v:
                    meta[k] = nv
                    changed = True
    elif isinstance(meta, list):  # a CallInfo message's (key, value) pairs
        for pair in meta:
            if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str):
                nv = _redact_value(str(pair[0]), pair[1], redactor)
                if nv != pair[1]:
                    pair[1] = nv
                    changed = True
    src = d.get("source")
    if isinstance(src, str) and src:
        ns = redact_text(src, redactor).text
        if ns != src:
            d["source"] = ns
            changed = True
    return changed


def redact_evidence_dict(d: dict[str, Any], redactor: Redactor) -> bool:
    """An evidence object (``text``, ``matched``) redacted in place."""
    changed = False
    for k in ("text", "matched"):
        v = d.get(k)
        if isinstance(v, str) and v:
            nv = redact_text(v, redactor).text
            if nv != v:
                d[k] = nv
                changed = True
    return changed


def redact_json(obj: Any, redactor: Redactor) -> int:
    """Redact, in place, every utterance, call and evidence object inside a JSON value (a
    transcript document, an event envelope, a list of findings): recognised by their keys.
    Returns how many objects changed."""
    n = 0
    if isinstance(obj, list):
        for v in obj:
            n += redact_json(v, redactor)
        return n
    if not isinstance(obj, dict):
        return 0
    if "text" in obj and "channel" in obj and "start" in obj:  # an utterance
        n += redact_utterance_dict(obj, redactor)
    elif "matched" in obj or "utterance_index" in obj:  # evidence
        n += redact_evidence_dict(obj, redactor)
    if "call_id" in obj and isinstance(obj.get("metadata"), (dict, list)):  # a call object
        n += redact_call_dict(obj, redactor)
    for k, v in obj.items():
        if isinstance(v, (dict, list)) and k not in ("entities",):
            n += redact_json(v, redactor)
    return n
