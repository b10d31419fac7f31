"""Delivery channels. ``send`` either delivers or raises :class:`NotifyError` with a short,
bounded ``reason`` (a metric label) and whether trying again can help.

* generic webhook: POST JSON, any 2xx is delivered;
* WeCom (企业微信) group robot: POST ``{"msgtype": "markdown", "markdown": {"content": …}}``
  (or ``text``); the reply ``{"errcode": 0, "errmsg": "ok"}`` is delivered, any other
  ``errcode`` is a failure even with HTTP 200 (45009 = rate limited and -1 = busy: retried);
* DingTalk (钉钉) robot: POST ``{"msgtype": "markdown", "markdown": {"title": …, "text": …},
  "at": {…}}``; with a secret the URL gets ``timestamp`` (ms) and ``sign`` =
  urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))); ``errcode`` != 0 is a
  failure (130101 = sending too fast and -1 = busy: retried; 310000 = signature / keyword /
  IP check failed: not retried);
* SMTP: a UTF-8 e-mail (subject and body) via ``smtplib`` over TLS (STARTTLS by default, a
  server without it is refused; implicit TLS with ``ssl``; in clear only when the config says
  ``insecure``) and login; 4xx replies and lost connections are retried, 5xx and TLS
  failures are not.

The generic webhook's body is signed (``X-QA-Timestamp``, ``X-QA-Signature: sha256=<hex>``
= HMAC-SHA256(secret, ``"<timestamp>.<body>"``)); :func:`verify_webhook` is the receiver's
check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

from ..errors import QAError
from .config import (
    DingTalkNotifierConfig,
    NotifierConfig,
    SmtpNotifierConfig,
    WebhookNotifierConfig,
    WeComNotifierConfig,
)
from .message import Notification, one_line

USER_AGENT = "qa-pipeline-notify/1"

#: WeCom robot errcodes worth retrying: 45009 api freq out of limit, -1 system busy.
WECOM_RETRY = frozenset({45009, -1})
#: DingTalk robot errcodes worth retrying: 130101 send too fast, -1 system busy.
DINGTALK_RETRY = frozenset({130101, -1})

WECOM_MARKDOWN_MAX_BYTES = 4096
DINGTALK_TEXT_MAX_CHARS = 20000


class NotifyError(QAError):
    def __init__(self, reason: str, retryable: bool, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.retryable = retryable


class Notifier(Protocol):
    name: str

    def send(self, n: Notification) -> None: ...


def _post_json(url: str, body: dict[str, Any], timeout: float, headers: dict[str, str]) -> bytes:
    return _post(url, json.dumps(body, ensure_ascii=False).encode(), timeout, headers)


def _post(url: str, data: bytes, timeout: float, headers: dict[str, str]) -> bytes:
    h = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    h.update(headers)
    req = urllib.request.Request(url, data=data, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return bytes(r.read(65536))
    except urllib.error.HTTPError as e:
        status = e.code
        retry = status == 429 or status == 408 or status >= 500
        raise NotifyError(f"http_{status}", retry, str(e.reason)) from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            raise NotifyError("timeout", True, str(e.reason)) from e
        raise NotifyError("connection", True, str(e.reason)) from e
    except TimeoutError as e:
        raise NotifyError("timeout", True, str(e)) from e
    except (ConnectionError, OSError) as e:
        raise NotifyError("connection", True, str(e)) from e


def _check_errcode(raw: bytes, retry_codes: frozenset[int]) -> None:
    try:
        doc = json.loads(raw.decode("utf-8"))
        code = int(doc.get("errcode", -999))
    except (ValueError, AttributeError, TypeError) as e:
        raise NotifyError("bad_response", True, raw[:200].decode("utf-8", "replace")) from e
    if code != 0:
        raise NotifyError(f"errcode_{code}", code in retry_codes, str(doc.get("errmsg", "")))


def _truncate_bytes(text: str, limit: int) -> str:
    b = text.encode()
    if len(b) <= limit:
        return text
    return b[: limit - 3].decode("utf-8", "ignore") + "…"


#: headers of a signed generic webhook
SIGNATURE_HEADER = "X-QA-Signature"
TIMESTAMP_HEADER = "X-QA-Timestamp"
#: how old a signed request a receiver should accept (seconds; against replays)
SIGNATURE_TOLERANCE_S = 300


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256(secret, ``b"<timestamp>." + body``)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """A receiver's check (``headers``: the request's header mapping, names in any case):
    the signature matches the body and the timestamp is within ``tolerance_s`` of ``now``.
    Receivers should also drop a notification id they have already handled (replays inside
    the window)."""
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        ts = int(h.get(TIMESTAMP_HEADER.lower()) or "")
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    want = webhook_signature(secret, ts, body)
    return hmac.compare_digest(want, h.get(SIGNATURE_HEADER.lower(), ""))


class WebhookNotifier:
    def __init__(self, config: WebhookNotifierConfig) -> None:
        self.config = config
        self.name = config.name or config.type

    def request(self, n: Notification, now: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers to POST (signed when a secret is configured)."""
        c = self.config
        data = json.dumps(n.document(), ensure_ascii=False).encode()
        headers = dict(c.headers)
        if c.secret is not None:
            ts = int(time.time() if now is None else now)
            headers[TIMESTAMP_HEADER] = str(ts)
            headers[SIGNATURE_HEADER] = webhook_signature(c.secret.get_secret_value(), ts, data)
        return data, headers

    def send(self, n: Notification) -> None:
        data, headers = self.request(n)
        _post(self.config.url, data, self.config.timeout_s, headers)


