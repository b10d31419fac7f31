"""Notifiers against local receivers: payload formats, DingTalk signing, errcode handling,
retries with back-off, counted failures, an emit that never blocks, a Chinese e-mail."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from generated_calls import call_events
from notify_receivers import Receiver
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from qa_pipeline.messages import CallInfo
from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.notify import (
    Notification,
    NotifierSink,
    NotifyConfig,
    NotifyError,
    build_notifier,
    dingtalk_sign,
    verify_webhook,
)
from qa_pipeline.sinks.base import Event, EventKind, FanOut

SECRET = "webhook-secret-for-tests"
FAST_RETRY = {"max_attempts": 3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}


@pytest.fixture(scope="module")
def stonewalling() -> list[Event]:
    return call_events("stonewalling", "call-sw-1")


@pytest.fixture(scope="module")
def perfect() -> list[Event]:
    return call_events("perfect", "call-ok-1")


def make_sink(
    notifiers: list[dict[str, Any]], registry: CollectorRegistry | None = None, **kw: Any
) -> tuple[NotifierSink, CollectorRegistry, PipelineMetrics]:
    registry = registry or CollectorRegistry()
    metrics = PipelineMetrics(registry)
    cfg = NotifyConfig.model_validate({"notifiers": notifiers, "retry": FAST_RETRY, **kw})
    return NotifierSink(cfg, registry=registry, observer=metrics), registry, metrics


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def alerts(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind is EventKind.ALERT]


# -- DingTalk -------------------------------------------------------------------------------


def test_dingtalk_markdown_signed(receiver: Receiver, stonewalling: list[Event]) -> None:
    secret = "SEC0123456789abcdef重要"  # non-ASCII survives too
    sink, registry, _ = make_sink(
        [
            {
                "type": "dingtalk",
                "url": f"{receiver.url}/robot/send?access_token=abc123",
                "secret": secret,
                "at_mobiles": ["13800000000"],
            }
        ]
    )
    sink.call_started(CallInfo(call_id="call-sw-1", agent_id="A1045"))
    before = int(time.time() * 1000)
    for e in stonewalling:
        sink.emit(e)
    sink.flush(5)
    sink.close()
    # two alerts (BAN-POLICY twice) + the low score (59 < 60)
    reqs = receiver.wait_for(3)
    assert len(reqs) == 3
    for r in reqs:
        assert r.path == "/robot/send"
        assert r.query["access_token"] == ["abc123"]
        ts = int(r.query["timestamp"][0])
        assert before - 1000 <= ts <= int(time.time() * 1000) + 1000
        # recompute independently: base64(HMAC-SHA256(secret, ts + "\n" + secret))
        mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
        assert r.query["sign"] == [base64.b64encode(mac).decode()]  # parse_qs url-decodes
        assert r.headers["Content-Type"].startswith("application/json")
        doc = r.json
        assert doc["msgtype"] == "markdown"
        assert doc["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
        assert doc["markdown"]["text"].startswith("### ")
        assert "@13800000000" in doc["markdown"]["text"]
    alert_doc = reqs[0].json["markdown"]
    assert "严重违规" in alert_doc["title"] and "BAN-POLICY" in alert_doc["title"]
    assert "A1045" in alert_doc["text"] and "call-sw-1" in alert_doc["text"]
    assert "建议话术" in alert_doc["text"]
    low = reqs[2].json["markdown"]
    assert "低分通话" in low["title"] and "59" in low["title"]
    assert value(registry, "qa_notify_sent_total", notifier="dingtalk") == 3
    # the sign is URL-encoded in the raw URL (base64 '+', '/', '=')
    assert dingtalk_sign(secret, 1700000000000) == urllib.parse.quote_plus(
        base64.b64encode(
            hmac.new(secret.encode(), f"1700000000000\n{secret}".encode(), hashlib.sha256).digest()
        )
    )


def test_dingtalk_errcode_is_failure(receiver: Receiver, stonewalling: list[Event]) -> None:
    # HTTP 200 with errcode 310000 (signature / keyword check failed): not retried
    receiver.default = (200, {"errcode": 310000, "errmsg": "sign not match"})
    sink, registry, _ = make_sink(
        [{"type": "dingtalk", "url": f"{receiver.url}/robot/send?access_token=x", "secret": "s"}],
        triggers={"critical_findings": True, "score_below": None},
    )
    sink.emit(alerts(stonewalling)[0])
    sink.flush(5)
    sink.close()
    assert len(receiver.requests) == 1
    assert value(registry, "qa_notify_failures_total", notifier="dingtalk", reason="errcode_310000")
    assert value(registry, "qa_dropped_total", stage="notify", reason="not_retryable") == 1
    assert value(registry, "qa_notify_sent_total", notifier="dingtalk") == 0


# -- WeCom ----------------------------------------------------------------------------------


def test_wecom_markdown_and_rate_limit_retry(receiver: Receiver, stonewalling: list[Event]) -> None:
    # rate limited once (HTTP 200, errcode 45009), then accepted
    receiver.script = [(200, {"errcode": 45009, "errmsg": "api freq out of limit"})]
    sink, registry, _ = make_sink(
        [{"type": "wecom", "url": f"{receiver.url}/cgi-bin/webhook/send?key=KEY-1"}],
        triggers={"critical_findings": True, "score_below": None},
    )
    sink.emit(alerts(stonewalling)[0])
    sink.flush(5)
    sink.close()
    reqs = receiver.wait_for(2)
    assert len(reqs) == 2
    assert reqs[1].query["key"] == ["KEY-1"]
    doc = reqs[1].json
    assert set(doc) == {"msgtype", "markdown"} and doc["msgtype"] == "markdown"
    assert "BAN-POLICY" in doc["markdown"]["content"]
    assert len(doc["markdown"]["content"].encode()) <= 4096
    assert value(registry, "qa_notify_sent_total", notifier="wecom") == 1
    assert (
        value(registry, "qa_notify_failures_total", notifier="wecom", reason="errcode_45009") == 1
    )


def test_wecom_text_mentions(receiver: Receiver, stonewalling: list[Event]) -> None:
    sink, _, _ = make_sink(
        [
            {
                "type": "wecom",
                "url": f"{receiver.url}/send?key=k",
                "msgtype": "text",
                "mentioned_mobile_list": ["@all"],
            }
        ],
        triggers={"critical_findings": True, "score_below": None},
    )
    sink.emit(alerts(stonewalling)[0])
    sink.flush(5)
    sink.close()
    doc = receiver.requests[0].json
    assert doc["msgtype"] == "text"
    assert doc["text"]["mentioned_mobile_list"] == ["@all"]
    assert "严重违规" in doc["text"]["content"]


# -- generic webhook, triggers ------------------------------------------------------------------


def test_webhook_json_and_triggers(
    receiver: Receiver, stonewalling: list[Event], perfect: list[Event]
) -> None:
    sink, registry, _ = make_sink(
        [
            {
                "type": "webhook",
                "url": f"{receiver.url}/qa",
                "headers": {"X-Api-Key": "k1"},
                "secret": SECRET,
            }
        ],
        triggers={"critical_findings": False, "score_below": 60},
        dashboard_url="https://qa.example.com/",
    )
    for e in perfect + stonewalling + stonewalling:  # the re-sent call is de-duplicated
        sink.emit(e)
    sink.flush(5)
    sink.close()
    assert len(receiver.requests) == 1  # only the low score; alerts are off, 98 is fine
    r = receiver.requests[0]
    assert r.headers["X-Api-Key"] == "k1"
    doc = r.json
    assert doc["type"] == "low_score" and doc["call_id"] == "call-sw-1"
    assert doc["event"]["kind"] == "scorecard" and doc["event"]["payload"]["score"] == 59.0
    assert doc["link"] == "https://qa.example.com/#call=call-sw-1"
    assert "BAN-POLICY" in doc["fields"]["扣分规则"]
    # signed: HMAC-SHA256(secret, "<timestamp>.<body>"), checked here independently
    hdr = {k.lower(): v for k, v in r.headers.items()}  # HTTP names are case-insensitive
    ts = hdr["x-qa-timestamp"]
    assert abs(int(ts) - time.time()) < 60
    mac = hmac.new(SECRET.encode(), ts.encode() + b"." + r.body, hashlib.sha256).hexdigest()
    assert hdr["x-qa-signature"] == f"sha256={mac}"
    assert verify_webhook(SECRET, r.headers, r.body)
    assert not verify_webhook(SECRET, r.headers, r.body.replace(b"59", b"95"))  # tampered
    assert not verify_webhook("another-secret-of-16+", r.headers, r.body)
    assert not verify_webhook(SECRET, r.headers, r.body, now=int(ts) + 301)  # replayed late
    assert not verify_webhook(SECRET, {"X-QA-Signature": f"sha256={mac}"}, r.body)


def test_webhook_unsigned_only_when_said(receiver: Receiver, stonewalling: list[Event]) -> None:
    with pytest.raises(ValidationError, match="signs every body"):
        NotifyConfig.model_validate({"notifiers": [{"type": "webhook", "url": receiver.url}]})
    with pytest.raises(ValidationError, match="16 characters"):
        NotifyConfig.model_validate(
            {"notifiers": [{"type": "webhook", "url": receiver.url, "secret": "short"}]}
        )
    with pytest.raises(ValidationError, match="exclusive"):
        NotifyConfig.model_validate(
            {"notifiers": [{"type": "webhook", "url": receiver.url, "secret": SECRET,
                            "unsigned": True}]}
        )  # fmt: skip
    sink, _, _ = make_sink(
        [{"type": "webhook", "url": f"{receiver.url}/qa", "unsigned": True}],
        triggers={"critical_findings": True, "score_below": None},
    )
    sink.emit(alerts(stonewalling)[0])
    sink.flush(5)
    sink.close()
    (r,) = receiver.requests
    assert "x-qa-signature" not in {k.lower() for k in r.headers}
    assert r.json["type"] == "critical_finding"


def test_evidence_can_be_left_out(receiver: Receiver, stonewalling: list[Event]) -> None:
    sink, _, _ = make_sink(
        [{"type": "webhook", "secret": SECRET, "url": f"{receiver.url}/qa"}],
        triggers={"critical_findings": True, "score_below": None},
        include_evidence=False,
    )
    alert = alerts(stonewalling)[0]
    sink.emit(alert)
    sink.flush(5)
    sink.close()
    text = receiver.requests[0].json["text"]
    assert alert.payload["evidence"][0]["text"] not in text
    assert "原话" not in text and "时间点" in text


# -- retries and failures ------------------------------------------------------------------------


def test_fails_twice_then_succeeds(receiver: Receiver, stonewalling: list[Event]) -> None:
    receiver.script = [(500, {"error": "boom"}), (503, {"error": "busy"})]
    sink, registry, _ = make_sink(
        [{"type": "webhook", "secret": SECRET, "url": f"{receiver.url}/qa"}],
        triggers={"critical_findings": True, "score_below": None},
    )
    sink.emit(alerts(stonewalling)[0])
    sink.flush(5)
    sink.close()
    reqs = receiver.requests
    assert len(reqs) == 3
    assert reqs[0].body == reqs[2].body  # the same notification each time
    gaps = [b.at - a.at for a, b in zip(reqs, reqs[1:], strict=False)]
    assert gaps[0] >= 0.03 and gaps[1] >= gaps[0] * 1.2  # exponential back-off (with jitter)
    assert value(registry, "qa_notify_sent_total", notifier="webhook") == 1
    assert value(registry, "qa_notify_failures_total", notifier="webhook", reason="http_500") == 1
    assert value(registry, "qa_notify_failures_total", notifier="webhook", reason="http_503") == 1
    assert value(registry, "qa_dropped_total", stage="notify", reason="retries_exhausted") == 0


def test_always_failing_is_counted_and_never_blocks(
    receiver: Receiver, stonewalling: list[Event]
) -> None:
    receiver.default = (503, {"error": "down"})
    receiver.delay_s = 0.3  # a slow, failing endpoint
    sink, registry, metrics = make_sink(
        [{"type": "webhook", "secret": SECRET, "url": f"{receiver.url}/qa", "timeout_s": 2}],
        triggers={"critical_findings": True, "score_below": 60},
        queue_max=4,
        close_timeout_s=0.5,
    )
    fan = FanOut([("notify", sink)], metrics)
    events = [
        Event(
            event_id=f"{e.event_id}-{i}",
            kind=e.kind,
            call_id=f"call-{i}",
            seq=e.seq,
            schema_version=e.schema_version,
            produced_at=e.produced_at,
            payload=e.payload,
        )
        for i in range(100)
        for e in stonewalling
    ]
    t0 = time.perf_counter()
    for e in events:
        fan.emit(e)
    elapsed = time.perf_counter() - t0
    # 2000 events, 300 of them trigger notifications: emit returns at once
    assert elapsed < 0.5, elapsed
    time.sleep(0.5)
    t1 = time.perf_counter()
    fan.close()
    assert time.perf_counter() - t1 < 5.0
    assert fan.errors["notify"] == 0  # nothing raised into the pipeline
    failures = value(registry, "qa_notify_failures_total", notifier="webhook", reason="http_503")
    assert failures >= 1
    queue_full = value(registry, "qa_dropped_total", stage="notify", reason="queue_full")
    assert queue_full >= 250
    exhausted = value(registry, "qa_dropped_total", stage="notify", reason="retries_exhausted")
    shutdown = value(registry, "qa_dropped_total", stage="notify", reason="shutdown")
    assert queue_full + exhausted + shutdown == 300  # every notification accounted for
    assert value(registry, "qa_notify_sent_total", notifier="webhook") == 0


def test_unreachable_endpoint(stonewalling: list[Event]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink, registry, _ = make_sink(
        [
            {
                "type": "webhook",
                "secret": SECRET,
                "url": f"http://127.0.0.1:{port}/qa",
                "timeout_s": 1,
            }
        ],
        triggers={"critical_findings": True, "score_below": None},
    )
    sink.emit(alerts(stonewalling)[0])
    sink.flush(5)
    sink.close()
    assert value(registry, "qa_notify_failures_total", notifier="webhook", reason="connection") == 3
    assert value(registry, "qa_dropped_total", stage="notify", reason="retries_exhausted") == 1


# -- e-mail --------------------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="pip install aiosmtpd==1.4.6")
    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received.append(envelope)
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def test_smtp_chinese_mail(smtp_server: tuple[int, list[Any]], stonewalling: list[Event]) -> None:
    port, received = smtp_server
    sink, registry, _ = make_sink(
        [
            {
                "type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "starttls": False,
                "insecure": True,  # this local test server speaks no TLS
                "from": "qa-bot@example.com",
                "to": ["主管@example.com", "lead@example.com"],
            }
        ],
        triggers={"critical_findings": True, "score_below": 60},
    )
    sink.call_started(CallInfo(call_id="call-sw-1", agent_id="A1045"))
    for e in stonewalling:
        sink.emit(e)
    sink.flush(10)
    sink.close()
    assert value(registry, "qa_notify_sent_total", notifier="smtp") == 3
    assert len(received) == 3
    env = received[0]
    assert env.mail_from == "qa-bot@example.com"
    assert env.rcpt_tos == ["主管@example.com", "lead@example.com"]
    msg = email.message_from_bytes(env.original_content, policy=email.policy.default)
    assert str(msg["Subject"]).startswith("【质检告警】严重违规 BAN-POLICY")
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert body.get_content_charset() == "utf-8"
    assert "坐席：A1045" in text and "建议话术" in text
    low = email.message_from_bytes(received[2].original_content, policy=email.policy.default)
    assert "低分通话 59 分" in str(low["Subject"])


@pytest.fixture
def tls_smtp_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[int, list[Any], list[str]]]:
    """An SMTP server that requires STARTTLS before AUTH (login qa-bot / s3cret), with a
    self-signed certificate for 127.0.0.1 that the client trusts through SSL_CERT_FILE."""
    controller_mod = pytest.importorskip("aiosmtpd.controller", reason="pip install aiosmtpd")
    smtp_mod = pytest.importorskip("aiosmtpd.smtp", reason="pip install aiosmtpd")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the STARTTLS test needs openssl: apt-get install -y openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # ssl.create_default_context() trusts it
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    received: list[Any] = []
    logins: list[str] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received.append((envelope, session.authenticated, session.ssl is not None))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = data.login == b"qa-bot" and data.password == b"s3cret"
        logins.append(f"{mechanism}:{data.login.decode()}:{'ok' if ok else 'refused'}")
        return smtp_mod.AuthResult(success=ok, handled=False)  # the server answers 535

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = controller_mod.Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield port, received, logins
    finally:
        controller.stop()


def test_smtp_starttls_and_login(tls_smtp_server: tuple[int, list[Any], list[str]]) -> None:
    port, received, logins = tls_smtp_server
    note = Notification("test", "call-tls-1", "【质检告警】测试", (("坐席", "A1"),))

    def notifier(**kw: Any) -> Any:
        cfg = {"type": "smtp", "host": "127.0.0.1", "port": port, "from": "qa-bot@example.com"}
        cfg.update(to=["lead@example.com"], **kw)
        return build_notifier(NotifyConfig.model_validate({"notifiers": [cfg]}).notifiers[0])

    notifier(starttls=True, user="qa-bot", password="s3cret").send(note)
    assert len(received) == 1
    assert logins == ["PLAIN:qa-bot:ok"]
    envelope, authenticated, over_tls = received[0]
    assert authenticated and over_tls
    msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert str(msg["Subject"]) == "【质检告警】测试"

    with pytest.raises(NotifyError) as bad_login:  # refused: not worth retrying
        notifier(starttls=True, user="qa-bot", password="wrong").send(note)
    assert bad_login.value.reason == "smtp_auth" and not bad_login.value.retryable
    with pytest.raises(NotifyError) as plain:  # the server insists on STARTTLS first
        notifier(starttls=False, insecure=True).send(note)
    assert plain.value.reason.startswith("smtp_5")
    assert len(received) == 1
    notifier().send(note)  # the default: STARTTLS, no login
    assert len(received) == 2 and received[1][2]  # over TLS


def test_smtp_refuses_to_send_in_clear_by_default(smtp_server: tuple[int, list[Any]]) -> None:
    port, received = smtp_server  # a server that offers no STARTTLS
    note = Notification("test", "call-clear-1", "【质检告警】测试", (("坐席", "A1"),))
    base = {"type": "smtp", "host": "127.0.0.1", "port": port, "from": "qa-bot@example.com"}
    base["to"] = ["lead@example.com"]

    def notifier(**kw: Any) -> Any:
        return build_notifier(
            NotifyConfig.model_validate({"notifiers": [{**base, **kw}]}).notifiers[0]
        )

    for kw in ({}, {"user": "qa-bot", "password": "s3cret"}):
        with pytest.raises(NotifyError) as refused:
            notifier(**kw).send(note)
        assert refused.value.reason == "smtp_no_tls" and not refused.value.retryable
        assert f"127.0.0.1:{port}" in str(refused.value)
    assert received == []
    with pytest.raises(ValidationError, match="in clear"):
        notifier(starttls=False)
    with pytest.raises(ValidationError, match="insecure"):
        notifier(starttls=True, insecure=True)
    notifier(starttls=False, insecure=True).send(note)  # said explicitly: sent in clear
    assert len(received) == 1
    cfg = NotifyConfig.model_validate({"notifiers": [{**base, "port": None}]}).notifiers[0]
    assert cfg.effective_port == 587  # type: ignore[union-attr]
    ssl_cfg = NotifyConfig.model_validate({"notifiers": [{**base, "port": None, "ssl": True}]})
    assert ssl_cfg.notifiers[0].effective_port == 465  # type: ignore[union-attr]


# -- config ----------------------------------------------------------------------------------------


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        NotifyConfig.model_validate(
            {"notifiers": [{"type": "webhook", "url": "http://x", "unsigned": True, "x": 1}]}
        )
    with pytest.raises(ValidationError):
        NotifyConfig.model_validate({"notifiers": [{"type": "pager", "url": "http://x"}]})
    with pytest.raises(ValidationError, match="unique"):
        NotifyConfig.model_validate(
            {
                "notifiers": [
                    {"type": "webhook", "url": "http://a", "unsigned": True},
                    {"type": "webhook", "url": "http://b", "unsigned": True},
                ]
            }
        )
    with pytest.raises(ValidationError):
        NotifyConfig.model_validate(
            {
                "notifiers": [
                    {
                        "type": "smtp",
                        "host": "h",
                        "from": "a@b",
                        "to": ["c@d"],
                        "ssl": True,
                        "starttls": True,
                    }
                ]
            }
        )
    cfg = NotifyConfig.model_validate(
        {
            "notifiers": [
                {"type": "webhook", "name": "ops", "url": "http://a", "unsigned": True},
                {"type": "webhook", "url": "http://b", "unsigned": True},
                {"type": "smtp", "host": "h", "from": "a@b.c", "to": ["c@d"]},
            ]
        }
    )
    assert cfg.names() == ["ops", "webhook", "smtp"]
    assert cfg.retry.delay(1) == 0.5 and cfg.retry.delay(10) == 30.0


# -- hostile values -------------------------------------------------------------------------

HOSTILE_CALL = "[x](http://evil.example/phish)\n### 伪造标题\n> **坐席**：A0001"
HOSTILE_AGENT = '<font color="warning">**全部通过**</font><@all>`code`'


def test_markdown_shows_hostile_values_literally(
    receiver: Receiver, stonewalling: list[Event]
) -> None:
    """A call id or agent id that reached the notifier (e.g. from a Kafka topic another
    producer writes) is shown as its characters: no link, no heading, no tag, no new line."""
    import dataclasses

    from markdown_it import MarkdownIt

    sink, _, _ = make_sink(
        [
            {"type": "wecom", "url": f"{receiver.url}/wecom"},
            {"type": "dingtalk", "url": f"{receiver.url}/dingtalk"},
        ],
        triggers={"critical_findings": True, "score_below": None},
        dashboard_url="https://qa.example.com/dash",
    )
    sink.call_started(CallInfo(call_id=HOSTILE_CALL, agent_id=HOSTILE_AGENT))
    sink.emit(dataclasses.replace(alerts(stonewalling)[0], call_id=HOSTILE_CALL))
    sink.flush(5)
    sink.close()
    reqs = {r.path: r.json for r in receiver.wait_for(2)}
    texts = [reqs["/wecom"]["markdown"]["content"], reqs["/dingtalk"]["markdown"]["text"]]
    md = MarkdownIt("commonmark")
    for text in texts:
        html = md.render(text)
        # the only link is the dashboard's, to the percent-encoded call id
        assert html.count("<a href=") == 1
        assert (
            'href="https://qa.example.com/dash/#call=' in html and 'evil.example/phish"' not in html
        )
        assert html.count("<h3>") == 1  # the real title only, no forged heading
        assert "<font" not in html and "<strong>全部通过</strong>" not in html
        assert "<code>" not in html
        # the characters themselves are all there, shown literally (HTML-escaped)
        assert "[x](http://evil.example/phish)" in html
        assert "&lt;font color=&quot;warning&quot;&gt;**全部通过**&lt;/font&gt;&lt;@all&gt;" in html
        # no value starts a line of its own
        assert "\n### 伪造标题" not in text and "伪造标题" in text
    title = reqs["/dingtalk"]["markdown"]["title"]
    assert "\n" not in title
