"""Text -> redacted text plus the spans of its masks (:class:`Redactor`)."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from ..errors import ConfigError, Location
from ..messages import EntitySpan
from .config import PrivacyConfig
from .detect import find_entities
from .entities import LABELS, NUMERIC, Entity, Kind

#: hex characters of the keyed hash written in masks and spans
DIGEST_CHARS = 12


@dataclass(frozen=True, slots=True)
class Redacted:
    """A redacted text and where its masks stand (offsets in ``text``)."""

    text: str
    spans: tuple[EntitySpan, ...] = ()


class Redactor:
    """Masks personal data as ``config`` says. The key of the keyed hash comes from the
    environment variable ``config.key_env`` (or ``key``); without one, spans carry no
    digest, and ``hash`` mode is a configuration error naming the variable."""

    def __init__(self, config: PrivacyConfig | None = None, key: bytes | None = None) -> None:
        self.config = config or PrivacyConfig()
        if key is None:
            env = os.environ.get(self.config.key_env)
            key = env.encode() if env else None
        if self.config.mode == "hash" and not key:
            raise ConfigError(
                [
                    (
                        Location("privacy"),
                        f"privacy.mode hash needs a key in the environment variable "
                        f"{self.config.key_env}",
                    )
                ]
            )
        self._key = key

    def digest(self, kind: str, value: str) -> str:
        """The keyed hash of a canonical value ("" without a key)."""
        if not self._key:
            return ""
        mac = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:DIGEST_CHARS]

    def _tail(self, e: Entity) -> str:
        n = self.config.keep_last
        if not n or e.kind not in NUMERIC:
            return ""
        return e.value[-n:]

    def _mask(self, e: Entity, original: str, digest: str, tail: str) -> str:
        mode = self.config.mode
        label = LABELS[e.kind]
        if mode == "mask":
            return "*" * max(1, len(original) - len(tail)) + tail
        suffix = f"…{tail}" if tail else ""
        if mode == "hash":
            return f"[{label}#{digest}{suffix}]"
        return f"[{label}{suffix}]"

    def redact(self, text: str) -> Redacted:
        """``text`` with its personal data masked, and the masks' spans."""
        if not self.config.redact or not text:
            return Redacted(text)
        found = find_entities(text)
        if not found:
            return Redacted(text)
        parts: list[str] = []
        spans: list[EntitySpan] = []
        pos = 0
        out_len = 0
        for e in found:
            parts.append(text[pos : e.start])
            out_len += e.start - pos
            digest = self.digest(e.kind, e.value)
            tail = self._tail(e)
            mask = self._mask(e, text[e.start : e.end], digest, tail)
            spans.append(EntitySpan(e.kind.value, out_len, out_len + len(mask), digest, tail))
            parts.append(mask)
            out_len += len(mask)
            pos = e.end
        parts.append(text[pos:])
        return Redacted("".join(parts), tuple(spans))

    def text(self, text: str) -> str:
        """Only the redacted text (log lines, metadata, notifications)."""
        return self.redact(text).text

    def mask_value(self, kind: Kind, original: str, value: str) -> str:
        """The mask of a whole value known to be ``kind`` (a caller number in call
        metadata), as :meth:`redact` would write it; ``value``: its canonical form."""
        if not self.config.redact:
            return original
        e = Entity(kind, 0, len(original), value)
        return self._mask(e, original, self.digest(kind, value), self._tail(e))