class WeComNotifier:
    def __init__(self, config: WeComNotifierConfig) -> None:
        self.config = config
        self.name = config.name or config.type

    def body(self, n: Notification) -> dict[str, Any]:
        if self.config.msgtype == "markdown":
            content = _truncate_bytes(n.markdown(), WECOM_MARKDOWN_MAX_BYTES)
            return {"msgtype": "markdown", "markdown": {"content": content}}
        text: dict[str, Any] = {"content": _truncate_bytes(n.text(), 2048)}
        if self.config.mentioned_mobile_list:
            text["mentioned_mobile_list"] = list(self.config.mentioned_mobile_list)
        return {"msgtype": "text", "text": text}

    def send(self, n: Notification) -> None:
        raw = _post_json(self.config.url, self.body(n), self.config.timeout_s, {})
        _check_errcode(raw, WECOM_RETRY)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The robot's signature, URL-encoded: base64(HMAC-SHA256(secret, "ts\\nsecret"))."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int | None = None) -> str:
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{sep}timestamp={ts}&sign={dingtalk_sign(secret, ts)}"


class DingTalkNotifier:
    def __init__(self, config: DingTalkNotifierConfig) -> None:
        self.config = config
        self.name = config.name or config.type

    def body(self, n: Notification) -> dict[str, Any]:
        c = self.config
        mention = " ".join(f"@{m}" for m in c.at_mobiles)
        at = {"atMobiles": list(c.at_mobiles), "isAtAll": c.at_all}
        if c.msgtype == "markdown":
            text = n.markdown() + (f"\n\n{mention}" if mention else "")
            return {
                "msgtype": "markdown",
                "markdown": {"title": one_line(n.title), "text": text[:DINGTALK_TEXT_MAX_CHARS]},
                "at": at,
            }
        text = n.text() + (f"\n{mention}" if mention else "")
        return {"msgtype": "text", "text": {"content": text[:DINGTALK_TEXT_MAX_CHARS]}, "at": at}

    def url(self) -> str:
        c = self.config
        if c.secret is None:
            return c.url
        return dingtalk_signed_url(c.url, c.secret.get_secret_value())

    def send(self, n: Notification) -> None:
        raw = _post_json(self.url(), self.body(n), self.config.timeout_s, {})
        _check_errcode(raw, DINGTALK_RETRY)


class SmtpNotifier:
    def __init__(self, config: SmtpNotifierConfig) -> None:
        self.config = config
        self.name = config.name or config.type

    def message(self, n: Notification) -> EmailMessage:
        c = self.config
        msg = EmailMessage()
        msg["Subject"] = one_line(n.title)
        msg["From"] = c.sender
        msg["To"] = ", ".join(c.to)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=c.sender.rpartition("@")[2] or None)
        msg.set_content(n.text(), charset="utf-8")
        return msg

    def send(self, n: Notification) -> None:
        c = self.config
        port = c.effective_port
        try:
            smtp: smtplib.SMTP
            if c.ssl:
                smtp = smtplib.SMTP_SSL(
                    c.host, port, timeout=c.timeout_s, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(c.host, port, timeout=c.timeout_s)
            with smtp:
                if c.use_starttls:
                    try:
                        smtp.starttls(context=ssl.create_default_context())
                    except smtplib.SMTPNotSupportedError as e:  # never fall back to clear
                        raise NotifyError(
                            "smtp_no_tls",
                            False,
                            f"{c.host}:{port} does not offer STARTTLS; nothing sent in clear "
                            "(ssl: true for implicit TLS, or starttls: false + insecure: true)",
                        ) from e
                if c.user and c.password is not None:
                    smtp.login(c.user, c.password.get_secret_value())
                smtp.send_message(self.message(n))
        except NotifyError:
            raise
        except ssl.SSLError as e:  # certificate not trusted, no TLS on an ssl: true port
            raise NotifyError("smtp_tls", False, f"{c.host}:{port}: {e}") from e
        except smtplib.SMTPRecipientsRefused as e:
            raise NotifyError("smtp_recipients_refused", False, str(e)) from e
        except smtplib.SMTPAuthenticationError as e:
            raise NotifyError("smtp_auth", False, str(e)) from e
        except smtplib.SMTPResponseException as e:
            raise NotifyError(f"smtp_{e.smtp_code}", 400 <= e.smtp_code < 500, str(e)) from e
        except smtplib.SMTPServerDisconnected as e:
            raise NotifyError("connection", True, str(e)) from e
        except smtplib.SMTPException as e:
            raise NotifyError("smtp_error", True, str(e)) from e
        except TimeoutError as e:
            raise NotifyError("timeout", True, str(e)) from e
        except OSError as e:
            raise NotifyError("connection", True, str(e)) from e


def build_notifier(config: NotifierConfig) -> Notifier:
    if isinstance(config, WebhookNotifierConfig):
        return WebhookNotifier(config)
    if isinstance(config, WeComNotifierConfig):
        return WeComNotifier(config)
    if isinstance(config, DingTalkNotifierConfig):
        return DingTalkNotifier(config)
    return SmtpNotifier(config)
