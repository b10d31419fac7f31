"""The ``notify:`` section: supervisor notifiers and what triggers them.

Example (in the ``serve`` config, or a file of its own for ``qa-pipeline notify test``)::

    notify:
      triggers:
        critical_findings: true      # every alert event (a critical finding), at once
        score_below: 60              # a final score below this (scorecard events); null = off
      retry: {max_attempts: 5, backoff_initial_s: 0.5, backoff_max_s: 30}
      queue_max: 1000                # per notifier; beyond it notifications are dropped (counted)
      dashboard_url: https://qa.example.com/   # link in the messages (optional)
      include_evidence: true         # quote the utterance in messages (false: rule only)
      notifiers:
        - {type: webhook, url: "https://hooks.example.com/qa", secret: "${WEBHOOK_SECRET}"}
        - {type: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"}
        - {type: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=…",
           secret: "SEC…"}
        - {type: smtp, host: smtp.example.com, user: qa,        # STARTTLS on 587 by default
           password: "${SMTP_PASSWORD}", from: qa@example.com, to: [supervisors@example.com]}

Transport: a generic webhook signs every body (HMAC-SHA256 with its ``secret``; required
unless ``unsigned: true``); e-mail goes over TLS (STARTTLS by default, ``ssl: true`` for
implicit TLS; in clear only with ``starttls: false`` and ``insecure: true``).

Secrets (webhook URLs with a key, ``headers``, the webhook and DingTalk ``secret``, the SMTP
``password``) can come from the environment: write ``${NAME}`` in the value (expanded when
the file is loaded; an unset variable is a config error), e.g.
``url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${WECOM_KEY}"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Notifier(_Model):
    name: str | None = Field(default=None, description="label in metrics/logs; default: type")
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    @property
    def type_name(self) -> str:
        return str(getattr(self, "type"))  # noqa: B009 - every subclass has a literal 'type'


class WebhookNotifierConfig(_Notifier):
    """POST of a JSON document (``application/json; charset=utf-8``); 2xx = delivered.

    Signed: every request carries ``X-QA-Timestamp`` (Unix seconds) and ``X-QA-Signature:
    sha256=<hex>``, the HMAC-SHA256 with ``secret`` of ``"<timestamp>.<body bytes>"``, so the
    receiver can check that the body came from us unchanged and recently (see
    :func:`~qa_pipeline.notify.notifiers.verify_webhook`). A secret is required; a receiver
    that cannot verify anything is configured with ``unsigned: true``, said explicitly."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key shared with the receiver: ${WEBHOOK_SECRET}"
    )
    unsigned: bool = Field(default=False, description="send without a signature (say so)")

    @model_validator(mode="after")
    def _signed(self) -> WebhookNotifierConfig:
        if self.secret is None and not self.unsigned:
            raise ValueError(
                "a generic webhook signs every body (HMAC-SHA256) so the receiver can verify "
                "it: set secret: ${WEBHOOK_SECRET} (16 characters or more), or unsigned: true"
            )
        if self.secret is not None and self.unsigned:
            raise ValueError("secret and unsigned: true are exclusive")
        if self.secret is not None and len(self.secret.get_secret_value()) < 16:
            raise ValueError("the webhook secret must have 16 characters or more")
        return self


class WeComNotifierConfig(_Notifier):
    """WeCom (企业微信) group robot: ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…``."""

    type: Literal["wecom"] = "wecom"
    url: str = Field(pattern=r"^https?://")
    msgtype: Literal["markdown", "text"] = "markdown"
    mentioned_mobile_list: tuple[str, ...] = Field(
        default=(), description="text messages only: mobiles to @ ('@all' = everyone)"
    )


class DingTalkNotifierConfig(_Notifier):
    """DingTalk (钉钉) custom robot: ``https://oapi.dingtalk.com/robot/send?access_token=…``.

    ``secret`` (``SEC…``) enables the robot's signing: ``timestamp`` and ``sign`` are added to
    the URL of every request."""

    type: Literal["dingtalk"] = "dingtalk"
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = None
    msgtype: Literal["markdown", "text"] = "markdown"
    at_mobiles: tuple[str, ...] = ()
    at_all: bool = False


