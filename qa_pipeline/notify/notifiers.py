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
* SMTP: a UTF-8 e-mail (subject and body) via ``smtplib``, optional STARTTLS / implicit TLS
  and login; 4xx replies and lost connections are retried, 5xx are not.
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
    data = json.dumps(body, ensure_ascii=False).encode()
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


class WebhookNotifier:
    def __init__(self, config: WebhookNotifierConfig) -> None:
        self.config = config
        self.name = config.name or config.type

    def send(self, n: Notification) -> None:
        c = self.config
        _post_json(c.url, n.document(), c.timeout_s, c.headers)


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
        try:
            smtp: smtplib.SMTP
            if c.ssl:
                smtp = smtplib.SMTP_SSL(
                    c.host, c.port, timeout=c.timeout_s, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
            with smtp:
                if c.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if c.user and c.password is not None:
                    smtp.login(c.user, c.password.get_secret_value())
                smtp.send_message(self.message(n))
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
