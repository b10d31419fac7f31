"""Every setting that holds a secret can come from the environment (``${NAME}`` in the
config file); an unset variable is a config error naming the key, never an empty secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa_pipeline.config import load_config
from qa_pipeline.errors import ConfigError
from qa_pipeline.live.config import load_serve_config
from qa_pipeline.notify.config import load_notify_config

SECRETS = {
    "QA_T_WEBHOOK_KEY": "wh-key-1",
    "QA_T_WEBHOOK_HEADER": "api-key-2",
    "QA_T_WEBHOOK_SECRET": "webhook-hmac-secret-12",
    "QA_T_WECOM_KEY": "wecom-key-3",
    "QA_T_DING_TOKEN": "ding-token-4",
    "QA_T_DING_SECRET": "SECding-5",
    "QA_T_SMTP_PASSWORD": "smtp-pass-6",
    "QA_T_KAFKA_PASSWORD": "kafka-pass-7",
    "QA_T_DASH_TOKEN": "dashboard-token-8",
    "QA_T_DASH_VIEWER": "viewer-token-9",
    "QA_T_MEDIA_TOKEN": "media-token-10",
    "QA_T_TWILIO_TOKEN": "twilio-token-11",
}

SERVE = """\
sources:
  - {type: websocket, name: media, port: 0, auth: token, token: "${QA_T_MEDIA_TOKEN}"}
  - {type: websocket, name: twilio, port: 0, auth: twilio,
     twilio_auth_token: "${QA_T_TWILIO_TOKEN}"}
sinks:
  kafka:
    bootstrap_servers: [kafka:9092]
    security_protocol: SASL_SSL
    sasl_mechanism: SCRAM-SHA-512
    sasl_plain_username: qa
    sasl_plain_password: ${QA_T_KAFKA_PASSWORD}
dashboard:
  token: ${QA_T_DASH_TOKEN}
  viewer_token: ${QA_T_DASH_VIEWER}
notify:
  notifiers:
    - type: webhook
      url: "https://hooks.example.com/qa?key=${QA_T_WEBHOOK_KEY}"
      headers: {X-Api-Key: "${QA_T_WEBHOOK_HEADER}"}
      secret: "${QA_T_WEBHOOK_SECRET}"
    - {type: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${QA_T_WECOM_KEY}"}
    - type: dingtalk
      url: https://oapi.dingtalk.com/robot/send?access_token=${QA_T_DING_TOKEN}
      secret: ${QA_T_DING_SECRET}
    - {type: smtp, host: smtp.example.com, user: qa, password: "${QA_T_SMTP_PASSWORD}",
       from: qa@example.com, to: [sup@example.com]}
"""


@pytest.fixture()
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return SECRETS


def test_every_secret_setting_from_the_environment(
    tmp_path: Path, secrets_env: dict[str, str]
) -> None:
    p = tmp_path / "serve.yaml"
    p.write_text(SERVE, encoding="utf-8")
    cfg = load_serve_config(p)
    media, twilio = cfg.sources
    assert media.secret() == "media-token-10"  # type: ignore[union-attr]
    assert twilio.secret() == "twilio-token-11"  # type: ignore[union-attr]
    kafka = cfg.sinks.kafka
    assert kafka is not None
    assert kafka.producer_kwargs()["sasl_plain_password"] == "kafka-pass-7"
    assert cfg.dashboard is not None
    assert cfg.dashboard.token_value() == "dashboard-token-8"
    assert cfg.dashboard.viewer_token_value() == "viewer-token-9"
    assert cfg.notify is not None
    webhook, wecom, ding, smtp = cfg.notify.notifiers
    assert webhook.url == "https://hooks.example.com/qa?key=wh-key-1"  # type: ignore[union-attr]
    assert webhook.headers == {"X-Api-Key": "api-key-2"}  # type: ignore[union-attr]
    assert webhook.secret.get_secret_value() == "webhook-hmac-secret-12"  # type: ignore[union-attr]
    assert wecom.url.endswith("send?key=wecom-key-3")  # type: ignore[union-attr]
    assert ding.url.endswith("access_token=ding-token-4")  # type: ignore[union-attr]
    assert ding.secret.get_secret_value() == "SECding-5"  # type: ignore[union-attr]
    assert smtp.password.get_secret_value() == "smtp-pass-6"  # type: ignore[union-attr]
    # the secrets stay out of the config's printed form
    shown = repr(cfg)
    for secret in (
        "kafka-pass-7",
        "dashboard-token-8",
        "SECding-5",
        "smtp-pass-6",
        "webhook-hmac-secret-12",
    ):
        assert secret not in shown

    # the notify file of `qa-pipeline notify test` and the pipeline config of `score`,
    # `rescore` and `dashboard` read the same way
    notify = load_notify_config(p)
    assert notify.notifiers[3].password.get_secret_value() == "smtp-pass-6"  # type: ignore[union-attr]
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(
        "sinks:\n  kafka: {bootstrap_servers: [k:9092], security_protocol: SASL_PLAINTEXT,\n"
        "    sasl_mechanism: PLAIN, sasl_plain_username: qa,\n"
        "    sasl_plain_password: '${QA_T_KAFKA_PASSWORD}'}\n",
        encoding="utf-8",
    )
    kafka = load_config(pipe).sinks.kafka
    assert kafka is not None
    assert kafka.producer_kwargs()["sasl_plain_password"] == "kafka-pass-7"


def test_unset_variable_is_an_error_naming_key_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QA_T_KAFKA_PASSWORD", raising=False)
    monkeypatch.delenv("QA_T_SMTP_PASSWORD", raising=False)
    p = tmp_path / "serve.yaml"
    p.write_text(SERVE, encoding="utf-8")
    for k, v in SECRETS.items():
        if k not in ("QA_T_KAFKA_PASSWORD", "QA_T_SMTP_PASSWORD"):
            monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as e:
        load_serve_config(p)
    problems = [(loc.line, msg) for loc, msg in e.value.problems]
    assert problems == [
        (
            11,
            "sinks.kafka.sasl_plain_password: environment variable QA_T_KAFKA_PASSWORD is not set",
        ),
        (25, "notify.notifiers.3.password: environment variable QA_T_SMTP_PASSWORD is not set"),
    ]


def test_literal_dollar_brace_and_other_dollars_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QA_T_NAME", "远航")
    p = tmp_path / "c.yaml"
    p.write_text(
        "rules:\n  settings:\n    company_name: ${QA_T_NAME}\n"
        "    phrases: {a: ['$${QA_T_NAME}', '${thresholds.x}', 'cost $5']}\n",
        encoding="utf-8",
    )
    cfg = load_config(p)
    assert cfg.rules.settings["company_name"] == "远航"
    assert cfg.rules.settings["phrases"]["a"] == ["${QA_T_NAME}", "${thresholds.x}", "cost $5"]
    # values given in code (command-line overrides) are taken as they are
    cfg = load_config(None, {"rules": {"settings": {"company_name": "${QA_T_NAME}"}}})
    assert cfg.rules.settings["company_name"] == "${QA_T_NAME}"