class SmtpNotifierConfig(_Notifier):
    """E-mail through an SMTP server (UTF-8 subject and body), over TLS by default.

    Default: STARTTLS on port 587 (the server's certificate verified against the system's
    CAs); a server that does not offer STARTTLS is refused, nothing is sent in clear.
    ``ssl: true``: implicit TLS (port 465 unless ``port`` says otherwise). Sending in clear
    needs both ``starttls: false`` and ``insecure: true``."""

    type: Literal["smtp"] = "smtp"
    host: str
    port: int | None = Field(default=None, ge=1, le=65535, description="587, or 465 with ssl")
    ssl: bool = Field(default=False, description="implicit TLS (port 465)")
    starttls: bool | None = Field(default=None, description="default: true unless ssl")
    insecure: bool = Field(default=False, description="allow sending in clear (no TLS)")
    user: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from", min_length=3)
    to: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _tls(self) -> SmtpNotifierConfig:
        if self.ssl and self.starttls:
            raise ValueError("ssl and starttls are exclusive")
        if not self.ssl and self.starttls is False and not self.insecure:
            raise ValueError(
                "starttls: false without ssl sends mail (and the password) in clear: use "
                "starttls: true (port 587) or ssl: true (port 465), or say insecure: true"
            )
        if self.insecure and (self.ssl or self.starttls):
            raise ValueError("insecure: true goes with starttls: false and ssl: false only")
        if self.user and self.password is None:
            raise ValueError("user needs a password")
        return self

    @property
    def use_starttls(self) -> bool:
        return not self.ssl and not self.insecure

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 465 if self.ssl else (25 if self.insecure else 587)


NotifierConfig = Annotated[
    WebhookNotifierConfig | WeComNotifierConfig | DingTalkNotifierConfig | SmtpNotifierConfig,
    Field(discriminator="type"),
]


class TriggersConfig(_Model):
    critical_findings: bool = Field(default=True, description="notify every alert event")
    score_below: float | None = Field(
        default=60.0, ge=0, le=100, description="notify a final score below this; None = off"
    )


class RetryConfig(_Model):
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> RetryConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff_initial_s * 2 ** (attempt - 1), self.backoff_max_s))


class NotifyConfig(_Model):
    notifiers: tuple[NotifierConfig, ...] = ()
    triggers: TriggersConfig = TriggersConfig()
    retry: RetryConfig = RetryConfig()
    queue_max: int = Field(default=1000, ge=1)
    dashboard_url: str | None = None
    include_evidence: bool = True
    close_timeout_s: float = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _names(self) -> NotifyConfig:
        names = self.names()
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"notifier names must be unique (set name:): {', '.join(dup)}")
        return self

    def names(self) -> list[str]:
        return [n.name or n.type_name for n in self.notifiers]

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> NotifyConfig:
        return cls.model_validate(data or {})


def load_notify_config(path: str | Path) -> NotifyConfig:
    """A YAML file holding a ``notify:`` section (or just its content); ``${NAME}`` in a
    value is the environment variable (``qa_pipeline.config``). Problems are a
    :class:`~qa_pipeline.errors.ConfigError` naming the file and line."""
    from pydantic import ValidationError

    from ..config import expand_env
    from ..errors import ConfigError, Location
    from ..yamlsrc import load_yaml_file, validation_problems

    src = str(path)
    data = load_yaml_file(Path(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([(Location(src, 1), "top level must be a mapping")])
    problems = expand_env(data, src)
    if problems:
        raise ConfigError(problems)
    prefix: tuple[str, ...] = ()
    if "notify" in data:
        prefix = ("notify",)
        data = data["notify"]
    try:
        return NotifyConfig.from_mapping(data)
    except ValidationError as e:
        raise ConfigError(validation_problems(e, data, src, prefix)) from None
